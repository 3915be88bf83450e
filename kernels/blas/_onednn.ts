/**
 * oneDNN's `dnnl_sgemm` through Deno FFI, for the single-threaded products that the kernel pool
 * cuts a matrix product into. Private to `kernels/blas/`.
 *
 * On one thread it is 10–30 % faster than OpenBLAS 0.3.21 at the shapes a small model's training
 * step multiplies (512×128×128: 0.124 against 0.151 ms; bench/NOTES.md §11), where a call's
 * fixed cost (packing, buffers) is a large share of it.
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";

const SYMBOLS = {
  // dnnl_status_t dnnl_sgemm(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
  // row-major, dimensions int64.
  dnnl_sgemm: {
    parameters: [
      "u8",
      "u8",
      "i64",
      "i64",
      "i64",
      "f32",
      "pointer",
      "i64",
      "pointer",
      "i64",
      "f32",
      "pointer",
      "i64",
    ],
    result: "i32",
  },
  // const dnnl_version_t *dnnl_version(void): {int major, minor, patch; const char *hash;
  // unsigned cpu_runtime; unsigned gpu_runtime}
  dnnl_version: { parameters: [], result: "pointer" },
  // From the OpenMP runtime oneDNN links (found through its dependencies): the threads of the
  // calling thread's next parallel region, which is what oneDNN's sgemm runs on.
  omp_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
} as const;

/** `DNNL_RUNTIME_SEQ` and `DNNL_RUNTIME_OMP` (dnnl_types.h): the runtimes whose threads we set. */
const RUNTIME_SEQ = 1;
const RUNTIME_OMP = 2;

/** Where Debian/Ubuntu (libdnnl2, libdnnl3) and source builds put the library. */
export const ONEDNN_CANDIDATES: readonly string[] = ["libdnnl.so.3", "libdnnl.so.2"];

const N = "N".charCodeAt(0);
const T = "T".charCodeAt(0);

/** An opened oneDNN: its sgemm and the thread setting of the calling thread. */
export interface OneDnn {
  /** The name `dlopen` accepted. */
  readonly library: string;
  /** "oneDNN 2.6.3". */
  readonly version: string;
  /** C = alpha·op(A)·op(B) + beta·C, row-major; throws on a status other than success. */
  readonly sgemm: (
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Deno.PointerValue,
    lda: number,
    b: Deno.PointerValue,
    ldb: number,
    beta: number,
    c: Deno.PointerValue,
    ldc: number,
  ) => void;
  /** Sets the threads of the calling thread's next products (per thread, not per process). */
  readonly setThreads: (n: number) => void;
}

const opened = new Map<string, E.Either<string, OneDnn>>();

/**
 * Opens oneDNN by `name`, or the first of {@link ONEDNN_CANDIDATES} that loads, once per thread
 * (module state is per isolate; the answer, either way, is kept). Left says why not: no library,
 * or a threading runtime whose threads cannot be set per call (TBB, a threadpool), where the
 * pool's one-thread-per-part plan would not hold.
 */
export function openOneDnn(name?: string): E.Either<string, OneDnn> {
  const key = name ?? "";
  let got = opened.get(key);
  if (got === undefined) {
    got = open(name);
    opened.set(key, got);
  }
  return got;
}

function open(name: string | undefined): E.Either<string, OneDnn> {
  let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
  let library = "";
  let lastError = "libdnnl not found";
  for (const candidate of name !== undefined ? [name] : ONEDNN_CANDIDATES) {
    try {
      lib = Deno.dlopen(candidate, SYMBOLS);
      library = candidate;
      break;
    } catch (e: unknown) {
      lastError = e instanceof Error ? e.message : String(e);
    }
  }
  if (lib === undefined) return E.left(`Cannot load oneDNN: ${lastError}`);
  const v = new Deno.UnsafePointerView(lib.symbols.dnnl_version()!);
  const version = `oneDNN ${v.getInt32(0)}.${v.getInt32(4)}.${v.getInt32(8)}`;
  const runtime = v.getUint32(24);
  const setNum = lib.symbols.omp_set_num_threads;
  if (runtime !== RUNTIME_SEQ && (runtime !== RUNTIME_OMP || setNum === null)) {
    lib.close();
    return E.left(
      `${version} (${library}) uses a CPU runtime (${runtime}) without per-call threads`,
    );
  }
  const raw = lib.symbols.dnnl_sgemm;
  return E.right({
    library,
    version,
    sgemm: (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
      const status = raw(
        transA ? T : N,
        transB ? T : N,
        BigInt(m),
        BigInt(n),
        BigInt(k),
        alpha,
        a,
        BigInt(lda),
        b,
        BigInt(ldb),
        beta,
        c,
        BigInt(ldc),
      );
      if (status !== 0) {
        throw new Error(`dnnl_sgemm failed (status ${status}) on ${m}×${n}×${k}`);
      }
    },
    setThreads: (n) => setNum?.(n),
  });
}
