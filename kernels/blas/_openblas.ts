/**
 * Finding and opening OpenBLAS through Deno FFI. Private to `kernels/blas/`.
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";

/** CBLAS enum values (cblas.h). */
export const CBLAS_ROW_MAJOR = 101;
export const CBLAS_NO_TRANS = 111;
export const CBLAS_TRANS = 112;

const SYMBOLS = {
  // void cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "pointer",
      "i32",
      "pointer",
      "i32",
      "f32",
      "pointer",
      "i32",
    ],
    result: "void",
  },
  // void cblas_sgemv(order, trans, M, N, alpha, A, lda, X, incX, beta, Y, incY)
  cblas_sgemv: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "pointer",
      "i32",
      "pointer",
      "i32",
      "f32",
      "pointer",
      "i32",
    ],
    result: "void",
    optional: true,
  },
  // void cblas_somatcopy(order, trans, rows, cols, alpha, A, lda, B, ldb): B = alpha·op(A)
  cblas_somatcopy: {
    parameters: ["i32", "i32", "i32", "i32", "f32", "pointer", "i32", "pointer", "i32"],
    result: "void",
    optional: true,
  },
  // The openblas_* helpers are absent when STEP_BLAS_LIB points at another CBLAS.
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_corename: { parameters: [], result: "pointer", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
} as const;

/** `cblas_sgemm` alone: what a second thread opens of a library already set up (heap_sgemm.ts). */
export const SGEMM_SYMBOLS = { cblas_sgemm: SYMBOLS.cblas_sgemm } as const;

/** The opened library and its `cblas_sgemm`. */
export interface OpenBlas {
  /** The name or path that `dlopen` accepted. */
  readonly library: string;
  readonly sgemm: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]["cblas_sgemm"];
  /**
   * `cblas_sgemv`, or null where the library lacks it. A product with one row or one column
   * goes here: sgemm packs the whole matrix into panels first, which costs more than the
   * product itself when each weight is read once (decoding one token).
   */
  readonly sgemv: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]["cblas_sgemv"] | null;
  /** `cblas_somatcopy` (an OpenBLAS extension: a scaled copy, transposed or not), or null. */
  readonly somatcopy: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]["cblas_somatcopy"] | null;
  /**
   * Sets the threads for the next products: one below `singleBelow` multiply-adds (a sgemm's
   * m·n·k, a sgemv's rows·cols; default {@link SINGLE_THREAD_BELOW}), `threads` from there on. Every call site runs it
   * before its product; the thread count changes only when the size class does.
   */
  readonly prepare: (multiplyAdds: number, singleBelow?: number) => void;
  /** Threads OpenBLAS uses per call after setup. */
  readonly threads: number;
  /** The kernel family OpenBLAS picked (`openblas_get_corename`), or "unknown". */
  readonly core: string;
  /** `openblas_get_config()`, or "unknown". */
  readonly config: string;
  /** Set when OpenBLAS runs kernels far below the CPU's and permissions kept us from fixing it. */
  readonly warning?: string;
}

/** Options for {@link openBlas}. */
export interface OpenBlasOptions {
  /** Library name or path; overrides `STEP_BLAS_LIB` and the search list. */
  readonly library?: string;
  /** Threads per sgemm call; default `navigator.hardwareConcurrency`. */
  readonly threads?: number;
}

/** Where Debian/Ubuntu, Fedora, a source build and Homebrew put the library. */
const CANDIDATES: readonly string[] = [
  "libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/local/lib/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
];

const INSTALL_HINT =
  'install it with "apt-get install libopenblas0-pthread" or set STEP_BLAS_LIB to its path';

/**
 * Kernel families without AVX2. OpenBLAS 0.3.21 (Debian 12) does not know Sapphire/Emerald
 * Rapids and falls back to "Prescott": measured 20 GFLOP/s instead of 125 on this project's
 * 2-core Xeon, so such a pick is overridden from the CPU flags.
 */
const WEAK_CORES = new Set([
  "prescott",
  "core2",
  "penryn",
  "dunnington",
  "nehalem",
  "atom",
  "katmai",
  "coppermine",
  "northwood",
  "banias",
  "sandybridge",
  "unknown",
]);
const AVX512_CORES = new Set(["skylakex", "cooperlake", "sapphirerapids"]);

