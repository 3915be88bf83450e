/**
 * The "blas" TensorFlow.js backend: tfjs's CPU backend with BatchMatMul and _FusedMatMul
 * (and so every matMul, dense layer and matMul gradient) computed by OpenBLAS through
 * Deno FFI. Importing this module does nothing; call {@link registerBlasBackend}.
 *
 * @module
 */

export {
  BLAS_BACKEND,
  type BlasInfo,
  type BlasOptions,
  registerBlasBackend,
} from "./blas_backend.ts";
