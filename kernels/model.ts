/**
 * The LLaMA decoder over a parameter map: embedding, `depth` pre-norm layers
 * (RMSNorm → attention with RoPE → residual, RMSNorm → SwiGLU MLP →
 * residual), final RMSNorm, LM head (tied: the embedding transposed).
 *
 * Activations are 2-D [batch·seq, width] between blocks; attention sees
 * [batch, seq, heads, headDim].
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { PLAIN, TRANSPOSED } from "./ops/flags.ts";
import {
  EMBED,
  FINAL_NORM,
  layerNormNames,
  type LlamaShape,
  LM_HEAD,
  loraNames,
  type Projection,
  projectionWeight,
} from "../base/mod.ts";
import { causalAttention } from "./ops/attention.ts";
import { chunkedHeadLoss } from "./ops/chunked_loss.ts";
import { crossEntropySum } from "./ops/cross_entropy.ts";
import { embedding } from "./ops/embedding.ts";
import { linear, type LoraBranch } from "./ops/linear.ts";
import { rmsNorm } from "./ops/rms_norm.ts";
import { addKeepingNothing, reshapeKeepingNothing } from "./ops/shape_ops.ts";
import { rope, type RopeTables, ropeTables } from "./ops/rope.ts";
import { swiglu } from "./ops/swiglu.ts";
import { param, type Params } from "./params.ts";
import { depthOf } from "../checkpoint/mod.ts";
import { releaseDisposedGpuBuffers } from "./ops/release.ts";

/** What a forward pass needs: the shape, the weights, and the LoRA scale α/r. */
export interface Model {
  readonly shape: LlamaShape;
  readonly params: Params;
  /** Scale of every adapter branch present in `params` (α / r); unused without adapters. */
  readonly loraScale: number;
}

/** Token ids, row-major [batch, seq]. */
export interface TokenBatch {
  readonly tokens: Int32Array;
  readonly batch: number;
  readonly seq: number;
}

/** Inputs and next-token targets, row-major [batch, seq]; a negative target is ignored. */
export interface Batch extends TokenBatch {
  readonly targets: Int32Array;
}

/** The batch's shape and ids are what the model can take (an `Error` says what is wrong). */
export function checkBatch(shape: LlamaShape, b: Batch): void {
  checkTokens(shape, b);
  checkTargets(shape, b);
}

/** Number of targets that count towards the loss (those ≥ 0). */
export function validTargets(batch: Batch): number {
  let n = 0;
  for (const t of batch.targets) if (t >= 0) n++;
  return n;
}

function checkTokens(shape: LlamaShape, b: TokenBatch): void {
  if (b.tokens.length !== b.batch * b.seq) {
    throw new Error(`Batch has ${b.tokens.length} tokens, expected batch·seq = ${b.batch * b.seq}`);
  }
  if (b.seq > shape.maxSeqLen) {
    throw new Error(`Sequence length ${b.seq} exceeds the model's maxSeqLen ${shape.maxSeqLen}`);
  }
  for (const t of b.tokens) {
    if (!(t >= 0 && t < shape.vocab)) {
      throw new Error(`Token id ${t} is outside [0, ${shape.vocab})`);
    }
  }
}

function checkTargets(shape: LlamaShape, b: Batch): void {
  if (b.targets.length !== b.tokens.length) {
    throw new Error(`Batch has ${b.targets.length} targets for ${b.tokens.length} tokens`);
  }
  for (const t of b.targets) {
    if (t >= shape.vocab) throw new Error(`Target id ${t} is outside [0, ${shape.vocab})`);
  }
}

/** Projection `p` of layer `layer` on x [rows, in], with its LoRA branch when adapters are present. */
export function proj(model: Model, x: tf.Tensor2D, layer: number, p: Projection): tf.Tensor2D {
  const name = projectionWeight(layer, p);
  const w = param(model.params, name) as tf.Tensor2D;
  const ln = loraNames(name);
  const a = model.params.get(ln.a);
  const b = model.params.get(ln.b);
  if (a === undefined || b === undefined) return linear(x, w);
  const branch: LoraBranch = { a: a as tf.Tensor2D, b: b as tf.Tensor2D, scale: model.loraScale };
  return linear(x, w, branch);
}

