import * as tf from "@tensorflow/tfjs-core";
import { assertEquals } from "../../tests/assert.ts";
import { asFloat32, assertClose, backendTest, checkBlock } from "../_test_util.ts";
import { arr, crossEntropyRef, uniformArr } from "../_reference.ts";
import { crossEntropySum } from "./cross_entropy.ts";

const targets = [3, 0, -1, 6, 2];

backendTest(
  "crossEntropySum() matches the reference, skips negative targets, and matches finite differences",
  async () => {
    const logits = asFloat32(uniformArr([5, 7], 21, 4));
    await checkBlock({
      label: "crossEntropy",
      inputs: [logits],
      reference: ([x]) => arr([], [crossEntropyRef(x!, targets)]),
      op: ([x]) => tf.tidy(() => crossEntropySum(x as tf.Tensor2D, tf.tensor1d(targets, "int32"))),
      differentiate: [0],
    });
  },
);

backendTest("crossEntropySum() stays finite for logits far beyond exp's range", async () => {
  // A target 200 below the row's maximum: p underflows to 0 in float32, the loss must not.
  const loss = tf.tidy(() =>
    crossEntropySum(tf.tensor2d([[0, 200, 0], [1, 2, 3]]), tf.tensor1d([0, 2], "int32"))
  );
  const expected = crossEntropyRef(arr([2, 3], [0, 200, 0, 1, 2, 3]), [0, 2]);
  assertClose((await loss.data()) as Float32Array, [expected], 1e-6, "large logits");
  assertEquals(loss.shape, []);
  loss.dispose();
});
