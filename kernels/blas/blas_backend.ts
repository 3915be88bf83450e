/**
 * The "blas" TensorFlow.js backend: tfjs's CPU backend (same tensor storage, every "cpu"
 * kernel) with matrix products done by OpenBLAS `cblas_sgemm` through Deno FFI.
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";
import {
  _FusedMatMul,
  BatchMatMul,
  findBackendFactory,
  getKernel,
  getKernelsForBackend,
  type KernelFunc,
  registerBackend,
  registerKernel,
} from "@tensorflow/tfjs-core";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { batchMatMulKernel, fusedMatMulKernel } from "./_mat_mul_kernels.ts";
import { openBlasOnce } from "./_openblas.ts";

/** The backend's name, for `tf.setBackend`. */
export const BLAS_BACKEND = "blas";

/** What {@link registerBlasBackend} found. */
export interface BlasInfo {
  /** The library name or path that loaded. */
  readonly library: string;
  /** Threads OpenBLAS uses per sgemm call. */
  readonly threads: number;
  /** OpenBLAS's kernel family (e.g. "SkylakeX"), or "unknown" for another CBLAS. */
  readonly core: string;
  /** `openblas_get_config()`, or "unknown". */
  readonly config: string;
  /**
   * Set when OpenBLAS runs kernels far below what the CPU can (e.g. SSE3 on an AVX-512 CPU)
   * and missing `--allow-read`/`--allow-env` kept registration from fixing it: worth printing.
   */
  readonly warning?: string;
  /** Kernels served by OpenBLAS; all others are the CPU backend's. */
  readonly blasKernels: readonly string[];
}

/** Options for {@link registerBlasBackend}. */
export interface BlasOptions {
  /** Library name or path; default `STEP_BLAS_LIB`, then `libopenblas.so.0` and common paths. */
  readonly library?: string;
  /** Threads per sgemm; default `navigator.hardwareConcurrency` unless OPENBLAS_NUM_THREADS is set. */
  readonly threads?: number;
  /**
   * tfjs backend priority. Default 0: registering never changes which backend tfjs picks by
   * itself; call `tf.setBackend("blas")`.
   */
  readonly priority?: number;
}

let registered: BlasInfo | undefined;

/**
 * Loads OpenBLAS and registers the "blas" backend with every kernel the "cpu" backend has
 * at this moment (kernels registered for "cpu" later are not mirrored). Calling it again
 * returns the first result. Left is a one-line notice (what to install) for callers that fall
 * back to wasm.
 *
 * Needs `--allow-ffi`. Picking the right OpenBLAS kernels when OpenBLAS misdetects the CPU
 * also needs /proc/cpuinfo (Deno reads it only under `--allow-all`) and `--allow-env`;
 * without them the result carries a `warning`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import * as E from "fp-ts/lib/Either.js";
 * import { registerBlasBackend } from "./mod.ts";
 *
 * const r = registerBlasBackend();
 * if (E.isRight(r)) await tf.setBackend("blas");
 * else console.warn(r.left); // e.g. Cannot load OpenBLAS: … install it with "apt-get …"
 * ```
 */
export function registerBlasBackend(options: BlasOptions = {}): E.Either<string, BlasInfo> {
  if (registered !== undefined) return E.right(registered);
  if (findBackendFactory(BLAS_BACKEND) !== null) {
    return E.left(`Cannot register backend "${BLAS_BACKEND}": another one has that name`);
  }
  const opened = openBlasOnce({
    ...(options.library !== undefined ? { library: options.library } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  });
  if (E.isLeft(opened)) return opened;
  const blas = opened.right;

  const ours = new Map<string, KernelFunc>([
    [BatchMatMul, batchMatMulKernel(blas)],
    [_FusedMatMul, fusedMatMulKernel(blas)],
  ]);
  for (const config of getKernelsForBackend("cpu")) {
    if (getKernel(config.kernelName, BLAS_BACKEND) !== undefined) continue;
    registerKernel({
      ...config,
      backendName: BLAS_BACKEND,
      kernelFunc: ours.get(config.kernelName) ?? config.kernelFunc,
    });
  }
  registerBackend(BLAS_BACKEND, function makeBlasBackend(): MathBackendCPU {
    const backend = new MathBackendCPU();
    // The CPU backend prints a "you are in Node.js, install tfjs-node" banner on first
    // write when it sees Node APIs (Deno has them); here that advice is wrong.
    (backend as unknown as { firstUse: boolean }).firstUse = false;
    return backend;
  }, options.priority ?? 0);

  registered = {
    library: blas.library,
    threads: blas.threads,
    core: blas.core,
    config: blas.config,
    ...(blas.warning !== undefined ? { warning: blas.warning } : {}),
    blasKernels: [...ours.keys()],
  };
  return E.right(registered);
}
