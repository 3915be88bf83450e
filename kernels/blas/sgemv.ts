/**
 * `cblas_sgemv` on raw addresses, for code that runs a model one row at a time
 * (kernels/row_decoder.ts): y = alpha·op(A)·x + beta·y with A row-major
 * [rows, cols] at `a` (leading dimension `lda`), op(A) = Aᵀ when `trans`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  CBLAS_NO_TRANS,
  CBLAS_ROW_MAJOR,
  CBLAS_TRANS,
  GEMV_SINGLE_THREAD_BELOW,
  openBlasOnce,
} from "./_openblas.ts";

/** One matrix-vector product; x and y are contiguous. */
export interface SgemvArgs {
  readonly trans: boolean;
  readonly rows: number;
  readonly cols: number;
  readonly a: Deno.PointerValue;
  readonly lda: number;
  readonly x: Deno.PointerValue;
  readonly y: Deno.PointerValue;
  readonly alpha: number;
  readonly beta: number;
  /**
   * Products of fewer elements run on one thread (default {@link GEMV_SINGLE_THREAD_BELOW}, which
   * was measured for `trans`; a no-trans product reads rows and gains from two threads sooner).
   */
  readonly singleThreadBelow?: number;
}

/** Runs one {@link SgemvArgs}. */
export type Sgemv = (g: SgemvArgs) => void;

/**
 * OpenBLAS's sgemv (the library the other OpenBLAS paths opened). Left says why not: no
 * OpenBLAS, or a CBLAS without sgemv (`STEP_BLAS_LIB`).
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { openSgemv } from "./sgemv.ts";
 * const r = openSgemv();
 * if (E.isRight(r)) {
 *   const a = new Float32Array([1, 2, 3, 4]), x = new Float32Array([1, 1]), y = new Float32Array(2);
 *   const p = (v: Float32Array) => Deno.UnsafePointer.of(v);
 *   r.right({ trans: false, rows: 2, cols: 2, a: p(a), lda: 2, x: p(x), y: p(y), alpha: 1, beta: 0 });
 *   console.assert(y[0] === 3 && y[1] === 7);
 * }
 * ```
 */
export function openSgemv(): E.Either<string, Sgemv> {
  const opened = openBlasOnce();
  if (E.isLeft(opened)) return opened;
  const gemv = opened.right.sgemv;
  if (gemv === null) return E.left(`${opened.right.library} has no cblas_sgemv`);
  const { prepare } = opened.right;
  return E.right((g) => {
    if (g.rows === 0 || g.cols === 0) return;
    prepare(g.rows * g.cols, g.singleThreadBelow ?? GEMV_SINGLE_THREAD_BELOW);
    gemv(
      CBLAS_ROW_MAJOR,
      g.trans ? CBLAS_TRANS : CBLAS_NO_TRANS,
      g.rows,
      g.cols,
      g.alpha,
      g.a,
      g.lda,
      g.x,
      1,
      g.beta,
      g.y,
      1,
    );
  });
}
