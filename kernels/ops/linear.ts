/**
 * A bias-free linear map with an optional LoRA branch.
 *
 * Plain matmuls on purpose: tfjs asks a matmul's gradient for each input
 * separately, so a frozen weight under a trainable adapter costs no weight
 * gradient.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { addKeepingNothing, scaleKeepingNothing } from "./shape_ops.ts";
import { releaseDisposedGpuBuffers } from "./release.ts";

/** A LoRA branch: y += scale · (x·A)·B with A [in, r], B [r, out]. */
export interface LoraBranch {
  readonly a: tf.Tensor2D;
  readonly b: tf.Tensor2D;
  /** α / r. */
  readonly scale: number;
}

/**
 * x ([n, in]) · W ([in, out]), plus the adapter branch when given: [n, out].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { linear } from "./linear.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const y = linear(tf.ones([2, 3]) as tf.Tensor2D, tf.ones([3, 4]) as tf.Tensor2D); // all 3
 * ```
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, lora?: LoraBranch): tf.Tensor2D {
  if (lora === undefined) return tf.matMul(x, w);
  // x·W, (x·A)·B and its scaled copy die here rather than at the layer's end: the tape keeps
  // only x and x·A (the matmuls' saved inputs) for the backward pass.
  const out = tf.tidy(() => {
    const y: tf.Tensor2D = tf.matMul(x, w);
    const low: tf.Tensor2D = tf.matMul(tf.matMul(x, lora.a), lora.b);
    return addKeepingNothing(y, scaleKeepingNothing(low, lora.scale));
  });
  // On webgpu their buffers return now, not a command batch later: a layer rebuilt for its
  // backward pass (recomputation) runs beside every gradient made so far.
  releaseDisposedGpuBuffers();
  return out;
}
