/**
 * OpenBLAS's `cblas_somatcopy` on raw addresses: a row-major matrix written transposed
 * somewhere else, for the row decoder's packed weights (kernels/row_decoder.ts).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { CBLAS_ROW_MAJOR, CBLAS_TRANS, openBlasOnce } from "./_openblas.ts";

/** Writes `from`, row-major [rows, cols], as [cols, rows] at `to` (rows `ldTo` floats apart). */
export type TransposeCopy = (
  from: Deno.PointerValue,
  rows: number,
  cols: number,
  to: Deno.PointerValue,
  ldTo: number,
) => void;

/**
 * The library's transposed copy. Left says why not: no OpenBLAS, or a CBLAS without the
 * OpenBLAS extension (`STEP_BLAS_LIB`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { openTransposeCopy } from "./transpose_copy.ts";
 * const r = openTransposeCopy();
 * if (E.isRight(r)) {
 *   const a = new Float32Array([1, 2, 3, 4, 5, 6]), b = new Float32Array(6);
 *   r.right(Deno.UnsafePointer.of(a), 2, 3, Deno.UnsafePointer.of(b), 2);
 *   assert.equal(b.join(), "1,4,2,5,3,6");
 * }
 * ```
 */
export function openTransposeCopy(): E.Either<string, TransposeCopy> {
  const opened = openBlasOnce();
  if (E.isLeft(opened)) return opened;
  const copy = opened.right.somatcopy;
  if (copy === null) return E.left(`${opened.right.library} has no cblas_somatcopy`);
  return E.right((from, rows, cols, to, ldTo) => {
    if (rows === 0 || cols === 0) return;
    copy(CBLAS_ROW_MAJOR, CBLAS_TRANS, rows, cols, 1, from, cols, to, ldTo);
  });
}