/** What every layer of one forward pass shares: the batch's geometry and the RoPE tables. */
export interface LayerContext {
  readonly batch: number;
  readonly seq: number;
  readonly tables: RopeTables;
}

/** The context of a batch of `seq` positions; the caller disposes its tables. */
export function layerContext(shape: LlamaShape, batch: number, seq: number): LayerContext {
  return {
    batch,
    seq,
    tables: ropeTables(seq, { headDim: shape.hidden / shape.heads, theta: shape.ropeTheta }),
  };
}

/** Token embeddings [batch·seq, hidden] of `tokens` (int32, [batch·seq]). */
export function embedTokens(model: Model, tokens: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => embedding(param(model.params, EMBED) as tf.Tensor2D, tokens));
}

/**
 * Attention of rotated queries and keys and the values, each [batch, seq, heads or kvHeads,
 * headDim], to [batch, seq, heads, headDim]. Training uses {@link causalAttention}; decoding
 * with a key/value cache passes one that also sees the cached positions.
 */
export type Attend = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

/** Decoder layer `layer` on hidden states h [batch·seq, hidden]. */
export function decoderLayer(
  model: Model,
  h: tf.Tensor2D,
  layer: number,
  ctx: LayerContext,
  attend: Attend = causalAttention,
): tf.Tensor2D {
  const s = model.shape;
  const headDim = s.hidden / s.heads;
  const n = ctx.batch * ctx.seq;
  const eps = s.rmsNormEps;
  const norms = layerNormNames(layer);
  const a = rmsNorm(h, param(model.params, norms.input) as tf.Tensor1D, { eps });
  const q = reshapeKeepingNothing<tf.Rank.R4>(proj(model, a, layer, "q"), [
    ctx.batch,
    ctx.seq,
    s.heads,
    headDim,
  ]) as tf.Tensor4D;
  const k = reshapeKeepingNothing<tf.Rank.R4>(proj(model, a, layer, "k"), [
    ctx.batch,
    ctx.seq,
    s.kvHeads,
    headDim,
  ]) as tf.Tensor4D;
  const v = reshapeKeepingNothing<tf.Rank.R4>(proj(model, a, layer, "v"), [
    ctx.batch,
    ctx.seq,
    s.kvHeads,
    headDim,
  ]) as tf.Tensor4D;
  const att = attend(rope(q, ctx.tables), rope(k, ctx.tables), v);
  const flat = reshapeKeepingNothing<tf.Rank.R2>(att, [n, s.hidden]);
  const h1 = addKeepingNothing(h, proj(model, flat, layer, "o"));
  const m = rmsNorm(h1, param(model.params, norms.post) as tf.Tensor1D, { eps });
  const mlp = swiglu(proj(model, m, layer, "gate"), proj(model, m, layer, "up"));
  return addKeepingNothing(h1, proj(model, mlp, layer, "down"));
}

/** Final hidden states [batch·seq, hidden]; temporaries of each layer are freed as it ends. */
function hiddenStates(model: Model, input: TokenBatch): tf.Tensor2D {
  const s = model.shape;
  const depth = depthOf(model.params.keys());
  const ctx = layerContext(s, input.batch, input.seq);
  const tables = ctx.tables;
  let h = tf.tidy(() => embedTokens(model, tf.tensor1d(input.tokens, "int32")));
  for (let i = 0; i < depth; i++) {
    const prev = h;
    // Tensors the backward pass needs are kept by the tape; the rest (scores,
    // pre-rotation q/k, ...) die here instead of at the end of the step.
    h = tf.tidy(() => decoderLayer(model, prev, i, ctx));
    prev.dispose();
    releaseDisposedGpuBuffers();
  }
  const out = finalNorm(model, h);
  h.dispose();
  tables.cos.dispose();
  tables.sin.dispose();
  return out;
}

/** The final RMSNorm of the last layer's output. */
export function finalNorm(model: Model, h: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() =>
    rmsNorm(h, param(model.params, FINAL_NORM) as tf.Tensor1D, { eps: model.shape.rmsNormEps })
  );
}

