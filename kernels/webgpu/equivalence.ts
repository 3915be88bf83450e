/**
 * Equivalence checks of the fused ops against their composites, as plain
 * functions: the tests in this folder assert on them, and the GPU device
 * program (bench/gpu_main.ts, a compiled binary without `deno test`) prints
 * them. Cases are seeded random shapes with the awkward sizes (sequence not
 * a multiple of the workgroup, odd widths, small head dims, grouped-query
 * heads, ignored cross-entropy targets, odd half head dims for RoPE, 1-D
 * parameters AdamW does not decay).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type AdamWStepOptions, adamwUpdate } from "../ops/adamw.ts";
import { FUSED_ADAMW } from "../ops/fused_kernels.ts";
import { causalAttention, causalAttentionComposite } from "../ops/attention.ts";
import { crossEntropySum, crossEntropySumComposite } from "../ops/cross_entropy.ts";
import { rmsNorm, rmsNormComposite } from "../ops/rms_norm.ts";
import { rope, ropeComposite } from "../ops/rope.ts";
import { swiglu, swigluComposite } from "../ops/swiglu.ts";

/** Which implementation of an op to run. */
export type OpPath = "fused" | "composite";

/** The ops the cases cover. */
export type KernelKind = "rmsNorm" | "crossEntropy" | "attention" | "rope" | "swiglu" | "adamw";

/** The options of an AdamW case: one {@link adamwUpdate} call, never in place. */
export type AdamWCaseOptions = Omit<AdamWStepOptions, "consumeInputs">;

/** One op on fixed inputs. */
export interface KernelCase {
  readonly label: string;
  readonly kind: KernelKind;
  /** Input shapes, in the op's argument order. */
  readonly shapes: readonly (readonly number[])[];
  /** Input values (float32, or int32 for targets), in the same order. */
  readonly values: readonly (Float32Array | Int32Array)[];
  /**
   * Inputs the gradient is taken with respect to; none for an op without a
   * gradient (AdamW), whose leak check then covers a second forward call.
   */
  readonly differentiate: readonly number[];
  readonly eps: number;
  /** AdamW's hyperparameters and step (AdamW cases only). */
  readonly adamw?: AdamWCaseOptions;
}

/** An op's outputs on the active backend. */
export interface CaseOutputs {
  /** The op's (first) output. */
  readonly forward: Float32Array;
  /**
   * Its further outputs (AdamW's m′ and v′), each compared like `forward`
   * on its own scale; empty for single-output ops.
   */
  readonly more: readonly Float32Array[];
  /** Gradients of Σ c·y (c fixed per case) for each differentiated input. */
  readonly grads: readonly Float32Array[];
  /**
   * Tensors, and backend buffers, a second gradient call left behind (0 when
   * nothing leaks; a kernel's temporaries are backend buffers, not tensors).
   */
  readonly leaked: number;
}

/** How close two runs of a case came. */
export interface CaseComparison {
  readonly label: string;
  /** max|a − e| / max|e| of the forward values (the worst output of several). */
  readonly forward: number;
  /** The same, the worst over the gradients. */
  readonly gradient: number;
  readonly leaked: number;
  readonly passed: boolean;
}

/** Tolerances of ../ops/fused_kernels.ts: relative to the largest expected magnitude. */
export const FORWARD_TOL = 1e-5;
/** Gradient tolerance; see {@link FORWARD_TOL}. */
export const GRADIENT_TOL = 1e-4;
/**
 * Gradients that cancel to nearly 0 (RMSNorm of a one-element row) keep the
 * float32 rounding of their O(1) terms: an absolute floor beside the tolerance.
 */
const GRADIENT_FLOOR = 1e-6;

/** mulberry32: a seeded stream in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function int(next: () => number, lo: number, hi: number): number {
  return lo + Math.floor(next() * (hi - lo + 1));
}

function uniform(next: () => number, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

/** Options of {@link kernelCases}. */
export interface KernelCaseOptions {
  readonly seed: number;
  /** Cases per op. */
  readonly perOp: number;
  /** Longest attention sequence (keep it small on a software adapter). */
  readonly maxSeq: number;
}

