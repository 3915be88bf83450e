/**
 * AdamW with decoupled weight decay (PyTorch's `torch.optim.AdamW` update)
 * and global-norm gradient clipping.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type AdamWScalars, adamwScalars, adamwStep } from "./adamw_rule.ts";
import { FUSED_ADAMW, FUSED_SUM_SQUARES, hasFusedKernel, runFused } from "./fused_kernels.ts";

/** AdamW hyperparameters; the defaults are the paper's (spec §4, `ADAMW_DEFAULTS`). */
export interface AdamWOptions {
  /** Learning rate of this step (schedules live with the caller). */
  readonly lr: number;
  /** Default 0.9. */
  readonly beta1?: number;
  /** Default 0.95. */
  readonly beta2?: number;
  /** Default 1e-8. */
  readonly eps?: number;
  /** Decoupled decay, applied to parameters of rank ≥ 2 only; default 0.1. */
  readonly weightDecay?: number;
}

/** Per-call options of {@link adamwUpdate}. */
export interface AdamWStepOptions extends AdamWOptions {
  /** 1-based step number (bias corrections). */
  readonly step: number;
  /** Factor applied to the gradient first (clipping). */
  readonly gradScale: number;
  /**
   * The caller disposes `param`, `m` and `v` right after the call and never
   * reads them: a fused kernel may then write the results into their
   * buffers. Default false.
   */
  readonly consumeInputs?: boolean;
}

/** One parameter's new weight and moments; the caller owns them. */
export interface AdamWResult {
  readonly param: tf.Tensor;
  readonly m: tf.Tensor;
  readonly v: tf.Tensor;
}

/** Whether AdamW decays a parameter: matrices yes, 1-D tensors (norm weights) never. */
export function decays(param: tf.Tensor): boolean {
  return param.rank >= 2;
}

/**
 * One AdamW update of one parameter at step `step` (1-based), by the formula and scalars of
 * ./adamw_rule.ts. Inputs are not disposed (nor, unless `consumeInputs`, overwritten). Runs the
 * backend's `StepAdamW` kernel when it has one (./fused_kernels.ts).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { adamwUpdate } from "./adamw.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const p = tf.ones([2, 2]);
 * const r = adamwUpdate({ param: p, grad: tf.ones([2, 2]), m: tf.zeros([2, 2]), v: tf.zeros([2, 2]) },
 *   { step: 1, gradScale: 1, lr: 0.1 }); // p·(1 − 0.01) − 0.1·1/(1 + 1e-8)
 * ```
 */
export function adamwUpdate(
  tensors: {
    readonly param: tf.Tensor;
    readonly grad: tf.Tensor;
    readonly m: tf.Tensor;
    readonly v: tf.Tensor;
  },
  options: AdamWStepOptions,
): AdamWResult {
  const h = adamwStep(options, decays(tensors.param));
  const all = [tensors.param, tensors.grad, tensors.m, tensors.v];
  if (hasFusedKernel(FUSED_ADAMW) && all.every((x) => x.dtype === "float32")) {
    const [param, m, v] = runFused(FUSED_ADAMW, { ...tensors }, {
      ...h,
      inPlace: options.consumeInputs ?? false,
    });
    return { param: param!, m: m!, v: v! };
  }
  const s = adamwScalars(h);
  // Scoped step by step, so at most a few temporaries of this parameter's size live at once
  // (one tidy around all of it kept about a dozen until the end).
  const g = s.gradScale === 1 ? tensors.grad : tf.mul(tensors.grad, s.gradScale);
  const { m, v } = adamMoments(tensors, g, s);
  if (g !== tensors.grad) g.dispose();
  const update = adamDirection(m, v, s);
  const param = tf.tidy(() => {
    const decayed = s.decay === 1 ? tensors.param : tf.mul(tensors.param, s.decay);
    return tf.sub(decayed, tf.mul(update, s.stepSize));
  });
  update.dispose();
  return { param, m, v };
}

/**
 * New moments from gradient `g` (already scaled): m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g²;
 * each in its own scope, so few temporaries of the moment's size live at once.
 */
export function adamMoments(
  old: { readonly m: tf.Tensor; readonly v: tf.Tensor },
  g: tf.Tensor,
  s: Pick<AdamWScalars, "beta1" | "oneMinusBeta1" | "beta2" | "oneMinusBeta2">,
): { readonly m: tf.Tensor; readonly v: tf.Tensor } {
  const m = tf.tidy(() => tf.add(tf.mul(old.m, s.beta1), tf.mul(g, s.oneMinusBeta1)));
  const v = tf.tidy(() => tf.add(tf.mul(old.v, s.beta2), tf.mul(tf.square(g), s.oneMinusBeta2)));
  return { m, v };
}

/** m / (√(v·vCorrection) + ε): the update direction before the step size. */
export function adamDirection(
  m: tf.Tensor,
  v: tf.Tensor,
  s: Pick<AdamWScalars, "vCorrection" | "eps">,
): tf.Tensor {
  return tf.tidy(() => tf.div(m, tf.add(tf.sqrt(tf.mul(v, s.vCorrection)), s.eps)));
}

/**
 * √(Σ‖g‖²) over all gradients, as a scalar the caller owns: one `StepSumSquares` kernel where the
 * backend has it (each gradient read in place), else a square and a sum per gradient.
 */
export function globalNorm(grads: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    if (grads.length === 0) return tf.scalar(0);
    if (hasFusedKernel(FUSED_SUM_SQUARES) && grads.every((g) => g.dtype === "float32")) {
      const inputs = Object.fromEntries(grads.map((g, i) => [`x${i}`, g]));
      return tf.sqrt(runFused(FUSED_SUM_SQUARES, inputs)[0]!) as tf.Scalar;
    }
    // Pairwise adds, not addN: webgpu's AddN binds one buffer per input and
    // returns stale data past the adapter's storage-buffer limit (8 on Mesa).
    // One scope per gradient: its square dies at once (together they would equal the gradients).
    let terms = grads.map((g) => tf.tidy(() => tf.sum(tf.square(g))));
    while (terms.length > 1) {
      const next: tf.Tensor[] = [];
      for (let i = 0; i < terms.length; i += 2) {
        next.push(i + 1 < terms.length ? tf.add(terms[i]!, terms[i + 1]!) : terms[i]!);
      }
      terms = next;
    }
    return tf.sqrt(terms[0]!) as tf.Scalar;
  });
}

/** PyTorch's `clip_grad_norm_` factor: min(1, maxNorm / (norm + 1e-6)); 1 when maxNorm is not finite. */
export function clipFactor(norm: number, maxNorm: number): number {
  if (!Number.isFinite(maxNorm) || maxNorm <= 0) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}