/** How the loss is taken: the whole logits at once, or a few rows at a time. */
export interface LossOptions {
  /** Rows (tokens) per chunk of the LM head and cross-entropy; unset: all at once. */
  readonly chunk?: number;
  /** Whether the LM head (the embedding when tied) trains; a frozen one gets no gradient. */
  readonly headTrains?: boolean;
}

/** Σ of token cross-entropies of the normed final states `hf` against `targets` (int32). */
export function headLoss(
  model: Model,
  hf: tf.Tensor2D,
  targets: tf.Tensor1D,
  options: LossOptions = {},
): tf.Scalar {
  const chunk = options.chunk;
  if (chunk === undefined || chunk >= hf.shape[0]) {
    return tf.tidy(() => crossEntropySum(lmHead(model, hf), targets));
  }
  const tied = model.shape.tiedEmbeddings;
  const head = param(model.params, tied ? EMBED : LM_HEAD) as tf.Tensor2D;
  return chunkedHeadLoss(hf, head, targets, {
    chunk,
    tied,
    headTrains: options.headTrains ?? true,
  });
}

/** The LM head (the embedding transposed when tied) on normed final states h [rows, hidden]. */
export function lmHead(model: Model, h: tf.Tensor2D): tf.Tensor2D {
  return model.shape.tiedEmbeddings
    ? tf.matMul(h, param(model.params, EMBED) as tf.Tensor2D, PLAIN, TRANSPOSED)
    : tf.matMul(h, param(model.params, LM_HEAD) as tf.Tensor2D);
}

/**
 * Next-token logits [batch·seq, vocab] (row b·seq + t is position t of
 * sequence b); the caller owns the result. Works with or without a gradient
 * tape around it.
 *
 * @throws {Error} on a malformed batch (length, ids out of range, seq > maxSeqLen).
 * @example
 * ```ts
 * import { forwardLogits } from "./model.ts";
 * import { initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const logits = forwardLogits(model, { tokens: new Int32Array([1, 2, 3]), batch: 1, seq: 3 });
 * ```
 */
export function forwardLogits(model: Model, input: TokenBatch): tf.Tensor2D {
  checkTokens(model.shape, input);
  const h = hiddenStates(model, input);
  const logits = tf.tidy(() => lmHead(model, h));
  h.dispose();
  return logits;
}

/**
 * Next-token logits of some positions only, [rows.length, vocab] (row i is flat position
 * `rows[i]` = b·seq + t): the LM head runs on those rows alone, so scoring a few positions of a
 * long batch against a large vocabulary does not build the whole logits. The caller owns the
 * result.
 *
 * @throws {Error} on a malformed batch or a row outside it.
 */
export function logitsAt(model: Model, input: TokenBatch, rows: readonly number[]): tf.Tensor2D {
  checkTokens(model.shape, input);
  const n = input.batch * input.seq;
  for (const r of rows) {
    if (!(Number.isInteger(r) && r >= 0 && r < n)) throw new Error(`Row ${r} is outside [0, ${n})`);
  }
  const h = hiddenStates(model, input);
  const logits = tf.tidy(() => lmHead(model, tf.gather(h, tf.tensor1d([...rows], "int32"))));
  h.dispose();
  return logits;
}

/**
 * Σ of token cross-entropies over the batch's valid targets (a scalar the
 * caller owns); divide by {@link validTargets} for the mean. The logits live
 * only inside this call.
 *
 * @throws {Error} on a malformed batch.
 */
export function lossSum(model: Model, batch: Batch, options: LossOptions = {}): tf.Scalar {
  checkTokens(model.shape, batch);
  checkTargets(model.shape, batch);
  const h = hiddenStates(model, batch);
  const loss = tf.tidy(() => headLoss(model, h, tf.tensor1d(batch.targets, "int32"), options));
  h.dispose();
  return loss;
}

/** Mean cross-entropy over the batch's valid targets (NaN when there are none). */
export function lossOf(model: Model, batch: Batch): tf.Scalar {
  const sum = lossSum(model, batch);
  const mean = tf.div(sum, validTargets(batch)) as tf.Scalar;
  sum.dispose();
  return mean;
}
