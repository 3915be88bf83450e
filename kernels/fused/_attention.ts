/**
 * `StepCausalAttention` and its gradient for the wasm backend: per (batch,
 * head), OpenBLAS multiplies the strided head views in wasm memory in place
 * (no transposes, no copies), and ./_simd.ts does the causal softmax between
 * the products. The backward pass recomputes the probabilities from the saved
 * log-sum-exp instead of keeping batch·heads·seq² floats alive. Private to
 * `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm } from "../blas/mod.ts";
import { heapOf } from "./_wasm_backend.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

const PLAIN = false;
const TRANSPOSED = true;

interface Dims {
  readonly batch: number;
  readonly seq: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly d: number;
}

function dimsOf(q: tf.TensorInfo, k: tf.TensorInfo): Dims {
  const [batch, seq, heads, d] = q.shape as [number, number, number, number];
  return { batch, seq, heads, kvHeads: k.shape[2]!, d };
}

/** Byte offsets of head h's first row in a [batch, seq, heads, d] tensor at `base`. */
function headAt(base: number, b: number, h: number, heads: number, dims: Dims): number {
  return base + 4 * ((b * dims.seq * heads + h) * dims.d);
}

function inputs(args: KernelArgs, names: readonly string[]): tf.TensorInfo[] {
  return names.map((n) => {
    const t = args.inputs[n];
    if (t === undefined) throw new Error(`StepCausalAttention: input "${n}" is missing`);
    return t;
  });
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
    const scale = args.attrs!["scale"] as number;
    const dims = dimsOf(q, k);
    const { batch, seq: t, heads, kvHeads, d } = dims;
    const group = heads / kvHeads;
    const o = heap.alloc([...q.shape]);
    const lse = heap.alloc([batch, heads, t]);
    const s = heap.alloc([t, t]);
    const rowMax = heap.alloc([t]);
    const rowSum = heap.alloc([t]);
    const [q0, k0, v0, o0, s0] = [q, k, v, o, s].map(heap.offset) as number[];
    const max0 = heap.offset(rowMax);
    const sum0 = heap.offset(rowSum);
    const lse0 = heap.offset(lse) >> 2;
    const bytes = heap.bytes();
    const f = heap.f32();
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const kv = Math.floor(h / group);
        const qh = headAt(q0!, b, h, heads, dims);
        sgemm(bytes, {
          transA: PLAIN,
          transB: TRANSPOSED,
          m: t,
          n: t,
          k: d,
          alpha: scale,
          a: qh,
          lda: heads * d,
          b: headAt(k0!, b, kv, kvHeads, dims),
          ldb: kvHeads * d,
          beta: 0,
          c: s0!,
          ldc: t,
        });
        heap.simd.causalSoftmax(s0!, t, max0, sum0);
        const at = lse0 + (b * heads + h) * t;
        for (let r = 0; r < t; r++) f[at + r] = f[(max0 >> 2) + r]! + Math.log(f[(sum0 >> 2) + r]!);
        sgemm(bytes, {
          transA: PLAIN,
          transB: PLAIN,
          m: t,
          n: d,
          k: t,
          alpha: 1,
          a: s0!,
          lda: t,
          b: headAt(v0!, b, kv, kvHeads, dims),
          ldb: kvHeads * d,
          beta: 0,
          c: headAt(o0!, b, h, heads, dims),
          ldc: heads * d,
        });
      }
    }
    [s, rowMax, rowSum].forEach(heap.free);
    return [o, lse];
  };
}

/** The gradient kernel on `sgemm`: dy, q, k, v, o, lse → dq, dk, dv. */
export function attentionBackward(sgemm: HeapSgemm): tf.KernelFunc {
  return function stepCausalAttentionGrad(args: KernelArgs): tf.TensorInfo[] {
    const heap = heapOf(args.backend);
    const [dy, q, k, v, o, lse] = inputs(args, ["dy", "q", "k", "v", "o", "lse"]);
    const scale = args.attrs!["scale"] as number;
    const dims = dimsOf(q!, k!);
    const { batch, seq: t, heads, kvHeads, d } = dims;
    const group = heads / kvHeads;
    const dq = heap.alloc([...q!.shape]);
    const dk = heap.alloc([...k!.shape]);
    const dv = heap.alloc([...v!.shape]);
    const p = heap.alloc([t, t]);
    const dp = heap.alloc([t, t]);
    const rowDot = heap.alloc([t]);
    const [dy0, q0, k0, v0, o0, lse0, dq0, dk0, dv0, p0, dp0, dot0] = [
      dy!,
      q!,
      k!,
      v!,
      o!,
      lse!,
      dq,
      dk,
      dv,
      p,
      dp,
      rowDot,
    ].map(heap.offset) as number[];
    const bytes = heap.bytes();
    const qStride = heads * d;
    const kvStride = kvHeads * d;
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const kv = Math.floor(h / group);
        // dk and dv of a kv head sum over its group's query heads; the first one writes.
        const beta = h % group === 0 ? 0 : 1;
        const qh = headAt(q0!, b, h, heads, dims);
        const dyh = headAt(dy0!, b, h, heads, dims);
        const kh = headAt(k0!, b, kv, kvHeads, dims);
        const vh = headAt(v0!, b, kv, kvHeads, dims);
        const gemm = (
          transA: boolean,
          transB: boolean,
          m: number,
          n: number,
          kk: number,
          ops: { a: number; lda: number; b: number; ldb: number; c: number; ldc: number },
          alpha: number,
          betaC: number,
        ): void => sgemm(bytes, { transA, transB, m, n, k: kk, alpha, beta: betaC, ...ops });
        gemm(
          PLAIN,
          TRANSPOSED,
          t,
          t,
          d,
          { a: qh, lda: qStride, b: kh, ldb: kvStride, c: p0!, ldc: t },
          scale,
          0,
        );
        heap.simd.causalExp(p0!, t, lse0! + 4 * (b * heads + h) * t);
        gemm(
          PLAIN,
          TRANSPOSED,
          t,
          t,
          d,
          { a: dyh, lda: qStride, b: vh, ldb: kvStride, c: dp0!, ldc: t },
          1,
          0,
        );
        gemm(
          TRANSPOSED,
          PLAIN,
          t,
          d,
          t,
          {
            a: p0!,
            lda: t,
            b: dyh,
            ldb: qStride,
            c: headAt(dv0!, b, kv, kvHeads, dims),
            ldc: kvStride,
          },
          1,
          beta,
        );
        heap.simd.stridedDots(dyh, headAt(o0!, b, h, heads, dims), t, d, 4 * qStride, dot0!);
        heap.simd.causalSoftmaxGrad(dp0!, p0!, t, dot0!, scale);
        gemm(
          PLAIN,
          PLAIN,
          t,
          d,
          t,
          {
            a: dp0!,
            lda: t,
            b: kh,
            ldb: kvStride,
            c: headAt(dq0!, b, h, heads, dims),
            ldc: qStride,
          },
          1,
          0,
        );
        gemm(
          TRANSPOSED,
          PLAIN,
          t,
          d,
          t,
          {
            a: dp0!,
            lda: t,
            b: qh,
            ldb: qStride,
            c: headAt(dk0!, b, kv, kvHeads, dims),
            ldc: kvStride,
          },
          1,
          beta,
        );
      }
    }
    [p, dp, rowDot].forEach(heap.free);
    return [dq, dk, dv];
  };
}
