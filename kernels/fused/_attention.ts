/**
 * `StepCausalAttention` and its gradient for the wasm backend: per (batch,
 * head), the heap sgemm (oneDNN or OpenBLAS) multiplies the strided head views in wasm memory in place
 * (no transposes, no copies), and ./_simd.ts does the causal softmax between
 * the products. The backward pass recomputes the probabilities from the saved
 * log-sum-exp instead of keeping batch·heads·seq² floats alive.
 *
 * The (batch, kv head) units are independent, so a call is cut into parts of
 * whole units (./_parts.ts) that the kernel pool's threads run side by side,
 * each with scratch of its own and single-threaded products.
 *
 * Queries go in blocks of `ATTENTION_BLOCK` rows (base/kernel_parts.ts), each
 * multiplied only against the keys it can see (rows [r0, r1) need keys
 * [0, r1)): about 5/8 of the full products' work at seq = 256, with the masked
 * upper blocks never computed. One block's scores are held at a time, so
 * scratch grows with BLOCK·seq, not seq² (at seq = 4096 the backward pass held
 * 134 MB a part, now 2 MB).
 * Private to `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { HeapSgemm, SgemmArgs } from "../blas/mod.ts";
import type { SimdKernels } from "./_simd.ts";
import { ATTENTION_BLOCK, attentionBlockRows, attentionScratch } from "../../base/mod.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** What an attention part runs on: a thread's kernels and sgemm, and the memory. */
export interface AttentionContext {
  readonly simd: SimdKernels;
  readonly sgemm: HeapSgemm;
  readonly memory: WebAssembly.Memory;
}

const PLAIN = false;
const TRANSPOSED = true;
const BLOCK = ATTENTION_BLOCK;

/** Shapes of one call and the element strides of a sequence position. */
export interface Dims {
  readonly batch: number;
  readonly seq: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly d: number;
  /** Floats between positions of q, o, dq (heads·d) and of k, v, dk, dv (kvHeads·d). */
  readonly qStride: number;
  readonly kvStride: number;
}

/** The dimensions of q [batch, seq, heads, d] and k [batch, seq, kvHeads, d]. */
export function dimsOf(q: tf.TensorInfo, k: tf.TensorInfo): Dims {
  const [batch, seq, heads, d] = q.shape as [number, number, number, number];
  return dims(batch, seq, heads, k.shape[2]!, d);
}

function dims(batch: number, seq: number, heads: number, kvHeads: number, d: number): Dims {
  return { batch, seq, heads, kvHeads, d, qStride: heads * d, kvStride: kvHeads * d };
}

/** The dimensions as job arguments, and back. */
export function dimArgs(x: Dims): number[] {
  return [x.batch, x.seq, x.heads, x.kvHeads, x.d];
}

/** The dimensions from job arguments `at`…`at + 4`. */
export function dimsAt(a: Float64Array, at: number): Dims {
  return dims(a[at]!, a[at + 1]!, a[at + 2]!, a[at + 3]!, a[at + 4]!);
}

/** The units a call is cut into: (batch, kv head) pairs, whose heads write the same dk, dv. */
export function unitsOf(x: Dims): number {
  return x.batch * x.kvHeads;
}

/** Rows of one query block: the scratch holds one block's scores at a time. */
function blockRows(x: Dims): number {
  return attentionBlockRows(x.seq);
}

/** Floats of scratch one part of the forward pass uses: a block's scores, row maxima and sums. */
export function forwardScratch(x: Dims): number {
  return attentionScratch(x.seq).forward;
}

/** Floats of scratch one part of the backward pass uses: a block's P and dS, its row dots. */
export function backwardScratch(x: Dims): number {
  return attentionScratch(x.seq).backward;
}

/** The named inputs of a kernel call. */
export function inputs(args: KernelArgs, names: readonly string[]): tf.TensorInfo[] {
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

/** The (batch, head) pairs of units [u0, u1), in order: a kv head's query heads together. */
function* headsOf(x: Dims, u0: number, u1: number): Generator<[number, number]> {
  const group = x.heads / x.kvHeads;
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / x.kvHeads);
    const kv = u % x.kvHeads;
    for (let h = kv * group; h < (kv + 1) * group; h++) yield [b, h];
  }
}

