/**
 * Cross-entropy over the vocabulary without one-hot targets.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { KEEP_DIMS } from "./flags.ts";
import { FUSED_CROSS_ENTROPY, hasFusedPair, runFused } from "./fused_kernels.ts";

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
 * Runs the backend's `StepSoftmaxCrossEntropy` kernels when it has them
 * (./fused_kernels.ts; they save the logits and lse instead), else
 * {@link crossEntropySumComposite}.
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
  if (targets.dtype !== "int32" || targets.shape[0] !== logits.shape[0]) {
    throw new Error(
      `crossEntropySum: targets [${targets.shape}] ${targets.dtype} do not fit ` +
        `logits [${logits.shape}]`,
    );
  }
  if (!hasFusedPair(FUSED_CROSS_ENTROPY, [logits])) {
    return crossEntropySumComposite(logits, targets);
  }
  const [n] = logits.shape;
  const op = tf.customGrad((...args: unknown[]) => {
    const [logits, targets, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const [rowLoss, lse] = runFused(FUSED_CROSS_ENTROPY.forward, { logits, targets });
    save([logits, targets, lse!]);
    return {
      value: tf.sum(rowLoss!),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [logits, targets, lse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const perRow = tf.broadcastTo(tf.reshape(dy, [1]), [n]);
        const [dx] = runFused(FUSED_CROSS_ENTROPY.gradient, { dy: perRow, logits, targets, lse });
        return [dx!, tf.zerosLike(targets)];
      },
    };
  });
  return op(logits, targets) as tf.Scalar;
}

/**
 * {@link crossEntropySum} from plain tfjs ops: the reference of the fused
 * kernels and the path of backends without them.
 */
export function crossEntropySumComposite(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
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

/** Per-row losses (0 for ignored rows) and log-sum-exps of `logits` [n, V] against `targets` [n]. */
export function crossEntropyRows(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
): { readonly rowLoss: tf.Tensor1D; readonly lse: tf.Tensor1D } {
  if (hasFusedPair(FUSED_CROSS_ENTROPY, [logits])) {
    const [rowLoss, lse] = runFused(FUSED_CROSS_ENTROPY.forward, { logits, targets });
    return { rowLoss: rowLoss as tf.Tensor1D, lse: lse as tf.Tensor1D };
  }
  return tf.tidy(() => {
    const n = logits.shape[0];
    const valid = tf.cast(tf.greaterEqual(targets, 0), "float32");
    const top = tf.max(logits, -1, KEEP_DIMS);
    const lse = tf.add(
      tf.reshape(top, [n]),
      tf.log(tf.sum(tf.exp(tf.sub(logits, top)), -1)),
    ) as tf.Tensor1D;
    const at = tf.stack(
      [tf.range(0, n, 1, "int32"), tf.maximum(targets, tf.zerosLike(targets))],
      1,
    );
    const picked = tf.gatherND(logits, at) as tf.Tensor1D;
    return { rowLoss: tf.mul(tf.sub(lse, picked), valid) as tf.Tensor1D, lse };
  });
}

/**
 * d(rowLoss)/d(logits) scaled per row by `dy` [n]: dy·(softmax − one-hot), 0 for ignored rows,
 * from the `lse` {@link crossEntropyRows} returned.
 */
export function crossEntropyRowsGrad(
  dy: tf.Tensor1D,
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  lse: tf.Tensor1D,
): tf.Tensor2D {
  if (hasFusedPair(FUSED_CROSS_ENTROPY, [logits])) {
    const [d] = runFused(FUSED_CROSS_ENTROPY.gradient, { dy, logits, targets, lse });
    return d as tf.Tensor2D;
  }
  return tf.tidy(() => {
    const [n, vocab] = logits.shape;
    const valid = tf.cast(tf.greaterEqual(targets, 0), "float32");
    const p = tf.exp(tf.sub(logits, tf.reshape(lse, [n, 1])));
    const hot = tf.cast(tf.oneHot(tf.maximum(targets, tf.zerosLike(targets)), vocab), "float32");
    return tf.mul(tf.sub(p, hot), tf.reshape(tf.mul(dy, valid), [n, 1])) as tf.Tensor2D;
  });
}
