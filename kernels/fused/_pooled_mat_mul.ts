/**
 * `BatchMatMul` on the kernel pool: a product's rows (or columns) of C are cut over the pool's threads, each
 * part one single-threaded OpenBLAS sgemm on the wasm heap in place. One set of threads then
 * serves the products and the fused kernels, instead of OpenBLAS's own threads beside the
 * pool's. Private to `kernels/fused/`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm } from "../blas/mod.ts";
import { planMatMul } from "../blas/mod.ts";
import { GEMM_BLOCK } from "./_parts.ts";
import { heapOf } from "./_wasm_backend.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Products below this many multiply-adds run as one call on the caller (tens of µs). */
const CUT_FROM = 1 << 21;

/** The pooled kernel; products it does not cut (batched, tiny, not float32) go to `fallback`. */
export function pooledMatMul(sgemm: HeapSgemm, fallback: tf.KernelFunc): tf.KernelFunc {
  return function pooledBatchMatMul(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
    const { a, b } = args.inputs as { a?: tf.TensorInfo; b?: tf.TensorInfo };
    const transposeA = args.attrs?.["transposeA"] === true;
    const transposeB = args.attrs?.["transposeB"] === true;
    if (
      a === undefined || b === undefined || a.dtype !== "float32" || b.dtype !== "float32" ||
      a.shape.length !== 2 || b.shape.length !== 2
    ) {
      return fallback(args);
    }
    const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
    const { m, n, k } = plan;
    const heap = heapOf(args.backend);
    const parts = Math.min(heap.parts(Infinity), Math.ceil(Math.max(m, n) / GEMM_BLOCK));
    if (m * n * k < CUT_FROM || parts < 2) return fallback(args);
    const out = heap.alloc(plan.outShape);
    heap.attachBlas(sgemm.library);
    sgemm.threadsFor(1);
    heap.run(
      "sgemm",
      [
        transposeA ? 1 : 0,
        transposeB ? 1 : 0,
        m,
        n,
        k,
        1,
        heap.offset(a),
        transposeA ? m : k,
        heap.offset(b),
        transposeB ? k : n,
        0,
        heap.offset(out),
        n,
      ],
      Infinity,
      parts,
    );
    return out;
  };
}
