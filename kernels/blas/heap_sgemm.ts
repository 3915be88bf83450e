/**
 * sgemm on row-major matrices addressed by byte offsets into a wasm heap, with leading
 * dimensions, so a kernel can multiply strided views (one attention head of a
 * [batch, seq, heads, d] tensor) in place: oneDNN's `dnnl_sgemm` where the library is installed,
 * else OpenBLAS's `cblas_sgemm`.
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";
import {
  CBLAS_NO_TRANS,
  CBLAS_ROW_MAJOR,
  CBLAS_TRANS,
  envVar,
  openBlasOnce,
  SGEMM_SYMBOLS,
  SINGLE_THREAD_BELOW,
} from "./_openblas.ts";
import type { BlasInfo, BlasOptions } from "./blas_backend.ts";
import { type OneDnn, openOneDnn } from "./_onednn.ts";

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
  /**
   * The library, as `dlopen` accepted it (oneDNN's with the prefix "onednn:"): another thread
   * attaches to it by this name.
   */
  readonly library: string;
  /** What multiplies, for a backend's description: "oneDNN 2.6.3 (libdnnl.so.2)". */
  readonly label: string;
  /**
   * Sets the threads for products of this many multiply-adds, as each call does: OpenBLAS's
   * setting is the process's (call it before other threads multiply, which must not change
   * it), oneDNN's the calling thread's.
   */
  readonly threadsFor: (multiplyAdds: number) => void;
}

/** Marks a {@link HeapSgemm.library} that is oneDNN, not a CBLAS. */
const ONEDNN = "onednn:";

/** A product on raw addresses. */
type AtSgemm = (
  g: SgemmArgs,
  a: Deno.PointerValue,
  b: Deno.PointerValue,
  c: Deno.PointerValue,
) => void;

/** The heap-offset sgemm over `raw`, taking the heap's address once per buffer. */
function onHeap(raw: AtSgemm, before: (multiplyAdds: number) => void) {
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
    raw(g, at(g.a), at(g.b), at(g.c));
  };
}

type RawCblas = Deno.DynamicLibrary<typeof SGEMM_SYMBOLS>["symbols"]["cblas_sgemm"];

function cblas(raw: RawCblas): AtSgemm {
  return (g, a, b, c) =>
    raw(
      CBLAS_ROW_MAJOR,
      g.transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
      g.transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
      g.m,
      g.n,
      g.k,
      g.alpha,
      a,
      g.lda,
      b,
      g.ldb,
      g.beta,
      c,
      g.ldc,
    );
}

function dnnl(lib: OneDnn): AtSgemm {
  return (g, a, b, c) =>
    lib.sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, c, g.ldc);
}

/**
 * The sgemm of a library that {@link openHeapSgemm} has opened and set up in this process, for
 * another thread (a kernel pool worker): it opens the same library again for its own symbol.
 * A CBLAS keeps the kernel family and the thread count the first thread set; oneDNN runs this
 * thread's products on this thread alone.
 */
export function attachHeapSgemm(library: string): HeapSgemm {
  if (library.startsWith(ONEDNN)) {
    const opened = openOneDnn(library.slice(ONEDNN.length));
    if (E.isLeft(opened)) throw new Error(opened.left);
    opened.right.setThreads(1);
    return Object.assign(onHeap(dnnl(opened.right), () => {}), {
      library,
      label: oneDnnName(opened.right),
      threadsFor: () => {},
    });
  }
  const lib = Deno.dlopen(library, SGEMM_SYMBOLS);
  return Object.assign(onHeap(cblas(lib.symbols.cblas_sgemm), () => {}), {
    library,
    label: library,
    threadsFor: () => {},
  });
}

function oneDnnName(lib: OneDnn): string {
  return `${lib.version} (${lib.library})`;
}

/**
 * Which library multiplies on the heap: `STEP_GEMM` ("onednn": oneDNN or an error; "openblas"),
 * else oneDNN where it loads, unless the user chose the library (`STEP_BLAS_LIB` or
 * {@link BlasOptions.library}): that CBLAS then.
 */
function gemmChoice(options: BlasOptions): "auto" | "onednn" | "openblas" {
  const gemm = envVar("STEP_GEMM");
  if (gemm !== undefined && gemm !== "" && gemm !== "openblas" && gemm !== "onednn") {
    throw new Error(`STEP_GEMM must be "onednn" or "openblas", got "${gemm}"`);
  }
  if (gemm === "onednn" || gemm === "openblas") return gemm;
  return options.library !== undefined || envVar("STEP_BLAS_LIB") !== undefined
    ? "openblas"
    : "auto";
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
  const choice = gemmChoice(options);
  const oneDnn = choice === "openblas" ? E.left("not wanted") : openOneDnn();
  if (choice === "onednn" && E.isLeft(oneDnn)) {
    throw new Error(`STEP_GEMM=onednn, but ${oneDnn.left}`);
  }
  let sgemm: HeapSgemm;
  if (E.isRight(oneDnn)) {
    const lib = oneDnn.right;
    const threadsFor = (multiplyAdds: number): void =>
      lib.setThreads(multiplyAdds < SINGLE_THREAD_BELOW ? 1 : blas.threads);
    sgemm = Object.assign(onHeap(dnnl(lib), threadsFor), {
      library: ONEDNN + lib.library,
      label: oneDnnName(lib),
      threadsFor,
    });
  } else {
    const threadsFor = (multiplyAdds: number): void => blas.prepare(multiplyAdds);
    sgemm = Object.assign(onHeap(cblas(blas.sgemm), threadsFor), {
      library: blas.library,
      label: `${blas.library} (${blas.core})`,
      threadsFor,
    });
  }
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
