/**
 * RMSNorm with a hand-written gradient.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { KEEP_DIMS } from "./flags.ts";
import { FUSED_RMS_NORM, hasFusedPair, runFused } from "./fused_kernels.ts";

/** Options of {@link rmsNorm}. */
export interface RmsNormOptions {
  /** Added to mean(x²) before the square root (LLaMA: 1e-5 or 1e-6). */
  readonly eps: number;
}

/**
 * y = x · w / sqrt(mean(x²) + eps) over the last axis; x [n, h], w [h].
 *
 * Backward, with r = 1/sqrt(mean(x²)+eps), x̂ = x·r and g = dy·w:
 * dx = r · (g − x̂ · mean(g·x̂)), dw = Σ_rows dy·x̂. Saves x, w and r (n floats).
 * Runs the backend's `StepRmsNorm` kernels when it has them (./fused_kernels.ts),
 * else {@link rmsNormComposite}.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { rmsNorm } from "./rms_norm.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const y = rmsNorm(tf.tensor2d([[3, 4]]), tf.ones([2]) as tf.Tensor1D, { eps: 0 }); // [[0.8485, 1.1314]]
 * ```
 */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, options: RmsNormOptions): tf.Tensor2D {
  if (!hasFusedPair(FUSED_RMS_NORM, [x, weight])) return rmsNormComposite(x, weight, options);
  const eps = options.eps;
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, w, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const [y, rstd] = runFused(FUSED_RMS_NORM.forward, { x, weight: w }, { eps });
    save([x, w, rstd!]);
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [x, weight, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        return runFused(FUSED_RMS_NORM.gradient, { dy, x, weight, rstd }, { eps });
      },
    };
  });
  return op(x, weight) as tf.Tensor2D;
}

/**
 * {@link rmsNorm} from plain tfjs ops: the reference of the fused kernels and
 * the path of backends without them.
 */
export function rmsNormComposite(
  x: tf.Tensor2D,
  weight: tf.Tensor1D,
  options: RmsNormOptions,
): tf.Tensor2D {
  const eps = options.eps;
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, w, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, KEEP_DIMS), eps)); // (n, 1)
    save([x, w, r]);
    return {
      value: tf.mul(tf.mul(x, r), w),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [x, w, r] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor2D];
        const xHat = tf.mul(x, r);
        const g = tf.mul(dy, w);
        const dx = tf.mul(r, tf.sub(g, tf.mul(xHat, tf.mean(tf.mul(g, xHat), -1, KEEP_DIMS))));
        const dw = tf.sum(tf.mul(dy, xHat), 0);
        return [dx, dw];
      },
    };
  });
  return op(x, weight) as tf.Tensor2D;
}