/** An environment variable, or undefined where it is unset or Deno may not read it. */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function cString(p: Deno.PointerValue): string {
  return p === null ? "unknown" : new Deno.UnsafePointerView(p).getCString();
}

function corename(lib: Deno.DynamicLibrary<typeof SYMBOLS>): string {
  const f = lib.symbols.openblas_get_corename;
  return f === null ? "unknown" : cString(f());
}

/** The CPU's feature flags from /proc/cpuinfo; undefined when unreadable (Deno allows it only
 * under --allow-all). */
function cpuFlags(): Set<string> | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    const line = text.split("\n").find((l) => l.startsWith("flags"));
    return line === undefined ? undefined : new Set(line.split(/\s+/));
  } catch {
    return undefined;
  }
}

/** A core type to force on reload, or undefined when OpenBLAS's own pick is fine. */
function betterCoreType(picked: string, flags: Set<string>): string | undefined {
  const p = picked.toLowerCase();
  const avx512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl"].every((f) => flags.has(f));
  if (avx512 && !AVX512_CORES.has(p)) return "SkylakeX";
  if (!avx512 && flags.has("avx2") && flags.has("fma") && WEAK_CORES.has(p)) return "Haswell";
  return undefined;
}

function envWritable(variable = "OPENBLAS_CORETYPE"): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * `OPENBLAS_THREAD_TIMEOUT` for the load: after a product, OpenBLAS's helper threads spin
 * 2^n cycles before they sleep (n = 28 by default, ~0.1 s), taking half the core that the fused
 * kernels' own threads (kernels/fused/_pool.ts) then need. 2^20 (~0.4 ms) keeps them awake
 * between the back-to-back products of a decoded token and lets them sleep during a training
 * step's other kernels. Medium bench step / cached generation on the bench's two shapes, two
 * runs each (bench/NOTES.md §9): n = 4: 401–420 ms, 560–565 and 153–157 tokens/s; n = 20:
 * 393–403 ms, 1035–1076 and 196–209; n = 28: 451–478 ms, 957–1005 and 194–236.
 */
export const THREAD_TIMEOUT_LOG2 = 20;

/** Variables OpenBLAS reads once, as it loads: set for the load only, never over the user's. */
function loadEnv(core?: string): Record<string, string> {
  const vars: Record<string, string> = {};
  if (envVar("OPENBLAS_THREAD_TIMEOUT") === undefined && envWritable("OPENBLAS_THREAD_TIMEOUT")) {
    vars["OPENBLAS_THREAD_TIMEOUT"] = String(THREAD_TIMEOUT_LOG2);
  }
  if (core !== undefined) vars["OPENBLAS_CORETYPE"] = core;
  return vars;
}

/** Opens `name` with `vars` set in the environment for the duration of the load only. */
function openWithEnv(
  name: string,
  vars: Record<string, string>,
): E.Either<string, Deno.DynamicLibrary<typeof SYMBOLS>> {
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    return tryOpen(name);
  } finally {
    for (const k of Object.keys(vars)) Deno.env.delete(k);
  }
}

function tryOpen(name: string): E.Either<string, Deno.DynamicLibrary<typeof SYMBOLS>> {
  try {
    return E.right(Deno.dlopen(name, SYMBOLS));
  } catch (e: unknown) {
    return E.left(e instanceof Error ? e.message : String(e));
  }
}

/**
 * Opens OpenBLAS: `options.library`, else `STEP_BLAS_LIB`, else the loader's
 * `libopenblas.so.0` and common paths. Fixes a misdetected kernel family (see
 * {@link WEAK_CORES}) unless the user set `OPENBLAS_CORETYPE`, and sets the thread count
 * unless the user set `OPENBLAS_NUM_THREADS`. Left is a one-line notice.
 */
