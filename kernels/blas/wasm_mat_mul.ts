/**
 * OpenBLAS matmul inside tfjs's wasm backend: `cblas_sgemm` reads and writes the wasm heap
 * directly (the tensors' `memoryOffset`s), so a training step keeps wasm's SIMD kernels for
 * every other op and gets OpenBLAS for its products, with no copies.
 *
 * Why: on the "blas" backend the products are fast but tfjs's plain-JS CPU kernels
 * (broadcast Mul/Sub, Softmax, Slice, …) then dominate a step (bench/NOTES.md).
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";
import {
  BatchMatMul,
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  type DataId,
  type DataType,
  getKernel,
  type KernelConfig,
  type KernelFunc,
  registerKernel,
  type TensorInfo,
  unregisterKernel,
} from "@tensorflow/tfjs-core";
import { planMatMul, sgemmAt } from "./_gemm.ts";
import { type OpenBlas, openBlasOnce } from "./_openblas.ts";
import type { BlasInfo, BlasOptions } from "./blas_backend.ts";

/** The parts of tfjs-backend-wasm 4.22's BackendWasm used here (pinned in deno.json). */
interface WasmBackendLike {
  readonly wasm: { readonly HEAPU8: Uint8Array };
  getMemoryOffset(dataId: DataId): number;
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
}

type KernelArgs = Parameters<KernelFunc>[0];

/** The wasm BatchMatMul that was registered before ours, restored by unregistering. */
let previous: KernelConfig | undefined;
let installed: KernelFunc | undefined;

function wasmKernel(blas: OpenBlas, fallback: KernelFunc): KernelFunc {
  return function blasWasmBatchMatMul(args: KernelArgs): TensorInfo | TensorInfo[] {
    const backend = args.backend as unknown as WasmBackendLike;
    const { a, b } = args.inputs as unknown as BatchMatMulInputs;
    const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
    if (
      a === undefined || b === undefined || a.dtype !== "float32" || b.dtype !== "float32" ||
      a.shape.length < 2 || b.shape.length < 2
    ) {
      return fallback(args);
    }
    const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
    const out = backend.makeOutput(plan.outShape, "float32");
    const size = plan.batch * plan.m * plan.n;
    if (size === 0) return out;
    // Read the heap view only now: makeOutput may have grown (and so moved) wasm memory.
    const heap = backend.wasm.HEAPU8;
    const outOffset = backend.getMemoryOffset(out.dataId);
    if (plan.k === 0) {
      new Float32Array(heap.buffer, outOffset, size).fill(0);
      return out;
    }
    const base = Deno.UnsafePointer.of(heap);
    if (base === null) throw new Error("Cannot take the address of the wasm heap");
    const at = (offset: number): Deno.PointerObject => {
      const p = Deno.UnsafePointer.offset(base, offset);
      if (p === null) throw new Error("Cannot address wasm heap offset 0");
      return p;
    };
    sgemmAt(blas, plan, {
      a: at(backend.getMemoryOffset(a.dataId)),
      b: at(backend.getMemoryOffset(b.dataId)),
      out: at(outOffset),
      beta: 0,
    });
    return out;
  };
}

/**
 * Replaces the "wasm" backend's BatchMatMul (every `tf.matMul` and matMul gradient there)
 * with OpenBLAS on the wasm heap; non-float32 products go to the kernel it replaces. Call
 * after whatever else registers a wasm BatchMatMul (kernels/ does in `initBackend("wasm")`);
 * calling again returns the same info. Left is the one-line notice of a missing OpenBLAS,
 * and nothing changes.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { registerBlasWasmMatMul, unregisterBlasWasmMatMul } from "./mod.ts";
 *
 * const r = registerBlasWasmMatMul();
 * if (E.isLeft(r)) console.warn(r.left); // wasm keeps its own matmul
 * unregisterBlasWasmMatMul();
 * ```
 */
export function registerBlasWasmMatMul(options: BlasOptions = {}): E.Either<string, BlasInfo> {
  const opened = openBlasOnce({
    ...(options.library !== undefined ? { library: options.library } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  });
  if (E.isLeft(opened)) return opened;
  const blas = opened.right;
  const info: BlasInfo = {
    library: blas.library,
    threads: blas.threads,
    core: blas.core,
    config: blas.config,
    ...(blas.warning !== undefined ? { warning: blas.warning } : {}),
    blasKernels: [BatchMatMul],
  };
  const current = getKernel(BatchMatMul, "wasm");
  if (current !== undefined && current.kernelFunc === installed) return E.right(info);
  if (current === undefined) {
    return E.left(
      'Cannot install OpenBLAS matmul on "wasm": import @tensorflow/tfjs-backend-wasm first',
    );
  }
  previous = current;
  installed = wasmKernel(blas, current.kernelFunc);
  unregisterKernel(BatchMatMul, "wasm");
  registerKernel({ ...current, kernelFunc: installed });
  return E.right(info);
}

/** Puts back the wasm BatchMatMul that {@link registerBlasWasmMatMul} replaced, if any. */
export function unregisterBlasWasmMatMul(): void {
  const current = getKernel(BatchMatMul, "wasm");
  if (previous === undefined || current === undefined || current.kernelFunc !== installed) return;
  unregisterKernel(BatchMatMul, "wasm");
  registerKernel(previous);
  previous = undefined;
  installed = undefined;
}
