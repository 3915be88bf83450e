import * as tf from "@tensorflow/tfjs-core";
import { assertEquals } from "../../tests/assert.ts";
import { asFloat32, assertClose, backendTest, checkBlock } from "../_test_util.ts";
import { ropeRef, uniformArr } from "../_reference.ts";
import { rope, ropeTables } from "./rope.ts";

backendTest(
  "rope() rotates the two halves of each head like HF and matches finite differences",
  async () => {
    // theta 7 makes every frequency turn visibly within 5 positions
    const x = asFloat32(uniformArr([2, 5, 3, 6], 5, 1));
    await checkBlock({
      label: "rope",
      inputs: [x],
      reference: ([x]) => ropeRef(x!, 7),
      op: ([x]) =>
        tf.tidy(() => {
          const t = ropeTables(5, { headDim: 6, theta: 7 });
          return rope(x as tf.Tensor4D, t);
        }),
      differentiate: [0],
    });
  },
);

backendTest("rope() pairs element i with element i + d/2, not its neighbour", async () => {
  // One head, d = 4, position 1, theta 1: every frequency is 1 radian. HF's
  // rotate_half of (a, b, c, d) is (−c, −d, a, b).
  const y = tf.tidy(() =>
    rope(
      tf.tensor4d([0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 1, 4]),
      ropeTables(2, { headDim: 4, theta: 1 }),
    )
  );
  const c = Math.cos(1);
  const s = Math.sin(1);
  const expected = [0, 0, 0, 0, 1 * c - 3 * s, 2 * c - 4 * s, 3 * c + 1 * s, 4 * c + 2 * s];
  assertClose((await y.data()) as Float32Array, expected, 1e-6, "rope pairing");
  assertEquals(y.shape, [1, 2, 1, 4]);
  y.dispose();
});