/**
 * Seeded cases for RMSNorm, cross-entropy, attention, RoPE, SwiGLU and AdamW,
 * in that order (cases of the later ops do not shift the earlier ones'
 * seeds). Attention always includes one sequence longer than 64 (two
 * workgroups of query rows, several shared tiles) when `maxSeq` allows it;
 * RoPE's first case has an odd half head dim, SwiGLU's a single column, and
 * AdamW alternates matrices (decayed) with vectors (not decayed).
 *
 * @example
 * ```ts
 * import { kernelCases } from "./equivalence.ts";
 * const cases = kernelCases({ seed: 1, perOp: 2, maxSeq: 40 });
 * console.log(cases.map((c) => c.label));
 * ```
 */
export function kernelCases(options: KernelCaseOptions): KernelCase[] {
  const next = rng(options.seed);
  const cases: KernelCase[] = [];
  for (let i = 0; i < options.perOp; i++) {
    const [n, h] = [int(next, 1, 9), i === 0 ? 1 : int(next, 2, 300)];
    const eps = [1e-5, 1e-6, 0.1][i % 3]!;
    cases.push({
      label: `rmsNorm [${n}, ${h}] eps ${eps}`,
      kind: "rmsNorm",
      shapes: [[n, h], [h]],
      values: [uniform(next, n * h, 3), uniform(next, h, 2)],
      differentiate: [0, 1],
      eps,
    });
  }
  for (let i = 0; i < options.perOp; i++) {
    const [n, v] = [int(next, 1, 12), int(next, 2, 700)];
    const targets = Int32Array.from({ length: n }, () => next() < 0.25 ? -1 : int(next, 0, v - 1));
    cases.push({
      label: `crossEntropy [${n}, ${v}], ${targets.filter((t) => t < 0).length} ignored`,
      kind: "crossEntropy",
      shapes: [[n, v], [n]],
      values: [uniform(next, n * v, 8), targets],
      differentiate: [0],
      eps: 0,
    });
  }
  for (let i = 0; i < options.perOp; i++) {
    const kv = int(next, 1, 2);
    const heads = kv * int(next, 1, 3);
    const d = 2 * int(next, 1, 9);
    const seq = i === 0 ? Math.min(options.maxSeq, 70) : int(next, 1, options.maxSeq);
    const b = int(next, 1, 2);
    const qn = b * seq * heads * d;
    const kn = b * seq * kv * d;
    cases.push({
      label: `attention b ${b} t ${seq} H ${heads} K ${kv} d ${d}`,
      kind: "attention",
      shapes: [[b, seq, heads, d], [b, seq, kv, d], [b, seq, kv, d]],
      values: [uniform(next, qn, 2), uniform(next, kn, 2), uniform(next, kn, 1)],
      differentiate: [0, 1, 2],
      eps: 0,
    });
  }
  cases.push(
    ...ropeCases(next, options),
    ...swigluCases(next, options),
    ...adamwCases(next, options),
  );
  return cases;
}

function ropeCases(next: () => number, options: KernelCaseOptions): KernelCase[] {
  const cases: KernelCase[] = [];
  for (let i = 0; i < options.perOp; i++) {
    // An odd half (d/2) first: the rotation pairs i with i + d/2, never neighbours.
    const half = i === 0 ? 2 * int(next, 0, 3) + 1 : int(next, 1, 9);
    const [b, seq, heads] = [int(next, 1, 2), int(next, 1, options.maxSeq), int(next, 1, 3)];
    const d = 2 * half;
    cases.push({
      label: `rope b ${b} t ${seq} H ${heads} d ${d}`,
      kind: "rope",
      shapes: [[b, seq, heads, d], [seq, half], [seq, half]],
      // Tables as random as x: the kernels must not assume cos² + sin² = 1.
      values: [
        uniform(next, b * seq * heads * d, 2),
        uniform(next, seq * half, 1),
        uniform(next, seq * half, 1),
      ],
      differentiate: [0],
      eps: 0,
    });
  }
  return cases;
}

function swigluCases(next: () => number, options: KernelCaseOptions): KernelCase[] {
  const cases: KernelCase[] = [];
  for (let i = 0; i < options.perOp; i++) {
    const [n, f] = [int(next, 1, 9), i === 0 ? 1 : int(next, 2, 300)];
    cases.push({
      label: `swiglu [${n}, ${f}]`,
      kind: "swiglu",
      shapes: [[n, f], [n, f]],
      // Gates up to ±8: σ saturates at both ends.
      values: [uniform(next, n * f, 8), uniform(next, n * f, 2)],
      differentiate: [0, 1],
      eps: 0,
    });
  }
  return cases;
}