export function openBlas(options: OpenBlasOptions = {}): E.Either<string, OpenBlas> {
  const chosen = options.library ?? envVar("STEP_BLAS_LIB");
  const names = chosen !== undefined ? [chosen] : CANDIDATES;
  let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
  let library = "";
  let lastError = "";
  for (const name of names) {
    const r = openWithEnv(name, loadEnv());
    if (E.isRight(r)) {
      lib = r.right;
      library = name;
      break;
    }
    lastError = r.left;
    if (/permission|--allow-ffi|Requires ffi access/i.test(lastError)) {
      return E.left('Cannot load OpenBLAS: FFI is not permitted; run deno with "--allow-ffi"');
    }
  }
  if (lib === undefined) {
    if (chosen !== undefined) {
      return E.left(`Cannot load OpenBLAS from "${chosen}": ${lastError}; ${INSTALL_HINT}`);
    }
    return E.left(`Cannot load OpenBLAS: "libopenblas.so.0" not found; ${INSTALL_HINT}`);
  }

  let warning: string | undefined;
  if (envVar("OPENBLAS_CORETYPE") === undefined) {
    const picked = corename(lib);
    const flags = cpuFlags();
    const better = flags === undefined ? undefined : betterCoreType(picked, flags);
    if (flags === undefined && WEAK_CORES.has(picked.toLowerCase())) {
      warning = `OpenBLAS picked its slow "${picked}" kernels and Deno reads /proc/cpuinfo ` +
        "only under --allow-all: run with it, or set OPENBLAS_CORETYPE (e.g. SkylakeX)";
    } else if (better !== undefined && !envWritable()) {
      warning = `OpenBLAS picked its "${picked}" kernels on a CPU that runs "${better}": ` +
        `allow setting OPENBLAS_CORETYPE (--allow-env), or set it to ${better} yourself`;
    } else if (better !== undefined) {
      lib.close();
      const r = openWithEnv(library, loadEnv(better));
      if (E.isLeft(r)) return E.left(`Cannot reload OpenBLAS as ${better}: ${r.left}`);
      lib = r.right;
    }
  }

  const getThreads = lib.symbols.openblas_get_num_threads;
  const setThreads = lib.symbols.openblas_set_num_threads;
  const want = options.threads ??
    (envVar("OPENBLAS_NUM_THREADS") === undefined ? navigator.hardwareConcurrency : undefined);
  if (want !== undefined && setThreads !== null && getThreads !== null && getThreads() !== want) {
    setThreads(want);
  }
  const configFn = lib.symbols.openblas_get_config;
  return E.right({
    library,
    sgemm: lib.symbols.cblas_sgemm,
    sgemv: lib.symbols.cblas_sgemv,
    somatcopy: lib.symbols.cblas_somatcopy,
    prepare: threadPolicy(
      getThreads === null ? want ?? 1 : getThreads(),
      setThreads === null ? null : (n: number) => setThreads(n),
    ),
    threads: getThreads === null ? want ?? 1 : getThreads(),
    core: corename(lib),
    config: configFn === null ? "unknown" : cString(configFn()),
    ...(warning !== undefined ? { warning } : {}),
  });
}

/**
 * Products below this many multiply-adds (4 MFLOP: tens of µs on one core) run on one thread.
 * OpenBLAS threads a sgemm from 262,144 multiply-adds and a sgemv from a few thousand; at
 * attention's per-head blocks (64·128·64) and a decoded token's rows its threads' hand-off cost
 * more than they saved here (192×512 sgemv: 17 µs on 2 threads, 7 µs on one), and far more
 * whenever another process held the second core.
 */
export const SINGLE_THREAD_BELOW = 1 << 21;

/**
 * Matrices below this many elements (512 KiB of float32) are multiplied on one thread. A sgemv
 * reads each weight once and runs at memory bandwidth: on an idle machine a second thread raised
 * it (a decoded token of the [512, 8, 4096] bench model: 6.0 ms with one thread per product, 4.0 ms
 * with two from this size on), while the hand-off dominates small ones (192×512: 17 µs on two
 * threads, 7 µs on one). When another process holds the second core, two threads lose.
 */
export const GEMV_SINGLE_THREAD_BELOW = 1 << 17;

function threadPolicy(
  threads: number,
  setThreads: ((n: number) => void) | null,
): (multiplyAdds: number, singleBelow?: number) => void {
  let current = threads;
  return (multiplyAdds, singleBelow = SINGLE_THREAD_BELOW) => {
    const want = multiplyAdds < singleBelow ? 1 : threads;
    if (setThreads === null || want === current) return;
    setThreads(want);
    current = want;
  };
}

let opened: OpenBlas | undefined;

/**
 * {@link openBlas} once per process: the "blas" backend and the wasm matmul share one
 * library and one thread setting. Later options are ignored.
 */
export function openBlasOnce(options: OpenBlasOptions = {}): E.Either<string, OpenBlas> {
  if (opened !== undefined) return E.right(opened);
  const r = openBlas(options);
  if (E.isRight(r)) opened = r.right;
  return r;
}
