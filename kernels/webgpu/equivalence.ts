/**
 * Equivalence checks of the fused ops against their composites, as plain
 * functions: the tests in this folder assert on them, and the GPU device
 * program (bench/gpu_main.ts, a compiled binary without `deno test`) prints
 * them. Cases are seeded random shapes with the awkward sizes (sequence not
 * a multiple of the workgroup, odd widths, small head dims, grouped-query
 * heads, ignored cross-entropy targets).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { causalAttention, causalAttentionComposite } from "../ops/attention.ts";
import { crossEntropySum, crossEntropySumComposite } from "../ops/cross_entropy.ts";
import { rmsNorm, rmsNormComposite } from "../ops/rms_norm.ts";

/** Which implementation of an op to run. */
export type OpPath = "fused" | "composite";

/** One op on fixed inputs. */
export interface KernelCase {
  readonly label: string;
  readonly kind: "rmsNorm" | "crossEntropy" | "attention";
  /** Input shapes, in the op's argument order. */
  readonly shapes: readonly (readonly number[])[];
  /** Input values (float32, or int32 for targets), in the same order. */
  readonly values: readonly (Float32Array | Int32Array)[];
  /** Inputs the gradient is taken with respect to. */
  readonly differentiate: readonly number[];
  readonly eps: number;
}

/** An op's outputs on the active backend. */
export interface CaseOutputs {
  readonly forward: Float32Array;
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
  /** max|a − e| / max|e| of the forward values. */
  readonly forward: number;
  /** The same, the worst over the gradients. */
  readonly gradient: number;
  readonly leaked: number;
  readonly passed: boolean;
}

/** Tolerances of ../ops/_fused.ts: relative to the largest expected magnitude. */
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
 * Seeded cases for RMSNorm, cross-entropy and attention. Attention always
 * includes one sequence longer than 64 (two workgroups of query rows, several
 * shared tiles) when `maxSeq` allows it.
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
  return cases;
}

function opOf(c: KernelCase, path: OpPath): (xs: tf.Tensor[]) => tf.Tensor {
  const fused = path === "fused";
  switch (c.kind) {
    case "rmsNorm":
      return ([x, w]) =>
        (fused ? rmsNorm : rmsNormComposite)(x as tf.Tensor2D, w as tf.Tensor1D, { eps: c.eps });
    case "crossEntropy":
      return ([x, t]) =>
        (fused ? crossEntropySum : crossEntropySumComposite)(x as tf.Tensor2D, t as tf.Tensor1D);
    case "attention":
      return ([q, k, v]) =>
        (fused ? causalAttention : causalAttentionComposite)(
          q as tf.Tensor4D,
          k as tf.Tensor4D,
          v as tf.Tensor4D,
        );
  }
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
  const y = op(inputs);
  const forward = (await y.data()) as Float32Array;
  if (options.gradients === false) {
    tf.dispose([y, ...inputs]);
    return { forward, grads: [], leaked: 0 };
  }
  const weights = tf.tensor(uniform(rng(forward.length + 17), y.size, 1), y.shape);
  y.dispose();
  const gradsOf = (): tf.Tensor[] =>
    tf.grads((...xs: tf.Tensor[]) => {
      const all = inputs.map((x, i) => {
        const at = c.differentiate.indexOf(i);
        return at < 0 ? x : xs[at]!;
      });
      return tf.sum(tf.mul(op(all), weights));
    })(c.differentiate.map((i) => inputs[i]!));
  const warm = gradsOf(); // warm-up: kernels and caches allocate on first use
  for (const g of warm) await g.data();
  tf.dispose(warm);
  const before = tf.memory().numTensors + tf.engine().backend.numDataIds();
  const gs = gradsOf();
  const grads: Float32Array[] = [];
  for (const g of gs) grads.push((await g.data()) as Float32Array);
  tf.dispose(gs);
  const leaked = tf.memory().numTensors + tf.engine().backend.numDataIds() - before;
  tf.dispose([...inputs, weights]);
  return { forward, grads, leaked };
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

/** Compares two runs of `label` against the tolerances of ../ops/_fused.ts. */
export function compareOutputs(
  label: string,
  actual: CaseOutputs,
  expected: CaseOutputs,
): CaseComparison {
  const forward = relativeError(actual.forward, expected.forward);
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
