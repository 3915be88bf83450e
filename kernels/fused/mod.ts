/**
 * Fused kernels for the "wasm" backend, implementing the contracts of
 * ../ops/fused_kernels.ts for the ops that solvers/fused_registries.ts
 * declares: RMSNorm, RoPE, SwiGLU, softmax cross-entropy and AdamW as
 * hand-written WebAssembly SIMD over the tensors in wasm memory (`wasm`), and
 * causal attention as heap sgemm products on strided head views plus a SIMD
 * causal softmax (`wasmOpenBlas`, given an sgemm: `openHeapSgemm` in ../blas).
 * Also replaces wasm's GatherV2 along axis 0 (the embedding) with row copies.
 *
 * Importing this module registers nothing.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { FUSED_REGISTRIES, type FusibleOp, type RegistryOp } from "../../solvers/mod.ts";
import type { HeapSgemm } from "../blas/mod.ts";
import {
  type FusedImplementations,
  kernelNames,
  liveOps,
  registryKernels,
} from "../ops/fused_kernels.ts";
import { attentionBackward, attentionForward } from "./_attention_kernels.ts";
import { rowGather } from "./_gather.ts";
import { pooledMatMul } from "./_pooled_mat_mul.ts";
export { addingNextProduct } from "./_pooled_mat_mul.ts";
import { type KernelPool, kernelThreads, poolOf } from "./_pool.ts";
import type { WasmBackendLike } from "./_wasm_backend.ts";
import {
  adamw,
  crossEntropyBackward,
  crossEntropyForward,
  rmsNormBackward,
  rmsNormForward,
  ropeBackward,
  ropeForward,
  sumSquares,
  swigluBackward,
  swigluForward,
} from "./_row_kernels.ts";

const BACKEND = "wasm";
const BatchMatMul = "BatchMatMul";

const ROW_IMPLEMENTATIONS: FusedImplementations<RegistryOp<"wasm">> = {
  rmsNorm: [rmsNormForward, rmsNormBackward],
  rope: [ropeForward, ropeBackward],
  swiglu: [swigluForward, swigluBackward],
  crossEntropy: [crossEntropyForward, crossEntropyBackward],
  adamw: [adamw],
  // The same kernel: it writes into param, m and v's buffers when the caller allows it.
  adamwInPlace: [adamw],
  sumSquares: [sumSquares],
};

const ROW_KERNELS = registryKernels(FUSED_REGISTRIES.wasm, ROW_IMPLEMENTATIONS);

let attentionSgemm: HeapSgemm | undefined;
let attention: FusedImplementations<RegistryOp<"wasmOpenBlas">> | undefined;
let replacedGather: tf.KernelConfig | undefined;
let installedGather: tf.KernelFunc | undefined;

function install(kernelName: string, kernelFunc: tf.KernelFunc): void {
  if (tf.getKernel(kernelName, BACKEND)?.kernelFunc === kernelFunc) return;
  uninstall(kernelName);
  tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
}

function uninstall(kernelName: string): void {
  if (tf.getKernel(kernelName, BACKEND) !== undefined) tf.unregisterKernel(kernelName, BACKEND);
}

/**
 * Registers the fused kernels that need no matrix product for "wasm", and the
 * row-copy GatherV2 (idempotent; call after importing
 * @tensorflow/tfjs-backend-wasm). Attention is separate:
 * {@link registerFusedWasmAttention}.
 *
 * @example
 * ```ts
 * import { registerFusedWasmKernels, unregisterFusedWasmKernels } from "./mod.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("wasm"); // registers them already
 * registerFusedWasmKernels(); // no change
 * unregisterFusedWasmKernels();
 * ```
 */
export function registerFusedWasmKernels(): void {
  for (const [name, f] of ROW_KERNELS) install(name, f);
  const gather = tf.getKernel("GatherV2", BACKEND);
  if (gather !== undefined && gather.kernelFunc !== installedGather) {
    replacedGather = gather;
    installedGather = rowGather(gather.kernelFunc);
    tf.unregisterKernel("GatherV2", BACKEND);
    tf.registerKernel({ ...gather, kernelFunc: installedGather });
  }
}

/**
 * Registers the fused causal attention pair for "wasm" on `sgemm` (oneDNN or OpenBLAS
 * on the wasm heap, from `openHeapSgemm` in ../blas); idempotent for the same
 * sgemm.
 */
