/**
 * Which ops each of the engine's fused-kernel registries runs as one kernel. The registries
 * (`kernels/fused`, `kernels/webgpu`) are built from this declaration, the engine reads the live
 * set back from them (`fusedOps()`), and a plan made before any backend exists reads it here
 * (`BACKEND_FUSED` in `pipeline/`): it lives below both because the planner never loads tfjs.
 *
 * @module
 */
import { FUSIBLE_OPS, type FusibleOp } from "./engine_memory.ts";

/** The ops of each registry; a registry must implement exactly these (its type says so). */
export const FUSED_REGISTRIES = {
  /** wasm SIMD kernels, registered whenever wasm starts; AdamW writes into its inputs' buffers. */
  wasm: ["rmsNorm", "rope", "swiglu", "crossEntropy", "adamw", "adamwInPlace", "sumSquares"],
  /**
   * Causal attention on OpenBLAS products in wasm memory, and the products cut over the kernel
   * pool, which add into gradient sums; registered when OpenBLAS loads.
   */
  wasmOpenBlas: ["attention", "productSums"],
  /** WGSL kernels; AdamW writes new buffers, as the contract allows. */
  webgpu: ["rmsNorm", "rope", "attention", "swiglu", "crossEntropy", "adamw"],
} as const satisfies Record<string, readonly FusibleOp[]>;

/** The ops of one registry. */
export type RegistryOp<R extends keyof typeof FUSED_REGISTRIES> =
  typeof FUSED_REGISTRIES[R][number];

/**
 * The ops in any of `sets`, in {@link FUSIBLE_OPS} order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fusedUnion } from "./fused_registries.ts";
 * assert.deepEqual(fusedUnion(["adamw"], ["rope", "adamw"]), ["rope", "adamw"]);
 * ```
 */
export function fusedUnion(...sets: readonly (readonly FusibleOp[])[]): FusibleOp[] {
  return FUSIBLE_OPS.filter((op) => sets.some((s) => s.includes(op)));
}
