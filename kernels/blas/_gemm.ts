/**
 * Batched, broadcast matrix products on `cblas_sgemm`, working directly on the
 * Float32Arrays that the CPU backend stores. Private to `kernels/blas/`.
 *
 * @module
 */

import { broadcast_util } from "@tensorflow/tfjs-core";
import {
  CBLAS_NO_TRANS,
  CBLAS_ROW_MAJOR,
  CBLAS_TRANS,
  GEMV_SINGLE_THREAD_BELOW,
  type OpenBlas,
  SINGLE_THREAD_BELOW,
} from "./_openblas.ts";

/** Everything one BatchMatMul needs, computed from shapes only. */
export interface MatMulPlan {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  /** (...broadcast batch dims, m, n) */
  readonly outShape: number[];
  /** Number of output matrices. */
  readonly batch: number;
  /** Matrix of A (resp. B) read for each output matrix. */
  readonly aIndex: Int32Array;
  readonly bIndex: Int32Array;
  /** Number of matrices stored in A (resp. B). */
  readonly aCount: number;
  readonly bCount: number;
}

/** For each position of `outShape`, the flat position of `inShape` broadcast into it. */
function broadcastIndex(outShape: readonly number[], inShape: readonly number[]): Int32Array {
  const size = outShape.reduce((p, d) => p * d, 1);
  const index = new Int32Array(size);
  const lead = outShape.length - inShape.length;
  const inStrides = new Array<number>(outShape.length).fill(0);
  let stride = 1;
  for (let d = outShape.length - 1; d >= lead; d--) {
    const dim = inShape[d - lead] ?? 1;
    inStrides[d] = dim === 1 ? 0 : stride;
    stride *= dim;
  }
  for (let i = 0; i < size; i++) {
    let rest = i;
    let at = 0;
    for (let d = outShape.length - 1; d >= 0; d--) {
      const dim = outShape[d] ?? 1;
      at += (rest % dim) * (inStrides[d] ?? 0);
      rest = Math.floor(rest / dim);
    }
    index[i] = at;
  }
  return index;
}

/**
 * Shapes → plan. Batch dims broadcast numpy-style (tfjs's CPU kernel indexes batches modulo
 * their count, which agrees wherever the broadcast is a leading one).
 */
