/**
 * Cross-entropy over the vocabulary without one-hot targets.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/**
 * Σ over rows with target ≥ 0 of −log softmax(logits)[row, target]; a scalar.
 * Rows with a negative target (padding) add nothing and get zero gradient.
 * logits [n, vocab] float32, targets [n] int32 below vocab.
 *
 * The log-sum-exp comes from the softmax itself: its largest probability is
 * exactly 1/Σexp(x − max), so lse = max − log(max p) with no underflow, and the
 * softmax is the one pass the gradient needs anyway. Backward is
 * (p − 1[target])·dy: p scaled per row, then the n target entries overwritten
 * by a scatter, never an [n, vocab] one-hot. Saves p ([n, vocab]).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { crossEntropySum } from "./cross_entropy.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const l = crossEntropySum(tf.zeros([2, 4]) as tf.Tensor2D, tf.tensor1d([1, -1], "int32")); // log 4
 * ```
 */
export function crossEntropySum(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  const [n] = logits.shape;
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, t, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const valid = tf.cast(tf.greaterEqual(t, 0), "float32"); // (n)
    const at = tf.stack([tf.range(0, n, 1, "int32"), tf.maximum(t, tf.zerosLike(t))], 1); // (n, 2) = (row, target)
    const p = tf.softmax(x);
    const lse = tf.sub(tf.max(x, -1), tf.log(tf.max(p, -1)));
    const picked = tf.gatherND(x, at) as tf.Tensor1D;
    save([p, at, valid]);
    return {
      value: tf.sum(tf.mul(tf.sub(lse, picked), valid)),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [p, at, valid] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const rowScale = tf.mul(valid, dy); // (n)
        const scaled = tf.mul(p, tf.reshape(rowScale, [n, 1]));
        const atTarget = tf.mul(tf.sub(tf.gatherND(p, at), 1), rowScale);
        const dx = tf.tensorScatterUpdate(scaled, at, atTarget);
        return [dx, tf.zeros([n], "int32")];
      },
    };
  });
  return op(logits, targets) as tf.Scalar;
}
