/**
 * `StepCausalAttention` and its gradient for the wasm backend: per (batch,
 * head), OpenBLAS multiplies the strided head views in wasm memory in place
 * (no transposes, no copies), and ./_simd.ts does the causal softmax between
 * the products. The backward pass recomputes the probabilities from the saved
 * log-sum-exp instead of keeping batch·heads·seq² floats alive.
 *
 * Queries go in blocks of {@link BLOCK} rows, each multiplied only against the
 * keys it can see (rows [r0, r1) need keys [0, r1)): about 5/8 of the full
 * products' work at seq = 256, with the masked upper blocks never computed.
 * Private to `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm, SgemmArgs } from "../blas/mod.ts";
import { heapOf } from "./_wasm_backend.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

const PLAIN = false;
const TRANSPOSED = true;
/** Query rows per block: big enough for OpenBLAS to stay efficient, small enough to skip work. */
const BLOCK = 64;

/** Shapes of one call and the element strides of a sequence position. */
interface Dims {
  readonly batch: number;
  readonly seq: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly d: number;
  /** Floats between positions of q, o, dq (heads·d) and of k, v, dk, dv (kvHeads·d). */
  readonly qStride: number;
  readonly kvStride: number;
}

function dimsOf(q: tf.TensorInfo, k: tf.TensorInfo): Dims {
  const [batch, seq, heads, d] = q.shape as [number, number, number, number];
  const kvHeads = k.shape[2]!;
  return { batch, seq, heads, kvHeads, d, qStride: heads * d, kvStride: kvHeads * d };
}

function inputs(args: KernelArgs, names: readonly string[]): tf.TensorInfo[] {
  return names.map((n) => {
    const t = args.inputs[n];
    if (t === undefined) throw new Error(`StepCausalAttention: input "${n}" is missing`);
    return t;
  });
}

/** Byte offsets of one (batch, head) and its kv head, at sequence position 0. */
interface Head {
  /** Into q, o, dy, dq. */
  readonly q: number;
  /** Into k, v, dk, dv. */
  readonly kv: number;
  /** First of the head's `seq` entries in lse. */
  readonly lse: number;
}

function headOf(dims: Dims, b: number, h: number): Head {
  const kv = Math.floor(h / (dims.heads / dims.kvHeads));
  return {
    q: 4 * (b * dims.seq * dims.qStride + h * dims.d),
    kv: 4 * (b * dims.seq * dims.kvStride + kv * dims.d),
    lse: 4 * ((b * dims.heads + h) * dims.seq),
  };
}

/** Row blocks [r0, r1) of a sequence. */
function blocks(seq: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r0 = 0; r0 < seq; r0 += BLOCK) out.push([r0, Math.min(seq, r0 + BLOCK)]);
  return out;
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
    const { batch, seq, heads, d, qStride, kvStride } = dims;
    const o = heap.alloc([...q.shape]);
    const lse = heap.alloc([batch, heads, seq]);
    const s = heap.alloc([seq, seq]);
    const rowMax = heap.alloc([seq]);
    const rowSum = heap.alloc([seq]);
    const [q0, k0, v0, o0, lse0, s0, max0, sum0] = [q, k, v, o, lse, s, rowMax, rowSum]
      .map(heap.offset) as [number, number, number, number, number, number, number, number];
    const bytes = heap.bytes();
    const f = heap.f32();
    const gemm = (g: SgemmArgs): void => sgemm(bytes, g);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const at = headOf(dims, b, h);
        for (const [r0, r1] of blocks(seq)) {
          const rows = r1 - r0;
          const sBlock = s0 + 4 * r0 * seq;
          // scores of the block against the keys it sees: (rows, r1)
          gemm({
            transA: PLAIN,
            transB: TRANSPOSED,
            m: rows,
            n: r1,
            k: d,
            alpha: scale,
            a: q0 + at.q + 4 * r0 * qStride,
            lda: qStride,
            b: k0 + at.kv,
            ldb: kvStride,
            beta: 0,
            c: sBlock,
            ldc: seq,
          });
          heap.simd.causalSoftmax(sBlock, rows, r0, r1, seq, max0 + 4 * r0, sum0 + 4 * r0);
          gemm({
            transA: PLAIN,
            transB: PLAIN,
            m: rows,
            n: d,
            k: r1,
            alpha: 1,
            a: sBlock,
            lda: seq,
            b: v0 + at.kv,
            ldb: kvStride,
            beta: 0,
            c: o0 + at.q + 4 * r0 * qStride,
            ldc: qStride,
          });
        }
        const l = (lse0 + at.lse) >>> 2;
        for (let r = 0; r < seq; r++) {
          f[l + r] = f[(max0 >>> 2) + r]! + Math.log(f[(sum0 >>> 2) + r]!);
        }
      }
    }
    [s, rowMax, rowSum].forEach(heap.free);
    return [o, lse];
  };
}

