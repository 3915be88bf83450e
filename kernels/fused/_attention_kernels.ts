/**
 * The `StepCausalAttention` pair as wasm kernels: allocate the outputs and each
 * part's scratch, then run ./_attention.ts's units as a job of the kernel pool.
 * Private to `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm } from "../blas/mod.ts";
import {
  backwardScratch,
  dimArgs,
  type Dims,
  dimsOf,
  forwardScratch,
  inputs,
} from "./_attention.ts";
import { type Heap, heapOf } from "./_wasm_backend.ts";
import { attentionBlockRows, attentionParts } from "../../base/mod.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

/**
 * Parts for a call, and the sgemm's threads set for them: one per product when the parts run
 * side by side (OpenBLAS's setting is the process's, so it is made before any part starts), as
 * for the largest product when one thread does all.
 */
function plan(heap: Heap, sgemm: HeapSgemm, x: Dims): number {
  const parts = attentionParts(heap.parts(Infinity), {
    sequences: x.batch,
    seq: x.seq,
    heads: x.heads,
    kvHeads: x.kvHeads,
    headDim: x.d,
  });
  heap.attachBlas(sgemm.library);
  sgemm.threadsFor(parts > 1 ? 1 : attentionBlockRows(x.seq) * x.seq * x.d);
  return parts;
}

/**
 * Runs `job` over `tensors` (inputs, then the outputs already allocated) with each part's
 * `scratchFloats` of scratch (held in the buffer ledger while it lives), freed after.
 */
function runUnits(
  heap: Heap,
  sgemm: HeapSgemm,
  args: KernelArgs,
  x: Dims,
  job: "attentionForward" | "attentionBackward",
  tensors: readonly tf.TensorInfo[],
  scratchFloats: number,
): void {
  const parts = plan(heap, sgemm, x);
  const scratch = heap.scratch(parts * scratchFloats);
  const scale = args.attrs!["scale"] as number;
  heap.run(
    job,
    [...tensors.map(heap.offset), ...dimArgs(x), scale, heap.offset(scratch)],
    Infinity,
    parts,
  );
  heap.free(scratch);
}

/** The forward kernel on `sgemm`: q, k, v → o [b, t, H, d], lse [b, H, t]. */
export function attentionForward(sgemm: HeapSgemm): tf.KernelFunc {
  return function stepCausalAttention(args: KernelArgs): tf.TensorInfo[] {
    const heap = heapOf(args.backend);
    const [q, k, v] = inputs(args, ["q", "k", "v"]) as [
      tf.TensorInfo,
      tf.TensorInfo,
      tf.TensorInfo,
    ];
    const x = dimsOf(q, k);
    const o = heap.alloc([...q.shape]);
    const lse = heap.alloc([x.batch, x.heads, x.seq]);
    runUnits(heap, sgemm, args, x, "attentionForward", [q, k, v, o, lse], forwardScratch(x));
    return [o, lse];
  };
}

/** The gradient kernel on `sgemm`: dy, q, k, v, o, lse → dq, dk, dv. */
export function attentionBackward(sgemm: HeapSgemm): tf.KernelFunc {
  return function stepCausalAttentionGrad(args: KernelArgs): tf.TensorInfo[] {
    const heap = heapOf(args.backend);
    const [dy, q, k, v, o, lse] = inputs(args, ["dy", "q", "k", "v", "o", "lse"]) as [
      tf.TensorInfo,
      tf.TensorInfo,
      tf.TensorInfo,
      tf.TensorInfo,
      tf.TensorInfo,
      tf.TensorInfo,
    ];
    const x = dimsOf(q, k);
    const dq = heap.alloc([...q.shape]);
    const dk = heap.alloc([...k.shape]);
    const dv = heap.alloc([...v.shape]);
    const tensors = [dy, q, k, v, o, lse, dq, dk, dv];
    runUnits(heap, sgemm, args, x, "attentionBackward", tensors, backwardScratch(x));
    return [dq, dk, dv];
  };
}
