/**
 * `cblas_sgemm` on row-major matrices addressed by byte offsets into a wasm
 * heap, with leading dimensions, so a kernel can multiply strided views (one
 * attention head of a [batch, seq, heads, d] tensor) in place.
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";
import {
  CBLAS_NO_TRANS,
  CBLAS_ROW_MAJOR,
  CBLAS_TRANS,
  openBlasOnce,
  SGEMM_SYMBOLS,
} from "./_openblas.ts";
import type { BlasInfo, BlasOptions } from "./blas_backend.ts";

/** C = alpha·op(A)·op(B) + beta·C; a, b, c are byte offsets, lda/ldb/ldc in elements. */
export interface SgemmArgs {
  readonly transA: boolean;
  readonly transB: boolean;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly alpha: number;
  readonly a: number;
  readonly lda: number;
  readonly b: number;
  readonly ldb: number;
  readonly beta: number;
  readonly c: number;
  readonly ldc: number;
}

/** One sgemm on `heap` (read its view after any allocation: wasm memory moves as it grows). */
export interface HeapSgemm {
  (heap: Uint8Array, args: SgemmArgs): void;
  /** The library, as `dlopen` accepted it: another thread attaches to it by this name. */
  readonly library: string;
  /**
   * Sets OpenBLAS's threads for products of this many multiply-adds, as each call does. The
   * setting is the process's: call it before other threads multiply, which must not change it.
   */
  readonly threadsFor: (multiplyAdds: number) => void;
}

type RawSgemm = Deno.DynamicLibrary<typeof SGEMM_SYMBOLS>["symbols"]["cblas_sgemm"];

/** The heap-offset sgemm over a raw `cblas_sgemm`, taking the heap's address once per buffer. */
function onHeap(raw: RawSgemm, before: (multiplyAdds: number) => void) {
  let buffer: ArrayBufferLike | undefined;
  let base: Deno.PointerObject | null = null;
  return (heap: Uint8Array, g: SgemmArgs): void => {
    if (g.m === 0 || g.n === 0) return;
    if (heap.buffer !== buffer) {
      base = Deno.UnsafePointer.of(heap);
      buffer = heap.buffer;
    }
    if (base === null) throw new Error("Cannot take the address of the wasm heap");
    const at = (offset: number): Deno.PointerValue => Deno.UnsafePointer.offset(base!, offset);
    before(g.m * g.n * g.k);
    raw(
      CBLAS_ROW_MAJOR,
      g.transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
      g.transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
      g.m,
      g.n,
      g.k,
      g.alpha,
      at(g.a),
      g.lda,
      at(g.b),
      g.ldb,
      g.beta,
      at(g.c),
      g.ldc,
    );
  };
}

/**
 * The sgemm of a library that {@link openHeapSgemm} has opened and set up in this process, for
 * another thread (a kernel pool worker): it opens the same library again for its own symbol
 * and leaves the kernel family and the thread count as the first thread set them.
 */
export function attachHeapSgemm(library: string): HeapSgemm {
  const lib = Deno.dlopen(library, SGEMM_SYMBOLS);
  return Object.assign(onHeap(lib.symbols.cblas_sgemm, () => {}), {
    library,
    threadsFor: () => {},
  });
}

/**
 * Opens OpenBLAS (shared with the other OpenBLAS paths) and returns an sgemm
 * on heap offsets. Left is the one-line notice of a missing library.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { openHeapSgemm } from "./mod.ts";
 * const r = openHeapSgemm();
 * if (E.isRight(r)) {
 *   const heap = new Uint8Array(new ArrayBuffer(48));
 *   new Float32Array(heap.buffer).set([1, 2, 3, 4]); // A = B = [[1, 2], [3, 4]] at offset 0
 *   r.right.sgemm(heap, {
 *     transA: false, transB: false, m: 2, n: 2, k: 2, alpha: 1,
 *     a: 0, lda: 2, b: 0, ldb: 2, beta: 0, c: 16, ldc: 2,
 *   }); // C = [[7, 10], [15, 22]] at offset 16
 * }
 * ```
 */
export function openHeapSgemm(
  options: BlasOptions = {},
): E.Either<string, { readonly sgemm: HeapSgemm; readonly info: BlasInfo }> {
  const opened = openBlasOnce({
    ...(options.library !== undefined ? { library: options.library } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  });
  if (E.isLeft(opened)) return opened;
  const blas = opened.right;
  const threadsFor = (multiplyAdds: number): void => blas.prepare(multiplyAdds);
  const sgemm: HeapSgemm = Object.assign(onHeap(blas.sgemm, threadsFor), {
    library: blas.library,
    threadsFor,
  });
  return E.right({
    sgemm,
    info: {
      library: blas.library,
      threads: blas.threads,
      core: blas.core,
      config: blas.config,
      ...(blas.warning !== undefined ? { warning: blas.warning } : {}),
      blasKernels: [],
    },
  });
}
