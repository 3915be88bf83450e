/**
 * Fused WGSL kernels for the "webgpu" backend, implementing the contracts of
 * ../ops/fused_kernels.ts for the ops solvers/fused_registries.ts declares:
 * causal attention (forward keeps one log-sum-exp per query row, backward
 * recomputes the probabilities from it), softmax cross-entropy
 * without one-hot targets, RMSNorm, RoPE, SwiGLU and AdamW (one element-wise
 * sweep per output, with none of the composites' temporaries). The ops run
 * them whenever "webgpu" is the active backend; their composites stay the
 * reference.
 *
 * Importing this module registers nothing.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { FUSED_REGISTRIES, type FusibleOp, type RegistryOp } from "../../solvers/mod.ts";
import { type FusedImplementations, liveOps, registryKernels } from "../ops/fused_kernels.ts";
import { adamwKernel } from "./adamw.ts";
import { attentionBackward, attentionForward } from "./attention.ts";
import { crossEntropyBackward, crossEntropyForward } from "./cross_entropy.ts";
import { rmsNormBackward, rmsNormForward } from "./rms_norm.ts";
import { ropeBackward, ropeForward } from "./rope.ts";
import { swigluBackward, swigluForward } from "./swiglu.ts";

export {
  type CaseComparison,
  type CaseOutputs,
  compareFusedToComposite,
  compareOutputs,
  type KernelCase,
  type KernelCaseOptions,
  kernelCases,
  type OpPath,
  relativeError,
  runCase,
  type RunOptions,
} from "./equivalence.ts";
export { type GpuPeakTracker, trackGpuPeak } from "./gpu_peak.ts";

const BACKEND = "webgpu";

const IMPLEMENTATIONS: FusedImplementations<RegistryOp<"webgpu">> = {
  rmsNorm: [rmsNormForward, rmsNormBackward],
  rope: [ropeForward, ropeBackward],
  attention: [attentionForward, attentionBackward],
  swiglu: [swigluForward, swigluBackward],
  crossEntropy: [crossEntropyForward, crossEntropyBackward],
  adamw: [adamwKernel],
};

const KERNELS = registryKernels(FUSED_REGISTRIES.webgpu, IMPLEMENTATIONS);

/**
 * Registers the WGSL fused kernels for "webgpu" (idempotent). Call after
 * importing @tensorflow/tfjs-backend-webgpu; `initBackend("webgpu")` does.
 *
 * @example
 * ```ts
 * import { registerWebGpuKernels, unregisterWebGpuKernels, webGpuKernels } from "./mod.ts";
 * registerWebGpuKernels();
 * console.log(webGpuKernels()); // ["StepRmsNorm", "StepRmsNormGrad", ...]
 * unregisterWebGpuKernels();
 * ```
 */
export function registerWebGpuKernels(): void {
  for (const [kernelName, kernelFunc] of KERNELS) {
    if (tf.getKernel(kernelName, BACKEND)?.kernelFunc === kernelFunc) continue;
    if (tf.getKernel(kernelName, BACKEND) !== undefined) tf.unregisterKernel(kernelName, BACKEND);
    tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
}

/** Removes them again, so every op runs its composite on "webgpu". */
export function unregisterWebGpuKernels(): void {
  for (const [kernelName] of KERNELS) {
    if (tf.getKernel(kernelName, BACKEND) !== undefined) tf.unregisterKernel(kernelName, BACKEND);
  }
}

/** The fused kernel names registered for "webgpu" now. */
export function webGpuKernels(): string[] {
  return KERNELS.map(([n]) => n).filter((n) => tf.getKernel(n, BACKEND) !== undefined);
}

/** The ops that run as this folder's kernels now: none unless "webgpu" is the active backend. */
export function fusedWebGpuOps(): FusibleOp[] {
  return tf.getBackend() === BACKEND
    ? liveOps(BACKEND, FUSED_REGISTRIES.webgpu, IMPLEMENTATIONS)
    : [];
}
