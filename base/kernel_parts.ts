/**
 * How the CPU engine's fused kernels cut their work, as plain numbers the kernels
 * (`kernels/fused/`) and the memory replay (`solvers/engine_memory.ts`) both read: a call big
 * enough is cut into parts, one per kernel-pool thread; causal attention goes in query blocks of
 * {@link ATTENTION_BLOCK} rows, holds one block's scores at a time, and has one scratch area per
 * part (a part takes whole (sequence, kv head) units).
 *
 * @module
 */

/**
 * Calls touching fewer elements than this run on the calling thread: handing one to the
 * kernel pool's workers costs 6–12 µs, what SwiGLU takes for ~16K elements.
 */
export const PARALLEL_FROM = 1 << 16;

/** Query rows per block: big enough for OpenBLAS to stay efficient, small enough to skip work. */
export const ATTENTION_BLOCK = 64;

/** Rows of one query block at sequence length `seq`: the block, or the whole sequence. */
export function attentionBlockRows(seq: number): number {
  return Math.min(ATTENTION_BLOCK, seq);
}

/** Floats of scratch one part uses in each pass at sequence length `seq`. */
export interface AttentionScratch {
  /** A block's scores, then each row's maximum and sum. */
  readonly forward: number;
  /** A block's probabilities and score gradients, and its rows' dot products. */
  readonly backward: number;
}

/**
 * Scratch floats of one part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attentionScratch } from "./kernel_parts.ts";
 * assert.deepEqual(attentionScratch(4096), { forward: 64 * 4096 + 2 * 4096, backward: 2 * 64 * 4096 + 64 });
 * assert.deepEqual(attentionScratch(10), { forward: 120, backward: 210 });
 * ```
 */
export function attentionScratch(seq: number): AttentionScratch {
  const rows = attentionBlockRows(seq);
  return { forward: rows * seq + 2 * seq, backward: 2 * rows * seq + rows };
}

/** The dimensions of one attention call. */
export interface AttentionCall {
  /** Sequences in the batch. */
  readonly sequences: number;
  /** Tokens per sequence. */
  readonly seq: number;
  /** Query heads. */
  readonly heads: number;
  /** Key and value heads (fewer under grouped-query attention). */
  readonly kvHeads: number;
  /** Floats per head. */
  readonly headDim: number;
}

/**
 * Parts an attention call runs in on `threads` threads: one below {@link PARALLEL_FROM}
 * multiply-adds of scores, else one per thread but never more than its (sequence, kv head) units.
 * The kernel allocates one {@link attentionScratch} per part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attentionParts } from "./kernel_parts.ts";
 * const call = { sequences: 8, seq: 256, heads: 4, kvHeads: 2, headDim: 64 };
 * assert.equal(attentionParts(2, call), 2);
 * assert.equal(attentionParts(32, call), 16);
 * assert.equal(attentionParts(2, { ...call, sequences: 1, seq: 8 }), 1);
 * ```
 */
export function attentionParts(threads: number, c: AttentionCall): number {
  const work = c.sequences * c.heads * c.seq * c.seq * c.headDim;
  if (work < PARALLEL_FROM) return 1;
  return Math.max(1, Math.min(threads, c.sequences * c.kvHeads));
}
