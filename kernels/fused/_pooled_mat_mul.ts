/**
 * `BatchMatMul` on the kernel pool: a product's rows (or columns) of C are cut over the pool's
 * threads, each part one single-threaded sgemm (oneDNN's or OpenBLAS's) on the wasm heap in place.
 * One set of threads then serves the products and the fused kernels, instead of a BLAS's own threads beside the
 * pool's. Private to `kernels/fused/`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm } from "../blas/mod.ts";
import { planMatMul } from "../blas/mod.ts";
import { GEMM_BLOCK } from "./_parts.ts";
import { type Heap, heapOf } from "./_wasm_backend.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Products below this many multiply-adds run as one call on the caller (tens of µs). */
const CUT_FROM = 1 << 21;

/** Where the next product is added, set by {@link addingNextProduct}. */
let target: tf.Tensor | undefined;
let added = false;

/**
 * Runs `f` with `into` as the destination of the first product it runs: if that product is
 * float32, 2-D, of `into`'s shape, and `into`'s buffer has no other reference, the pooled kernel
 * adds the product into that buffer (sgemm's beta = 1) and returns it as the product's output (a
 * new tensor on the same buffer, which then holds `into` + product). `added` says whether it
 * did; if not, `f` ran as usual. The gradient tape's sums use it (../_backprop.ts): a tensor
 * read by several products gets its gradient summed inside them instead of by an Add each.
 */
export function addingNextProduct<T>(into: tf.Tensor, f: () => T): { value: T; added: boolean } {
  target = into;
  added = false;
  try {
    const value = f();
    return { value, added };
  } finally {
    target = undefined;
    added = false;
  }
}

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
    const into = intoTarget(heap, plan.outShape);
    const cut = Math.min(heap.parts(Infinity), Math.ceil(Math.max(m, n) / GEMM_BLOCK));
    const parts = m * n * k < CUT_FROM ? 1 : cut;
    if (parts < 2 && into === undefined) return fallback(args);
    const out = into ?? heap.alloc(plan.outShape);
    heap.attachBlas(sgemm.library);
    sgemm.threadsFor(parts > 1 ? 1 : m * n * k);
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
        into === undefined ? 0 : 1,
        heap.offset(out),
        n,
      ],
      Infinity,
      parts,
    );
    return out;
  };
}

/**
 * The pending destination as this kernel's output (its buffer's reference count raised), taken
 * once; undefined when there is none or it does not fit.
 */
function intoTarget(heap: Heap, shape: readonly number[]): tf.TensorInfo | undefined {
  const t = target;
  if (t === undefined || added || t.isDisposed || t.dtype !== "float32") return undefined;
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) return undefined;
  target = undefined;
  const data = heap.backend.dataIdMap.get(t.dataId);
  if (data === undefined || data.refCount !== 1) return undefined;
  heap.backend.incRef(t.dataId);
  added = true;
  return { dataId: t.dataId, shape: [...t.shape], dtype: "float32" };
}
