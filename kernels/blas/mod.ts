/**
 * OpenBLAS matrix products for TensorFlow.js through Deno FFI, two ways:
 *
 * - the "blas" backend ({@link registerBlasBackend}): tfjs's CPU backend with BatchMatMul and
 *   _FusedMatMul (so every matMul, dense layer and matMul gradient) on OpenBLAS;
 * - {@link registerBlasWasmMatMul}: the "wasm" backend's BatchMatMul on OpenBLAS, working on
 *   the wasm heap in place, so all other ops keep wasm's SIMD kernels;
 * - {@link openHeapSgemm}: sgemm on byte offsets of a wasm heap (oneDNN's where installed),
 *   for the kernel pool's products and the fused kernels that multiply strided views
 *   (kernels/fused's attention);
 * - {@link openSgemv}: sgemv on raw addresses, for decoding one token at a time.
 *
 * Importing this module does nothing.
 *
 * @module
 */

export {
  BLAS_BACKEND,
  type BlasInfo,
  type BlasOptions,
  registerBlasBackend,
} from "./blas_backend.ts";
export { registerBlasWasmMatMul, unregisterBlasWasmMatMul } from "./wasm_mat_mul.ts";
export { attachHeapSgemm, type HeapSgemm, openHeapSgemm, type SgemmArgs } from "./heap_sgemm.ts";
export { openSgemv, type Sgemv, type SgemvArgs } from "./sgemv.ts";
export { openTransposeCopy, type TransposeCopy } from "./transpose_copy.ts";
export { hugePageFloats } from "./huge_pages.ts";
export { type MatMulPlan, planMatMul } from "./_gemm.ts";
export {
  CBLAS_NO_TRANS,
  CBLAS_ROW_MAJOR,
  CBLAS_TRANS,
  type OpenBlas,
  openBlasOnce,
} from "./_openblas.ts";
