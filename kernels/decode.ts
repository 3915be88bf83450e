/**
 * Incremental decoding with a key/value cache: the keys (after RoPE) and values of every
 * position seen so far, per layer, so each new token costs one row through the model instead of
 * the whole prefix.
 *
 * The cache grows by concatenation (tfjs tensors are immutable, so a preallocated buffer would
 * be copied on every write anyway); a step copies the layer's cache once, which is small next
 * to the projections at the lengths a model's `maxSeqLen` allows. Keys and values are kept as
 * [kvHeads, length, headDim], the layout the attention products read, so a step transposes
 * only its own rows. Batch size is 1: one sequence.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { PLAIN, TRANSPOSED } from "./ops/flags.ts";
import { causalAttention } from "./ops/attention.ts";
import { type RopeTables, ropeTables } from "./ops/rope.ts";
import { decoderLayer, embedTokens, finalNorm, lmHead, type Model } from "./model.ts";
import { depthOf } from "../checkpoint/mod.ts";

/** One layer's cached keys (after RoPE) and values, each [kvHeads, length, headDim]. */
export interface LayerKv {
  readonly k: tf.Tensor3D;
  readonly v: tf.Tensor3D;
}

/** Keys and values of positions 0..length−1; `layers` is empty while nothing is cached. */
export interface KvCache {
  readonly length: number;
  readonly layers: readonly LayerKv[];
}

/** A cache after new tokens and the next-token logits [vocab] of the last one; the caller owns both. */
export interface Decoded {
  readonly cache: KvCache;
  readonly logits: tf.Tensor1D;
}

/** The cache of an empty context (holds no tensors). */
export function emptyCache(): KvCache {
  return { length: 0, layers: [] };
}

/** Frees the cache's tensors. */
export function disposeCache(cache: KvCache): void {
  for (const l of cache.layers) {
    l.k.dispose();
    l.v.dispose();
  }
}

/**
 * Attention of n queries at positions p..p+n−1 (q [n, heads, d]) over the cached keys and
 * values of positions 0..p+n−1 (k, v [kvHeads, p+n, d]); query i sees keys j ≤ p+i.
 * Returns [n, heads·d]. Query head h reads kv head ⌊h/G⌋, G = heads/kvHeads, as in
 * `causalAttention`: the G heads of a group are stacked as G·n rows against their kv head.
 */
function attendCached(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D): tf.Tensor2D {
  const [n, heads, d] = q.shape;
  const [kvHeads, total] = k.shape;
  const group = heads / kvHeads;
  const past = total - n;
  // (n, kvHeads, group, d) -> (kvHeads, group·n, d); with one query row that is a reshape, and
  // skipping the transposes saves two kernels per layer and token when decoding.
  const qRows = n === 1 ? tf.reshape(q, [kvHeads, group, d]) : tf.reshape(
    tf.transpose(tf.reshape(q, [n, kvHeads, group, d]), [1, 2, 0, 3]),
    [kvHeads, group * n, d],
  );
  let scores = tf.mul(tf.matMul(qRows, k, PLAIN, TRANSPOSED), 1 / Math.sqrt(d)); // (kvHeads, group·n, total)
  if (n > 1) {
    const mask = new Float32Array(group * n * total);
    for (let r = 0; r < group * n; r++) {
      // Same large finite value as the training mask: exp gives exactly 0, never inf − inf.
      for (let j = past + (r % n) + 1; j < total; j++) mask[r * total + j] = -1e9;
    }
    scores = tf.add(scores, tf.tensor2d(mask, [group * n, total]));
  }
  const out = tf.matMul(tf.softmax(scores), v); // (kvHeads, group·n, d)
  // (kvHeads, group, n, d) -> (n, kvHeads, group, d) = (n, heads·d)
  if (n === 1) return tf.reshape(out, [1, heads * d]);
  return tf.reshape(
    tf.transpose(tf.reshape(out, [kvHeads, group, n, d]), [2, 0, 1, 3]),
    [n, heads * d],
  );
}

/** The cache layout [kvHeads, n, d] of a layer's new keys or values x [1, n, kvHeads, d]. */
function kvRows(x: tf.Tensor4D): tf.Tensor3D {
  const [, n, kvHeads, d] = x.shape;
  if (n === 1) return tf.reshape(x, [kvHeads, 1, d]);
  return tf.transpose(tf.squeeze(x, [0]), [1, 0, 2]) as tf.Tensor3D;
}

/**
 * One decoder layer over n new rows h [n, hidden] at positions p..p+n−1: the training layer
 * with an attention that also sees the cached positions. Returns the layer's output and its
 * grown cache.
 */
