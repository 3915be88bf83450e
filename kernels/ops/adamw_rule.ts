/**
 * AdamW's arithmetic, written once: the defaults, the per-step scalars that every AdamW kernel
 * is built from (the composite in ./adamw.ts, GaLore's projected step in ../galore.ts, the wasm
 * SIMD kernel in ../fused, the WGSL kernel in ../webgpu), and a float64 reference of the update
 * as PyTorch documents it, which each of them is tested against (./adamw_rule_test.ts).
 *
 * Every kernel evaluates, element by element in float32, with the scalars rounded to float32:
 *
 *     g' = gradScale·g
 *     m' = β1·m + (1−β1)·g'
 *     v' = β2·v + (1−β2)·g'²
 *     p' = p·decay − stepSize · m' / (√(v'·vCorrection) + ε)
 *
 * stepSize = lr/(1−β1^t) folds the first moment's bias correction into the step, vCorrection =
 * 1/(1−β2^t) corrects the second moment inside the root, so ε is added to √v̂ (PyTorch's
 * placement, not √(v̂ + ε)), and decay = 1 − lr·wd is decoupled from the gradient. The scalars
 * are derived in float64 in one place so that every backend rounds the same numbers and runs
 * the same float32 operations in the same order.
 *
 * @module
 */

/** The paper's AdamW constants (spec §4), used where a caller gives none. */
export const ADAMW_DEFAULTS = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 } as const;

/**
 * One update's hyper-parameters, defaults applied. The field names are also the attrs of the
 * `StepAdamW` kernel (./fused_kernels.ts).
 */
export interface AdamWStep {
  /** Learning rate of this step. */
  readonly lr: number;
  /** First moment's decay. */
  readonly beta1: number;
  /** Second moment's decay. */
  readonly beta2: number;
  /** Added to √v̂. */
  readonly eps: number;
  /** The decay of this parameter: 0 for one that does not decay. */
  readonly weightDecay: number;
  /** 1-based (bias corrections). */
  readonly step: number;
  /** Factor on the gradient (clipping). */
  readonly gradScale: number;
}

/** The numeric fields of {@link AdamWStep}, in the kernel's attr order. */
export const ADAMW_STEP_FIELDS = [
  "lr",
  "beta1",
  "beta2",
  "eps",
  "weightDecay",
  "step",
  "gradScale",
] as const satisfies readonly (keyof AdamWStep)[];

/**
 * The step of one parameter: `options` with {@link ADAMW_DEFAULTS} for what it leaves out, and
 * no decay unless `decays`.
 */
export function adamwStep(
  options: Partial<Omit<AdamWStep, "lr" | "step" | "gradScale">> & {
    readonly lr: number;
    readonly step: number;
    readonly gradScale: number;
  },
  decays: boolean,
): AdamWStep {
  return {
    lr: options.lr,
    beta1: options.beta1 ?? ADAMW_DEFAULTS.beta1,
    beta2: options.beta2 ?? ADAMW_DEFAULTS.beta2,
    eps: options.eps ?? ADAMW_DEFAULTS.eps,
    weightDecay: decays ? (options.weightDecay ?? ADAMW_DEFAULTS.weightDecay) : 0,
    step: options.step,
    gradScale: options.gradScale,
  };
}

/** An {@link AdamWStep} read field by field (a kernel's attrs). */
export function adamwStepFrom(read: (field: keyof AdamWStep) => number): AdamWStep {
  const [lr, beta1, beta2, eps, weightDecay, step, gradScale] = ADAMW_STEP_FIELDS.map(read) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return { lr, beta1, beta2, eps, weightDecay, step, gradScale };
}

/** The scalars of the module's formula, in float64. */
export interface AdamWScalars {
  /** Factor on the gradient. */
  readonly gradScale: number;
  /** β1, the old first moment's factor. */
  readonly beta1: number;
  /** 1 − β1, the gradient's factor, rounded once. */
  readonly oneMinusBeta1: number;
  /** β2, the old second moment's factor. */
  readonly beta2: number;
  /** 1 − β2, the squared gradient's factor, rounded once. */
  readonly oneMinusBeta2: number;
  /** 1/(1 − β2^t): the second moment's bias correction, as a factor inside the root. */
  readonly vCorrection: number;
  /** Added to the root (PyTorch's placement). */
  readonly eps: number;
  /** stepScale·lr/(1 − β1^t): the first moment's bias correction folded into the step. */
  readonly stepSize: number;
  /** 1 − lr·wd: decoupled decay (exactly 1 without decay, which leaves the weight exact). */
  readonly decay: number;
}

/**
 * The scalars of one update. `stepScale` multiplies the step only, not the decay (GaLore's
 * scale on its projected-back update); 1 leaves lr exact.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adamwScalars } from "./adamw_rule.ts";
 * const s = adamwScalars({ lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: 1 });
 * assert.equal(s.stepSize, 0.1 / (1 - 0.9)); // the bias-corrected first step moves by ≈ lr
 * assert.equal(s.decay, 1 - 0.1 * 0.1);
 * ```
 */
export function adamwScalars(h: AdamWStep, stepScale = 1): AdamWScalars {
  return {
    gradScale: h.gradScale,
    beta1: h.beta1,
    oneMinusBeta1: 1 - h.beta1,
    beta2: h.beta2,
    oneMinusBeta2: 1 - h.beta2,
    vCorrection: 1 / (1 - Math.pow(h.beta2, h.step)),
    eps: h.eps,
    stepSize: (h.lr * stepScale) / (1 - Math.pow(h.beta1, h.step)),
    decay: 1 - h.lr * h.weightDecay,
  };
}

/** Float64 moments and Adam's direction m̂/(√v̂ + ε) of one step, as PyTorch writes them. */
export function adamReference(
  grad: ArrayLike<number>,
  old: { readonly m: ArrayLike<number>; readonly v: ArrayLike<number> },
  h: AdamWStep,
): { m: Float64Array; v: Float64Array; direction: Float64Array } {
  const n = grad.length;
  const [m, v, direction] = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  for (let i = 0; i < n; i++) {
    const g = h.gradScale * grad[i]!;
    m[i] = h.beta1 * old.m[i]! + (1 - h.beta1) * g;
    v[i] = h.beta2 * old.v[i]! + (1 - h.beta2) * g * g;
    const mHat = m[i]! / (1 - h.beta1 ** h.step);
    const vHat = v[i]! / (1 - h.beta2 ** h.step);
    direction[i] = mHat / (Math.sqrt(vHat) + h.eps);
  }
  return { m, v, direction };
}

/**
 * One AdamW update in float64, as PyTorch's `torch.optim.AdamW` documents it: p ← p − lr·wd·p,
 * then p ← p − lr·m̂/(√v̂ + ε). The reference every kernel is compared with.
 */
export function adamwReference(
  x: {
    readonly param: ArrayLike<number>;
    readonly grad: ArrayLike<number>;
    readonly m: ArrayLike<number>;
    readonly v: ArrayLike<number>;
  },
  h: AdamWStep,
): { param: Float64Array; m: Float64Array; v: Float64Array } {
  const { m, v, direction } = adamReference(x.grad, x, h);
  const param = Float64Array.from(
    direction,
    (d, i) => x.param[i]! - h.lr * h.weightDecay * x.param[i]! - h.lr * d,
  );
  return { param, m, v };
}