/**
 * Forward over units [u0, u1). Arguments: q, k, v, o, lse, then batch, seq, heads, kvHeads,
 * d, then scale and the byte offset of this part's {@link forwardScratch} floats.
 */
export function forwardUnits(
  c: AttentionContext,
  a: Float64Array,
  u0: number,
  u1: number,
  scratch: number,
): void {
  const [q0, k0, v0, o0, lse0] = [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!];
  const x = dimsAt(a, 5);
  const scale = a[10]!;
  const { seq, d, qStride, kvStride } = x;
  const s0 = scratch;
  const max0 = s0 + 4 * blockRows(x) * seq;
  const sum0 = max0 + 4 * seq;
  const bytes = new Uint8Array(c.memory.buffer);
  const f = new Float32Array(c.memory.buffer);
  const gemm = (g: SgemmArgs): void => c.sgemm(bytes, g);
  for (const [b, h] of headsOf(x, u0, u1)) {
    const at = headOf(x, b, h);
    for (const [r0, r1] of blocks(seq)) {
      const rows = r1 - r0;
      const sBlock = s0;
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
      c.simd.causalSoftmax(sBlock, rows, r0, r1, seq, max0 + 4 * r0, sum0 + 4 * r0);
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

/**
 * Backward over units [u0, u1). Arguments: dy, q, k, v, o, lse, dq, dk, dv, then batch, seq,
 * heads, kvHeads, d, then scale and the byte offset of this part's {@link backwardScratch}
 * floats. Per head and row block [r0, r1): P and dS of the block (the keys it sees), dq of its
 * rows, and its share of dk and dv over keys [0, r1), added to what earlier blocks wrote.
 */
export function backwardUnits(
  c: AttentionContext,
  a: Float64Array,
  u0: number,
  u1: number,
  scratch: number,
): void {
  const [dy0, q0, k0, v0, o0, lse0, dq0, dk0, dv0] = [
    a[0]!,
    a[1]!,
    a[2]!,
    a[3]!,
    a[4]!,
    a[5]!,
    a[6]!,
    a[7]!,
    a[8]!,
  ];
  const x = dimsAt(a, 9);
  const scale = a[14]!;
  const { seq, heads, kvHeads, d, qStride, kvStride } = x;
  const group = heads / kvHeads;
  const pBlock = scratch;
  const dsBlock = pBlock + 4 * blockRows(x) * seq;
  const dot0 = dsBlock + 4 * blockRows(x) * seq;
  const bytes = new Uint8Array(c.memory.buffer);
  const gemm = (g: SgemmArgs): void => c.sgemm(bytes, g);
  for (const [b, h] of headsOf(x, u0, u1)) {
    const at = headOf(x, b, h);
    const first = h % group === 0;
    for (const [r0, r1] of blocks(seq)) {
      const rows = r1 - r0;
      const qRows = 4 * r0 * qStride;
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
      c.simd.causalExp(pBlock, rows, r0, r1, seq, lse0 + at.lse + 4 * r0);
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
      c.simd.stridedDots(dy0 + at.q + qRows, o0 + at.q + qRows, rows, d, 4 * qStride, dot0);
      c.simd.causalSoftmaxGrad(dsBlock, pBlock, rows, r0, r1, seq, dot0, scale);
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
      // dv += Pᵀ·dO and dk += dSᵀ·q over keys [0, r1). Keys [r0, r1) are new to this block:
      // the group's first head writes them (beta 0); everything else adds.
      for (const [src, rhs, out] of [[pBlock, dy0, dv0], [dsBlock, q0, dk0]] as const) {
        const spans: [number, number, number][] = first ? [[0, r0, 1], [r0, r1, 0]] : [[0, r1, 1]];
        for (const [c0, c1, beta] of spans) {
          gemm({
            transA: TRANSPOSED,
            transB: PLAIN,
            m: c1 - c0,
            n: d,
            k: rows,
            alpha: 1,
            a: src + 4 * c0,
            lda: seq,
            b: rhs + at.q + qRows,
            ldb: qStride,
            beta,
            c: out + at.kv + 4 * c0 * kvStride,
            ldc: kvStride,
          });
        }
      }
    }
  }
}