function cachedLayer(
  model: Model,
  h: tf.Tensor2D,
  at: { readonly layer: number; readonly past: LayerKv | undefined; readonly tables: RopeTables },
): { readonly h: tf.Tensor2D; readonly kv: LayerKv } {
  const n = h.shape[0];
  const { past } = at;
  let kv: LayerKv | undefined;
  const attend = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D => {
    const kNew = kvRows(k);
    const vNew = kvRows(v);
    kv = past === undefined
      ? { k: kNew, v: vNew }
      : { k: tf.concat([past.k, kNew], 1), v: tf.concat([past.v, vNew], 1) };
    // An empty cache is the training case: the same (possibly fused) causal attention op.
    if (past === undefined) return causalAttention(q, k, v);
    const [, , heads, d] = q.shape;
    const att = attendCached(tf.reshape(q, [n, heads, d]) as tf.Tensor3D, kv.k, kv.v);
    return tf.reshape(att, [1, n, heads, d]) as tf.Tensor4D;
  };
  const out = decoderLayer(model, h, at.layer, { batch: 1, seq: n, tables: at.tables }, attend);
  return { h: out, kv: kv! };
}

/** The RoPE rows of positions p..p+n−1 (the values training's tables hold at those rows). */
function ropeAt(model: Model, past: number, n: number): RopeTables {
  const s = model.shape;
  return ropeTables(n, { headDim: s.hidden / s.heads, theta: s.ropeTheta, offset: past });
}

/**
 * Runs `tokens` (n ≥ 1 ids) at positions cache.length.. through the model, returning the cache
 * grown by n positions and the next-token logits of the last token. `cache` is consumed: its
 * tensors are freed (or live on inside the new cache); do not use or dispose it afterwards.
 *
 * @throws {Error} on an id outside the vocabulary, an empty `tokens`, or when the cache would
 * exceed the model's `maxSeqLen` (the caller decides what to drop: see `generate`).
 * @example
 * ```ts
 * import { disposeCache, emptyCache, extendCache } from "./decode.ts";
 * import { disposeParams, initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const first = extendCache(model, emptyCache(), [1, 2, 3]); // prefill
 * first.logits.dispose();
 * const next = extendCache(model, first.cache, [4]); // one decoding step
 * console.assert(next.cache.length === 4 && next.logits.shape[0] === 11);
 * next.logits.dispose();
 * disposeCache(next.cache);
 * disposeParams(model.params);
 * ```
 */
export function extendCache(model: Model, cache: KvCache, tokens: ArrayLike<number>): Decoded {
  const s = model.shape;
  const n = tokens.length;
  if (n === 0) throw new Error("extendCache: no tokens");
  if (cache.length + n > s.maxSeqLen) {
    throw new Error(
      `Cannot decode ${n} more tokens after ${cache.length}: the model's maxSeqLen is ${s.maxSeqLen}`,
    );
  }
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    if (!(Number.isInteger(t) && t >= 0 && t < s.vocab)) {
      throw new Error(`Token id ${t} is outside [0, ${s.vocab})`);
    }
  }
  const depth = cache.layers.length || depthOf(model.params.keys());
  const layers: LayerKv[] = [];
  let tables: RopeTables | undefined;
  let h: tf.Tensor2D | undefined;
  try {
    tables = ropeAt(model, cache.length, n);
    h = tf.tidy(() => embedTokens(model, tf.tensor1d(Int32Array.from(tokens), "int32")));
    for (let i = 0; i < depth; i++) {
      const prev: tf.Tensor2D = h;
      const rope = tables;
      const out = tf.tidy(() => {
        const r = cachedLayer(model, prev, { layer: i, past: cache.layers[i], tables: rope });
        return { h: r.h, k: r.kv.k, v: r.kv.v };
      });
      prev.dispose();
      h = out.h;
      layers.push({ k: out.k, v: out.v });
    }
    const states = h;
    const logits = tf.tidy(() => {
      // Only the last position's logits are needed: the head runs on one row.
      const last = finalNorm(model, tf.slice(states, [n - 1, 0], [1, s.hidden]));
      return tf.reshape(lmHead(model, last), [s.vocab]) as tf.Tensor1D;
    });
    disposeCache(cache);
    return { cache: { length: cache.length + n, layers }, logits };
  } catch (e) {
    disposeCache({ length: 0, layers });
    throw e;
  } finally {
    h?.dispose();
    tables?.cos.dispose();
    tables?.sin.dispose();
  }
}

/** {@link extendCache} from an empty cache: the prompt's cache and its next-token logits. */
export function prefill(model: Model, tokens: ArrayLike<number>): Decoded {
  return extendCache(model, emptyCache(), tokens);
}

/** {@link extendCache} by one token. */
export function decodeStep(model: Model, cache: KvCache, token: number): Decoded {
  return extendCache(model, cache, [token]);
}