/**
 * The gradient kernel on `sgemm`: dy, q, k, v, o, lse → dq, dk, dv. Per head,
 * row blocks first fill P and dS (lower-triangular blocks only) and dq; then
 * key blocks [c0, c1) take dv = Pᵀ·dO and dk = dSᵀ·q over the rows that see
 * them (c0 and later), products with a long inner dimension.
 */
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
    const scale = args.attrs!["scale"] as number;
    const dims = dimsOf(q, k);
    const { batch, seq, heads, kvHeads, d, qStride, kvStride } = dims;
    const group = heads / kvHeads;
    const dq = heap.alloc([...q.shape]);
    const dk = heap.alloc([...k.shape]);
    const dv = heap.alloc([...v.shape]);
    const p = heap.alloc([seq, seq]);
    const ds = heap.alloc([seq, seq]);
    const rowDot = heap.alloc([seq]);
    const off = (t: tf.TensorInfo): number => heap.offset(t);
    const [dy0, q0, k0, v0, o0, lse0] = [dy, q, k, v, o, lse].map(off) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const [dq0, dk0, dv0, p0, ds0, dot0] = [dq, dk, dv, p, ds, rowDot].map(off) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const bytes = heap.bytes();
    const gemm = (g: SgemmArgs): void => sgemm(bytes, g);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const at = headOf(dims, b, h);
        for (const [r0, r1] of blocks(seq)) {
          const rows = r1 - r0;
          const qRows = 4 * r0 * qStride;
          const pBlock = p0 + 4 * r0 * seq;
          const dsBlock = ds0 + 4 * r0 * seq;
          // P of the block, recomputed: exp(scale·q·kᵀ − lse)
          gemm({
            transA: PLAIN,
            transB: TRANSPOSED,
            m: rows,
            n: r1,
            k: d,
            alpha: scale,
            a: q0 + at.q + qRows,
            lda: qStride,
            b: k0 + at.kv,
            ldb: kvStride,
            beta: 0,
            c: pBlock,
            ldc: seq,
          });
          heap.simd.causalExp(pBlock, rows, r0, r1, seq, lse0 + at.lse + 4 * r0);
          // dP = dO·vᵀ, then softmax backward in place: dS = scale·P·(dP − Σ_d dO·O)
          gemm({
            transA: PLAIN,
            transB: TRANSPOSED,
            m: rows,
            n: r1,
            k: d,
            alpha: 1,
            a: dy0 + at.q + qRows,
            lda: qStride,
            b: v0 + at.kv,
            ldb: kvStride,
            beta: 0,
            c: dsBlock,
            ldc: seq,
          });
          heap.simd.stridedDots(dy0 + at.q + qRows, o0 + at.q + qRows, rows, d, 4 * qStride, dot0);
          heap.simd.causalSoftmaxGrad(dsBlock, pBlock, rows, r0, r1, seq, dot0, scale);
          // dq[r0, r1) = dS·k
          gemm({
            transA: PLAIN,
            transB: PLAIN,
            m: rows,
            n: d,
            k: r1,
            alpha: 1,
            a: dsBlock,
            lda: seq,
            b: k0 + at.kv,
            ldb: kvStride,
            beta: 0,
            c: dq0 + at.q + qRows,
            ldc: qStride,
          });
        }
        // dk and dv of a kv head sum over its group's query heads; the first one writes.
        const beta = h % group === 0 ? 0 : 1;
        for (const [c0, c1] of blocks(seq)) {
          const from = 4 * (c0 * seq + c0);
          for (const [src, rhs, out] of [[p0, dy0, dv0], [ds0, q0, dk0]] as const) {
            gemm({
              transA: TRANSPOSED,
              transB: PLAIN,
              m: c1 - c0,
              n: d,
              k: seq - c0,
              alpha: 1,
              a: src + from,
              lda: seq,
              b: rhs + at.q + 4 * c0 * qStride,
              ldb: qStride,
              beta,
              c: out + at.kv + 4 * c0 * kvStride,
              ldc: kvStride,
            });
          }
        }
      }
    }
    [p, ds, rowDot].forEach(heap.free);
    return [dq, dk, dv];
  };
}
