/**
 * The fused kernels' work, cut into parts that threads can run side by side on
 * one shared wasm memory: each job takes its arguments as numbers (byte
 * offsets, counts, scalars) and does part `part` of `parts`. The main thread
 * runs part 0 and the kernel pool's workers (./_pool.ts) the others, each on
 * its own instance of ./_simd.ts. Private to `kernels/fused/`.
 *
 * Parts split elementwise work on multiples of 4 floats (whole SIMD lanes) and
 * row work on whole rows, so each element is computed by exactly the code that
 * computes it on one thread: results are the same for any number of parts,
 * except RMSNorm's weight gradient, a sum over rows that adds the parts'
 * partial sums last.
 *
 * @module
 */
import type { HeapSgemm } from "../blas/mod.ts";
import {
  backwardScratch,
  backwardUnits,
  dimsAt,
  forwardScratch,
  forwardUnits,
  unitsOf,
} from "./_attention.ts";
import type { SimdKernels } from "./_simd.ts";

/** What a part runs on. */
export interface PartContext {
  readonly simd: SimdKernels;
  readonly memory: WebAssembly.Memory;
  /**
   * This thread's sgemm on the memory (oneDNN's or a CBLAS's, as attached), which leaves the
   * caller's thread setting alone (the kernel that starts a job makes it); throws where no
   * library was attached.
   */
  readonly sgemm: () => HeapSgemm;
}

/** Part `part` of `parts` of a job, on the arguments the job was given. */
export type Part = (ctx: PartContext, args: Float64Array, part: number, parts: number) => void;

/** [start, end) of `part` among `parts` near-equal pieces of n, cut on multiples of `align`. */
export function partRange(n: number, part: number, parts: number, align = 1): [number, number] {
  const per = Math.ceil(n / parts / align) * align;
  const start = Math.min(n, part * per);
  return [start, Math.min(n, start + per)];
}

function arg(args: Float64Array, i: number): number {
  return args[i]!;
}

/** Arguments: g, u, y (byte offsets), n. */
function swigluForward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const [s, e] = partRange(arg(a, 3), part, parts, 4);
  if (e > s) c.simd.swigluForward(arg(a, 0) + 4 * s, arg(a, 1) + 4 * s, arg(a, 2) + 4 * s, e - s);
}

/** Arguments: dy, g, u, dg, du (byte offsets), n. */
function swigluBackward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const [s, e] = partRange(arg(a, 5), part, parts, 4);
  if (e <= s) return;
  const o = 4 * s;
  c.simd.swigluBackward(
    arg(a, 0) + o,
    arg(a, 1) + o,
    arg(a, 2) + o,
    arg(a, 3) + o,
    arg(a, 4) + o,
    e - s,
  );
}

/** Arguments: p, g, m, v, outP, outM, outV (byte offsets), n, then the 9 scalars of `adamw`. */
function adamw(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const [s, e] = partRange(arg(a, 7), part, parts, 4);
  if (e <= s) return;
  const o = 4 * s;
  c.simd.adamw(
    arg(a, 0) + o,
    arg(a, 1) + o,
    arg(a, 2) + o,
    arg(a, 3) + o,
    arg(a, 4) + o,
    arg(a, 5) + o,
    arg(a, 6) + o,
    e - s,
    arg(a, 8),
    arg(a, 9),
    arg(a, 10),
    arg(a, 11),
    arg(a, 12),
    arg(a, 13),
    arg(a, 14),
    arg(a, 15),
    arg(a, 16),
  );
}

/** Arguments: x, w, y, rstd (byte offsets), rows, h, eps. */
function rmsNormForward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const h = arg(a, 5);
  const [s, e] = partRange(arg(a, 4), part, parts);
  if (e <= s) return;
  const row = 4 * h * s;
  c.simd.rmsNormForward(
    arg(a, 0) + row,
    arg(a, 1),
    arg(a, 2) + row,
    arg(a, 3) + 4 * s,
    e - s,
    h,
    arg(a, 6),
  );
}