export function planMatMul(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): MatMulPlan {
  const ra = aShape.length;
  const rb = bShape.length;
  const a0 = aShape[ra - 2] ?? 1;
  const a1 = aShape[ra - 1] ?? 1;
  const b0 = bShape[rb - 2] ?? 1;
  const b1 = bShape[rb - 1] ?? 1;
  const [m, ka] = transposeA ? [a1, a0] : [a0, a1];
  const [kb, n] = transposeB ? [b1, b0] : [b0, b1];
  if (ka !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${ka}) and (${kb}) of Tensors with shapes ${aShape} and ` +
        `${bShape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const outBatch = broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
  return {
    m,
    n,
    k: ka,
    transposeA,
    transposeB,
    outShape: [...outBatch, m, n],
    batch: outBatch.reduce((p, d) => p * d, 1),
    aIndex: broadcastIndex(outBatch, aBatch),
    bIndex: broadcastIndex(outBatch, bBatch),
    aCount: aBatch.reduce((p, d) => p * d, 1),
    bCount: bBatch.reduce((p, d) => p * d, 1),
  };
}

/** A Float32Array that V8 never moves: `new ArrayBuffer` memory is always off the JS heap. */
export function offHeapFloat32(length: number): Float32Array {
  return new Float32Array(new ArrayBuffer(length * 4));
}

/**
 * V8 may keep typed arrays of ≤ 64 bytes inside the moving JS heap, so a pointer taken from
 * one could go stale; those few bytes are copied off-heap (kept alive through `keep`).
 */
function stablePointer(values: Float32Array, keep: Float32Array[]): Deno.PointerObject {
  let v = values;
  if (v.byteLength <= 64) {
    v = offHeapFloat32(values.length);
    v.set(values);
    keep.push(v);
  }
  const p = Deno.UnsafePointer.of(v);
  if (p === null) throw new Error("Cannot take the address of an empty Float32Array");
  return p;
}

/**
 * out = A·B + beta·out for every output matrix of `plan`, with transposes handled by
 * CBLAS flags (no copies). `out` must hold `batch·m·n` values.
 */
export function runSgemm(
  blas: OpenBlas,
  plan: MatMulPlan,
  operands: { a: Float32Array; b: Float32Array; out: Float32Array; beta: number },
): void {
  const { m, n, k, batch } = plan;
  const { a, b, out, beta } = operands;
  if (m === 0 || n === 0 || batch === 0) return;
  if (k === 0) {
    if (beta === 0) out.fill(0);
    return;
  }
  const keep: Float32Array[] = [];
  const pa = stablePointer(a, keep);
  const pb = stablePointer(b, keep);
  // `out` comes from offHeapFloat32, so its address is stable whatever its size.
  const pc = Deno.UnsafePointer.of(out);
  if (pc === null) throw new Error("Cannot take the address of the output");
  sgemmAt(blas, plan, { a: pa, b: pb, out: pc, beta });
  // Read after the calls so the copies stay reachable until OpenBLAS is done with them.
  keep.length = 0;
}

/**
 * {@link runSgemm} on raw addresses (e.g. into a wasm heap). Needs m, n, k, batch > 0; the
 * caller keeps the memory alive and unmoved for the duration of the call.
 */
export function sgemmAt(
  blas: OpenBlas,
  plan: MatMulPlan,
  at: { a: Deno.PointerObject; b: Deno.PointerObject; out: Deno.PointerObject; beta: number },
): void {
  const { m, n, k, batch, transposeA, transposeB, aIndex, bIndex, aCount, bCount } = plan;
  const { a: pa, b: pb, out: pc, beta } = at;
  const ta = transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const tb = transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const lda = Math.max(1, transposeA ? m : k);
  const ldb = Math.max(1, transposeB ? k : n);

  // (batch, m, k)·(k, n) with one shared B is one (batch·m, k)·(k, n) product: one call
  // instead of `batch`, and bigger blocks for OpenBLAS's threads.
  if (batch > 1 && !transposeA && bCount === 1 && aCount === batch) {
    blas.prepare(batch * m * n * k);
    blas.sgemm(CBLAS_ROW_MAJOR, ta, tb, batch * m, n, k, 1, pa, lda, pb, ldb, beta, pc, n);
    return;
  }
  const aStride = m * k * 4;
  const bStride = k * n * 4;
  const cStride = m * n * 4;
  blas.prepare(m * n * k, m === 1 || n === 1 ? GEMV_SINGLE_THREAD_BELOW : SINGLE_THREAD_BELOW);
  for (let i = 0; i < batch; i++) {
    const ai = aIndex[i] ?? 0;
    const bi = bIndex[i] ?? 0;
    const one = {
      a: ai === 0 ? pa : Deno.UnsafePointer.offset(pa, ai * aStride),
      b: bi === 0 ? pb : Deno.UnsafePointer.offset(pb, bi * bStride),
      out: i === 0 ? pc : Deno.UnsafePointer.offset(pc, i * cStride),
      beta,
    };
    if (vectorProduct(blas, plan, one)) continue;
    blas.sgemm(CBLAS_ROW_MAJOR, ta, tb, m, n, k, 1, one.a, lda, one.b, ldb, beta, one.out, n);
  }
}

/**
 * One product with a single row (m = 1: a token's activations times a weight matrix) or a
 * single column (n = 1) as `cblas_sgemv`; false when neither holds or the library has no
 * sgemv. The vector side is contiguous in every transpose case (its other extent is 1).
 */
function vectorProduct(
  blas: OpenBlas,
  plan: MatMulPlan,
  at: {
    a: Deno.PointerValue;
    b: Deno.PointerValue;
    out: Deno.PointerValue;
    beta: number;
  },
): boolean {
  const { m, n, k, transposeA, transposeB } = plan;
  if (blas.sgemv === null) return false;
  if (m === 1) {
    // outᵀ = op(B)ᵀ·a: B is stored [k, n] (plain) or [n, k] (transposed).
    const [rows, cols, trans] = transposeB ? [n, k, CBLAS_NO_TRANS] : [k, n, CBLAS_TRANS];
    blas.sgemv(CBLAS_ROW_MAJOR, trans, rows, cols, 1, at.b, cols, at.a, 1, at.beta, at.out, 1);
    return true;
  }
  if (n === 1) {
    // out = op(A)·b: A is stored [m, k] (plain) or [k, m] (transposed).
    const [rows, cols, trans] = transposeA ? [k, m, CBLAS_TRANS] : [m, k, CBLAS_NO_TRANS];
    blas.sgemv(CBLAS_ROW_MAJOR, trans, rows, cols, 1, at.a, cols, at.b, 1, at.beta, at.out, 1);
    return true;
  }
  return false;
}