export function registerFusedWasmAttention(sgemm: HeapSgemm): void {
  const ops = FUSED_REGISTRIES.wasmOpenBlas;
  if (
    sgemm === attentionSgemm && attention !== undefined &&
    liveOps(BACKEND, ops, attention).length === ops.length
  ) return;
  attention = {
    attention: [attentionForward(sgemm), attentionBackward(sgemm)],
    productSums: [],
  };
  for (const [name, f] of registryKernels(ops, attention)) install(name, f);
  attentionSgemm = sgemm;
}

let pooledOver: tf.KernelConfig | undefined;
let pooledInstalled: tf.KernelFunc | undefined;

/**
 * Cuts "wasm"'s float32 matrix products of 2^21 multiply-adds and more into row or column blocks
 * over the kernel pool, each part a single-threaded sgemm on `sgemm`'s library; smaller and batched products go
 * to the BatchMatMul registered now (OpenBLAS's own, `registerBlasWasmMatMul` in ../blas, which
 * must be in place first). One set of threads then serves products and fused kernels, so the
 * pool's worker, still spinning from the last kernel, takes the next product at once instead of
 * OpenBLAS's sleeping threads (bench/NOTES.md §10). Idempotent.
 */
export function registerPooledWasmMatMul(sgemm: HeapSgemm): void {
  const current = tf.getKernel(BatchMatMul, BACKEND);
  if (current === undefined || current.kernelFunc === pooledInstalled) return;
  pooledOver = current;
  pooledInstalled = pooledMatMul(sgemm, current.kernelFunc);
  tf.unregisterKernel(BatchMatMul, BACKEND);
  tf.registerKernel({ ...current, kernelFunc: pooledInstalled });
}

/** Whether the pooled BatchMatMul is the one registered. */
function pooledLive(): boolean {
  return pooledInstalled !== undefined &&
    tf.getKernel(BatchMatMul, BACKEND)?.kernelFunc === pooledInstalled;
}

/** Puts back the BatchMatMul that {@link registerPooledWasmMatMul} wrapped, if it is in place. */
export function unregisterPooledWasmMatMul(): void {
  const current = tf.getKernel(BatchMatMul, BACKEND);
  if (pooledOver !== undefined && current?.kernelFunc === pooledInstalled) {
    tf.unregisterKernel(BatchMatMul, BACKEND);
    tf.registerKernel(pooledOver);
  }
  pooledOver = undefined;
  pooledInstalled = undefined;
}

/** Removes the attention pair, so attention runs its composite path on "wasm". */
export function unregisterFusedWasmAttention(): void {
  for (const name of kernelNames(FUSED_REGISTRIES.wasmOpenBlas)) uninstall(name);
  attentionSgemm = undefined;
  attention = undefined;
}

export { kernelThreads };
export { listenToScratch, type ScratchListener } from "./_wasm_backend.ts";

/** The kernel pool of the active "wasm" backend's heap, or undefined on another backend. */
function activePool(): KernelPool | undefined {
  if (tf.getBackend() !== BACKEND) return undefined;
  return poolOf((tf.backend() as unknown as WasmBackendLike).wasm.asm.memory);
}

/**
 * Starts the worker threads of the active "wasm" backend's fused kernels (once per heap) and
 * returns the threads their jobs will be cut over once the workers are ready:
 * {@link kernelThreads} on a shared wasm memory, 1 on a plain one or when no worker could
 * start. The workers report ready within a few hundred ms; jobs run on the calling thread
 * alone until then.
 */
export function startFusedWasmPool(): number {
  return activePool()?.planned ?? 1;
}

/** Threads running the active "wasm" backend's fused kernels' parts now (ready workers + 1). */
export function fusedWasmThreads(): number {
  return activePool()?.threads() ?? 1;
}

/** The ops that run as this folder's kernels now: none unless "wasm" is the active backend. */
export function fusedWasmOps(): FusibleOp[] {
  if (tf.getBackend() !== BACKEND) return [];
  return [
    ...liveOps(BACKEND, FUSED_REGISTRIES.wasm, ROW_IMPLEMENTATIONS),
    ...FUSED_REGISTRIES.wasmOpenBlas.filter((op) =>
      op === "productSums"
        ? pooledLive()
        : attention !== undefined && liveOps(BACKEND, [op], attention).length === 1
    ),
  ];
}

/** Removes every fused kernel registered here and restores GatherV2. */
export function unregisterFusedWasmKernels(): void {
  for (const [name] of ROW_KERNELS) uninstall(name);
  unregisterFusedWasmAttention();
  const gather = tf.getKernel("GatherV2", BACKEND);
  if (replacedGather !== undefined && gather?.kernelFunc === installedGather) {
    tf.unregisterKernel("GatherV2", BACKEND);
    tf.registerKernel(replacedGather);
  }
  replacedGather = undefined;
  installedGather = undefined;
}