/**
 * Arguments: dy, x, w, rstd, dx, dw (byte offsets), rows, h, then the byte offset of
 * (parts − 1)·h floats where parts after the first write their partial weight gradients.
 * Every part writes its partial sum, zeros when it has no rows.
 */
function rmsNormBackward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const h = arg(a, 7);
  const [s, e] = partRange(arg(a, 6), part, parts);
  const dw = part === 0 ? arg(a, 5) : arg(a, 8) + 4 * h * (part - 1);
  if (e <= s) {
    c.simd.fill(dw, h, 0);
    return;
  }
  const row = 4 * h * s;
  c.simd.rmsNormBackward(
    arg(a, 0) + row,
    arg(a, 1) + row,
    arg(a, 2),
    arg(a, 3) + 4 * s,
    arg(a, 4) + row,
    dw,
    e - s,
    h,
  );
}

/**
 * Arguments: x, cos, sin, y (byte offsets), bt, t, heads, half, sign. Parts take whole
 * sequences, so each row's position (row mod t) stays where the kernel finds it.
 */
function rope(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const t = arg(a, 5);
  const heads = arg(a, 6);
  const half = arg(a, 7);
  const [s, e] = partRange(arg(a, 4) / t, part, parts);
  if (e <= s) return;
  const at = 4 * heads * 2 * half * t * s;
  c.simd.rope(
    arg(a, 0) + at,
    arg(a, 1),
    arg(a, 2),
    arg(a, 3) + at,
    (e - s) * t,
    t,
    heads,
    half,
    arg(a, 8),
  );
}

/** Arguments: logits, targets, rowLoss, lse (byte offsets), rows, vocab. */
function crossEntropyForward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const vocab = arg(a, 5);
  const [s, e] = partRange(arg(a, 4), part, parts);
  const f = new Float32Array(c.memory.buffer);
  const targets = new Int32Array(c.memory.buffer);
  const x0 = arg(a, 0);
  const t0 = arg(a, 1) >>> 2;
  const l0 = arg(a, 2) >>> 2;
  const s0 = arg(a, 3) >>> 2;
  const rowBytes = 4 * vocab;
  for (let r = s; r < e; r++) {
    const target = targets[t0 + r]!;
    if (target < 0) {
      f[l0 + r] = 0;
      f[s0 + r] = 0;
      continue;
    }
    const row = x0 + r * rowBytes;
    const max = c.simd.max(row, vocab);
    const logSum = max + Math.log(c.simd.sumExp(row, vocab, max));
    f[s0 + r] = logSum;
    f[l0 + r] = logSum - f[(row >>> 2) + target]!;
  }
}

/** Arguments: dy, logits, targets, lse, dLogits (byte offsets), rows, vocab. */
function crossEntropyBackward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const vocab = arg(a, 6);
  const [s, e] = partRange(arg(a, 5), part, parts);
  const f = new Float32Array(c.memory.buffer);
  const targets = new Int32Array(c.memory.buffer);
  const g0 = arg(a, 0) >>> 2;
  const x0 = arg(a, 1);
  const t0 = arg(a, 2) >>> 2;
  const s0 = arg(a, 3) >>> 2;
  const d0 = arg(a, 4);
  const rowBytes = 4 * vocab;
  for (let r = s; r < e; r++) {
    const target = targets[t0 + r]!;
    const out = d0 + r * rowBytes;
    if (target < 0) {
      c.simd.fill(out, vocab, 0);
      continue;
    }
    const dy = f[g0 + r]!;
    c.simd.expScaled(x0 + r * rowBytes, out, vocab, f[s0 + r]!, dy);
    f[(out >>> 2) + target]! -= dy;
  }
}

/**
 * Arguments: those of `forwardUnits` in ./_attention.ts, the last the byte offset of
 * parts × `forwardScratch` floats. Parts take whole (batch, kv head) units.
 */
