import * as tf from "@tensorflow/tfjs-core";
import { assertEquals } from "../../tests/assert.ts";
import { asFloat32, assertClose, backendTest, checkBlock } from "../_test_util.ts";
import { type Arr, arr, crossEntropyRef, matmul, uniformArr } from "../_reference.ts";
import { chunkedHeadLoss } from "./chunked_loss.ts";
import { crossEntropySum } from "./cross_entropy.ts";

// Seven rows, one ignored: chunks of 1, 3 (a ragged last chunk) and 6 (one row left over).
const targets = [3, 0, -1, 6, 2, 5, 1];

function transpose(w: Arr): Arr {
  const [r, c] = w.shape as [number, number];
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = w.data[i * c + j]!;
  return arr([c, r], out);
}

for (const chunk of [1, 3, 6]) {
  backendTest(
    `chunkedHeadLoss() in chunks of ${chunk} matches the float64 loss and finite differences`,
    async () => {
      const h = asFloat32(uniformArr([7, 4], 31, 2));
      const head = asFloat32(uniformArr([4, 9], 32, 2));
      const t = () => tf.tensor1d(targets, "int32");
      await checkBlock({
        label: `untied head, chunk ${chunk}`,
        inputs: [h, head],
        reference: ([x, w]) => arr([], [crossEntropyRef(matmul(x!, w!), targets)]),
        op: ([x, w]) =>
          chunkedHeadLoss(x as tf.Tensor2D, w as tf.Tensor2D, t(), {
            chunk,
            tied: false,
            headTrains: true,
          }),
        differentiate: [0, 1],
      });
      const embedding = asFloat32(uniformArr([9, 4], 33, 2));
      await checkBlock({
        label: `tied head, chunk ${chunk}`,
        inputs: [h, embedding],
        reference: ([x, e]) => arr([], [crossEntropyRef(matmul(x!, transpose(e!)), targets)]),
        op: ([x, e]) =>
          chunkedHeadLoss(x as tf.Tensor2D, e as tf.Tensor2D, t(), {
            chunk,
            tied: true,
            headTrains: true,
          }),
        differentiate: [0, 1],
      });
    },
  );
}

backendTest("chunkedHeadLoss() with a frozen head: the hidden states' gradient only", async () => {
  const h = tf.randomNormal([7, 4], 0, 1, "float32", 3) as tf.Tensor2D;
  const head = tf.randomNormal([4, 9], 0, 1, "float32", 4) as tf.Tensor2D;
  const t = tf.tensor1d(targets, "int32");
  const whole = tf.grads((x: tf.Tensor) => crossEntropySum(tf.matMul(x as tf.Tensor2D, head), t));
  const chunked = tf.grads((x: tf.Tensor) =>
    chunkedHeadLoss(x as tf.Tensor2D, head, t, { chunk: 2, tied: false, headTrains: false })
  );
  const [expected] = whole([h]);
  chunked([h])[0]!.dispose(); // warm-up
  const before = tf.memory().numTensors;
  const [got] = chunked([h]);
  assertEquals(tf.memory().numTensors, before + 1);
  assertClose(
    (await got!.data()) as Float32Array,
    (await expected!.data()) as Float32Array,
    1e-5,
    "dh",
  );
  tf.dispose([h, head, t, expected!, got!]);
});
