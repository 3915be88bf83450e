/**
 * Fused kernels for the "wasm" backend, implementing the contracts of
 * ../ops/fused_kernels.ts: RMSNorm, RoPE, SwiGLU, softmax cross-entropy and AdamW
 * as hand-written WebAssembly SIMD over the tensors in wasm memory, and
 * causal attention as OpenBLAS products on strided head views plus a SIMD
 * causal softmax (given an sgemm: `openHeapSgemm` in ../blas). Also
 * replaces wasm's GatherV2 along axis 0 (the embedding) with row copies.
 *
 * Importing this module registers nothing.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm } from "../blas/mod.ts";
import {
  FUSED_ADAMW,
  FUSED_ATTENTION,
  FUSED_CROSS_ENTROPY,
  FUSED_RMS_NORM,
  FUSED_ROPE,
  FUSED_SWIGLU,
} from "../ops/fused_kernels.ts";
import { attentionBackward, attentionForward } from "./_attention.ts";
import { rowGather } from "./_gather.ts";
import {
  adamw,
  crossEntropyBackward,
  crossEntropyForward,
  rmsNormBackward,
  rmsNormForward,
  ropeBackward,
  ropeForward,
  swigluBackward,
  swigluForward,
} from "./_row_kernels.ts";

const BACKEND = "wasm";

const ROW_KERNELS: readonly (readonly [string, tf.KernelFunc])[] = [
  [FUSED_RMS_NORM.forward, rmsNormForward],
  [FUSED_RMS_NORM.gradient, rmsNormBackward],
  [FUSED_ROPE.forward, ropeForward],
  [FUSED_ROPE.gradient, ropeBackward],
  [FUSED_SWIGLU.forward, swigluForward],
  [FUSED_SWIGLU.gradient, swigluBackward],
  [FUSED_CROSS_ENTROPY.forward, crossEntropyForward],
  [FUSED_CROSS_ENTROPY.gradient, crossEntropyBackward],
  [FUSED_ADAMW, adamw],
];

let attentionSgemm: HeapSgemm | undefined;
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
 * Registers the fused causal attention pair for "wasm" on `sgemm` (OpenBLAS
 * on the wasm heap, from `openHeapSgemm` in ../blas); idempotent for the same
 * sgemm.
 */
export function registerFusedWasmAttention(sgemm: HeapSgemm): void {
  if (sgemm === attentionSgemm && tf.getKernel(FUSED_ATTENTION.forward, BACKEND) !== undefined) {
    return;
  }
  install(FUSED_ATTENTION.forward, attentionForward(sgemm));
  install(FUSED_ATTENTION.gradient, attentionBackward(sgemm));
  attentionSgemm = sgemm;
}

/** Removes the attention pair, so attention runs its composite path on "wasm". */
export function unregisterFusedWasmAttention(): void {
  uninstall(FUSED_ATTENTION.forward);
  uninstall(FUSED_ATTENTION.gradient);
  attentionSgemm = undefined;
}

/** The fused kernel names registered for "wasm" now. */
export function fusedWasmKernels(): string[] {
  return [...ROW_KERNELS.map(([n]) => n), FUSED_ATTENTION.forward, FUSED_ATTENTION.gradient]
    .filter((n) => tf.getKernel(n, BACKEND) !== undefined);
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