function adamwCases(next: () => number, options: KernelCaseOptions): KernelCase[] {
  const cases: KernelCase[] = [];
  for (let i = 0; i < options.perOp; i++) {
    const cols = int(next, 1, 300);
    const shape = i % 2 === 0 ? [int(next, 1, 9), cols] : [cols];
    const size = shape.reduce((a, b) => a * b, 1);
    const adamw: AdamWCaseOptions = {
      lr: [1e-3, 0.3, 0.05][i % 3]!,
      step: i === 0 ? 1 : int(next, 2, 2000),
      gradScale: i === 0 ? 1 : 0.1 + next(),
      weightDecay: 0.1,
      beta2: [0.95, 0.999][i % 2]!,
    };
    // Small parameters in every other case, so the update is not lost in param's own scale.
    const paramScale = i % 2 === 0 ? 1 : 1e-3;
    cases.push({
      label: `adamw [${shape}] step ${adamw.step} lr ${adamw.lr} gradScale ${
        adamw.gradScale.toFixed(2)
      }`,
      kind: "adamw",
      shapes: [shape, shape, shape, shape],
      values: [
        uniform(next, size, paramScale),
        uniform(next, size, 3),
        uniform(next, size, 0.1),
        uniform(next, size, 0.1).map(Math.abs), // v ≥ 0
      ],
      differentiate: [],
      eps: 0,
      adamw,
    });
  }
  return cases;
}

/**
 * Runs `fn` with kernel `name` unregistered from the active backend, so an op
 * without an exported composite (adamwUpdate) takes its composite branch.
 */
function withoutKernel<T>(name: string, fn: () => T): T {
  const backend = tf.getBackend();
  const config = tf.getKernel(name, backend);
  if (config === undefined) return fn();
  tf.unregisterKernel(name, backend);
  try {
    return fn();
  } finally {
    tf.registerKernel(config);
  }
}

/** The op of a case: its outputs, the first being the one differentiated. */
function opOf(c: KernelCase, path: OpPath): (xs: tf.Tensor[]) => tf.Tensor[] {
  const fused = path === "fused";
  switch (c.kind) {
    case "rmsNorm":
      return ([x, w]) => [
        (fused ? rmsNorm : rmsNormComposite)(x as tf.Tensor2D, w as tf.Tensor1D, { eps: c.eps }),
      ];
    case "crossEntropy":
      return ([x, t]) => [
        (fused ? crossEntropySum : crossEntropySumComposite)(x as tf.Tensor2D, t as tf.Tensor1D),
      ];
    case "attention":
      return ([q, k, v]) => [
        (fused ? causalAttention : causalAttentionComposite)(
          q as tf.Tensor4D,
          k as tf.Tensor4D,
          v as tf.Tensor4D,
        ),
      ];
    case "rope":
      return ([x, cos, sin]) => [
        (fused ? rope : ropeComposite)(x as tf.Tensor4D, {
          cos: cos as tf.Tensor2D,
          sin: sin as tf.Tensor2D,
        }),
      ];
    case "swiglu":
      return ([gate, up]) => [
        (fused ? swiglu : swigluComposite)(gate as tf.Tensor2D, up as tf.Tensor2D),
      ];
    case "adamw":
      return ([param, grad, m, v]) => {
        const options = c.adamw;
        if (options === undefined) throw new Error(`${c.label}: an AdamW case needs its options`);
        const update = (): tf.Tensor[] => {
          const r = adamwUpdate({ param: param!, grad: grad!, m: m!, v: v! }, options);
          return [r.param, r.m, r.v];
        };
        return fused ? update() : withoutKernel(FUSED_ADAMW, update);
      };
  }
}

/** Every output's values, then the outputs disposed. */
async function valuesOf(outputs: readonly tf.Tensor[]): Promise<Float32Array[]> {
  const values: Float32Array[] = [];
  for (const y of outputs) values.push((await y.data()) as Float32Array);
  tf.dispose([...outputs]);
  return values;
}

/** Tensors plus backend buffers alive now (a kernel's temporaries are buffers, not tensors). */
function liveCount(): number {
  return tf.memory().numTensors + tf.engine().backend.numDataIds();
}