function attentionForward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const x = dimsAt(a, 5);
  const [u0, u1] = partRange(unitsOf(x), part, parts);
  if (u1 <= u0) return;
  const scratch = arg(a, 11) + 4 * part * forwardScratch(x);
  forwardUnits({ ...c, sgemm: c.sgemm() }, a, u0, u1, scratch);
}

/** Arguments: those of `backwardUnits`, the last the byte offset of parts × `backwardScratch`. */
function attentionBackward(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const x = dimsAt(a, 9);
  const [u0, u1] = partRange(unitsOf(x), part, parts);
  if (u1 <= u0) return;
  const scratch = arg(a, 15) + 4 * part * backwardScratch(x);
  backwardUnits({ ...c, sgemm: c.sgemm() }, a, u0, u1, scratch);
}

/** Floats per float32 partial sum of squares: long float32 sums lose digits; chunks add in float64. */
const SQUARES_CHUNK = 4096;

/**
 * Arguments: x (byte offset), n, then the byte offset of one float per part: part p writes
 * Σ x² over its elements there.
 */
function sumSquares(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const [s, e] = partRange(arg(a, 1), part, parts, 4);
  let sum = 0;
  for (let i = s; i < e; i += SQUARES_CHUNK) {
    sum += c.simd.sumSquares(arg(a, 0) + 4 * i, Math.min(SQUARES_CHUNK, e - i));
  }
  new Float32Array(c.memory.buffer)[(arg(a, 2) >>> 2) + part] = sum;
}

/**
 * Arguments: transA, transB (0 or 1), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc (byte offsets
 * for a, b, c): C = alpha·op(A)·op(B) + beta·C, cut along the longer side of C (rows, or columns
 * when n > m: a weight gradient's few rows are slow to pack) into whole blocks of
 * {@link GEMM_BLOCK}; each element is computed by one single-threaded sgemm, whichever part.
 */
function sgemm(c: PartContext, a: Float64Array, part: number, parts: number): void {
  const [transA, transB] = [arg(a, 0) === 1, arg(a, 1) === 1];
  const [m, n, lda, ldb, ldc] = [arg(a, 2), arg(a, 3), arg(a, 7), arg(a, 9), arg(a, 12)];
  const byColumns = n > m;
  const [s, e] = partRange(byColumns ? n : m, part, parts, GEMM_BLOCK);
  if (e <= s) return;
  c.sgemm()(new Uint8Array(c.memory.buffer), {
    transA,
    transB,
    m: byColumns ? m : e - s,
    n: byColumns ? e - s : n,
    k: arg(a, 4),
    alpha: arg(a, 5),
    // Rows of op(A) are rows of A, or its columns when transposed; columns of op(B) likewise.
    a: arg(a, 6) + (byColumns ? 0 : 4 * (transA ? s : s * lda)),
    lda,
    b: arg(a, 8) + (byColumns ? 4 * (transB ? s * ldb : s) : 0),
    ldb,
    beta: arg(a, 10),
    c: arg(a, 11) + 4 * (byColumns ? s : s * ldc),
    ldc,
  });
}

/** Rows or columns of C per unit of a cut product: whole register blocks of sgemm kernels. */
export const GEMM_BLOCK = 16;

/** Every job, by name; a job's number is its place in {@link JOB_NAMES}. */
export const PARTS = {
  swigluForward,
  swigluBackward,
  adamw,
  rmsNormForward,
  rmsNormBackward,
  rope,
  crossEntropyForward,
  crossEntropyBackward,
  attentionForward,
  attentionBackward,
  sumSquares,
  sgemm,
} as const satisfies Record<string, Part>;

/** A job's name. */
export type JobName = keyof typeof PARTS;

/** The jobs in a fixed order, shared by the main thread and the workers. */
export const JOB_NAMES: readonly JobName[] = Object.keys(PARTS) as JobName[];

/** Most arguments a job takes. */
export const MAX_ARGS = 24;