/** Options of {@link runCase} and {@link compareFusedToComposite}. */
export interface RunOptions {
  /**
   * Also take gradients (and check for leaks); default true. Without them a
   * case costs one forward pass: for shapes a software adapter runs slowly.
   */
  readonly gradients?: boolean;
}

/**
 * Runs a case on the active backend: forward values, gradients of Σ c·y for
 * a seeded c, and the tensors a second gradient call leaves behind.
 */
export async function runCase(
  c: KernelCase,
  path: OpPath,
  options: RunOptions = {},
): Promise<CaseOutputs> {
  const op = opOf(c, path);
  const inputs = c.values.map((v, i) =>
    tf.tensor(v, [...c.shapes[i]!], v instanceof Int32Array ? "int32" : "float32")
  );
  const ys = op(inputs);
  const shape = ys[0]!.shape;
  const [forward, ...more] = await valuesOf(ys);
  if (options.gradients === false) {
    tf.dispose(inputs);
    return { forward: forward!, more, grads: [], leaked: 0 };
  }
  if (c.differentiate.length === 0) {
    // No gradient: the leak check covers a second forward call (the first warmed up).
    const before = liveCount();
    await valuesOf(op(inputs));
    const leaked = liveCount() - before;
    tf.dispose(inputs);
    return { forward: forward!, more, grads: [], leaked };
  }
  const weights = tf.tensor(uniform(rng(forward!.length + 17), forward!.length, 1), shape);
  const gradsOf = (): tf.Tensor[] =>
    tf.grads((...xs: tf.Tensor[]) => {
      const all = inputs.map((x, i) => {
        const at = c.differentiate.indexOf(i);
        return at < 0 ? x : xs[at]!;
      });
      const outs = op(all);
      tf.dispose(outs.slice(1));
      return tf.sum(tf.mul(outs[0]!, weights));
    })(c.differentiate.map((i) => inputs[i]!));
  const warm = gradsOf(); // warm-up: kernels and caches allocate on first use
  for (const g of warm) await g.data();
  tf.dispose(warm);
  const before = liveCount();
  const grads = await valuesOf(gradsOf());
  const leaked = liveCount() - before;
  tf.dispose([...inputs, weights]);
  return { forward: forward!, more, grads, leaked };
}

/** max|a − e| / max|e| (0 when both are all zero). */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    const d = Math.abs(actual[i]! - expected[i]!);
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  return worst === 0 ? 0 : worst / Math.max(scale, GRADIENT_FLOOR / GRADIENT_TOL);
}

/** Compares two runs of `label` against the tolerances of ../ops/fused_kernels.ts. */
export function compareOutputs(
  label: string,
  actual: CaseOutputs,
  expected: CaseOutputs,
): CaseComparison {
  const forward = actual.more.length !== expected.more.length ? Infinity : actual.more.reduce(
    (worst, y, i) => Math.max(worst, relativeError(y, expected.more[i]!)),
    relativeError(actual.forward, expected.forward),
  );
  const gradient = actual.grads.reduce(
    (worst, g, i) => Math.max(worst, relativeError(g, expected.grads[i] ?? new Float32Array())),
    0,
  );
  const leaked = Math.max(actual.leaked, expected.leaked);
  return {
    label,
    forward,
    gradient,
    leaked,
    passed: forward <= FORWARD_TOL && gradient <= GRADIENT_TOL && leaked === 0,
  };
}

/**
 * Runs every case fused and composite on the active backend and compares them.
 *
 * @example
 * ```ts
 * import { compareFusedToComposite, kernelCases } from "./equivalence.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu"); // no fused kernels there: both paths are the composite
 * const rows = await compareFusedToComposite(kernelCases({ seed: 1, perOp: 1, maxSeq: 8 }));
 * console.log(rows.every((r) => r.passed));
 * ```
 */
export async function compareFusedToComposite(
  cases: readonly KernelCase[],
  options: RunOptions = {},
): Promise<CaseComparison[]> {
  const rows: CaseComparison[] = [];
  for (const c of cases) {
    const fused = await runCase(c, "fused", options);
    rows.push(compareOutputs(c.label, fused, await runCase(c, "composite", options)));
  }
  return rows;
}
