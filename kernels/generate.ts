/**
 * Autoregressive generation: prefill the prompt, then one token at a time through the key/value
 * cache (`decode.ts`), or, without the cache, the whole window again through the model each
 * step, the LM head on its last position (the reference the cached path is tested against).
 *
 * Context policy: the model conditions on at most `maxSeqLen` tokens. A longer prompt keeps its
 * last `maxSeqLen` tokens. When a generated token would overflow the window, the window slides:
 * it restarts at the last `slideKeep` tokens (default ⌊maxSeqLen/2⌋), which are prefilled
 * again at positions 0.., so a slide costs one prefill per `maxSeqLen − slideKeep` tokens
 * instead of one per token. `overflow: "stop"` ends generation there instead. Both paths
 * follow the same windows, so their tokens agree.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { createRng, nonFiniteIndex } from "../base/mod.ts";
import * as E from "fp-ts/lib/Either.js";
import { decodeStep, disposeCache, type KvCache, prefill } from "./decode.ts";
import { openRowDecoder, type RowDecoder } from "./row_decoder.ts";
import { logitsAt, type Model } from "./model.ts";
import { sampleToken, type SamplingOptions, samplingProblem } from "./sampling.ts";

/** What {@link generate} does; sampling options as in `sampling.ts` (default: temperature 1). */
export interface GenerateOptions extends SamplingOptions {
  /** At most this many new tokens. */
  readonly maxNewTokens: number;
  /** Seed of the sampling stream (unused when greedy). Default 0. */
  readonly seed?: number;
  /** Ids that end generation when chosen (e.g. the tokenizer's end-of-text); not emitted. */
  readonly stopIds?: readonly number[];
  /** Use the key/value cache (default) or recompute the window every step. */
  readonly cache?: boolean;
  /**
   * With the cache, decode each new token through `row_decoder.ts` where the backend allows
   * (wasm with OpenBLAS; default) or always through tfjs ops (`false`: the reference path).
   */
  readonly rowDecoder?: boolean;
  /**
   * The memory the machine can give this process now (the row decoder packs its weights within
   * a quarter of it; see `RowDecoderOptions.availableBytes`).
   */
  readonly availableBytes?: number;
  /** When the window is full: slide it (default) or stop. */
  readonly overflow?: "slide" | "stop";
  /** Tokens kept when the window slides; default ⌊maxSeqLen/2⌋ (at least 1). */
  readonly slideKeep?: number;
  /** Only ids below this are chosen (a tokenizer smaller than the model's padded vocabulary). */
  readonly vocabLimit?: number;
}

/**
 * Why generation ended: the token limit, a stop id, a full window under `overflow: "stop"`, or
 * the caller's `onToken` asked to stop.
 */
export type StopReason = "length" | "stop-id" | "context" | "caller";

/** The new tokens and why generation ended. */
export interface Generation {
  /** New ids, without the stop id. */
  readonly ids: readonly number[];
  readonly stop: StopReason;
  /** The stop id that ended generation (`stop` is "stop-id"). */
  readonly stopId?: number;
  /** How many times the window was prefilled (1 + slides; with the cache off, 0). */
  readonly prefills: number;
}

/**
 * The logits a new token would be chosen from hold a NaN or an infinity (among the ids that can
 * be chosen): every choice would be arbitrary (an argmax over NaN is id 0), so generation stops.
 */
export class NonFiniteLogits extends Error {
  constructor(
    /** Which new token (1 for the first) was being chosen. */
    readonly token: number,
    readonly id: number,
    readonly value: number,
  ) {
    super(`the logits for new token ${token} are not finite (${value} for id ${id})`);
    this.name = "NonFiniteLogits";
  }
}

/** Called with each new token (and its index); returning true stops generation after it. */
export type OnToken = (id: number, index: number) => boolean | void;

/** The next-token logits after `window`: the LM head on its last position only. */
async function lastLogits(model: Model, window: readonly number[]): Promise<Float32Array> {
  const input = { tokens: Int32Array.from(window), batch: 1, seq: window.length };
  return await read(logitsAt(model, input, [window.length - 1]));
}

/**
 * Generates up to `maxNewTokens` after `prompt` (at least one id), calling `onToken` with each.
 *
 * @throws {Error} on unusable options, an empty prompt, or ids outside the vocabulary;
 *   {@link NonFiniteLogits} when the model's logits are not finite.
 * @example
 * ```ts
 * import { generate } from "./generate.ts";
 * import { disposeParams, initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const out = await generate(model, [1, 2, 3], { maxNewTokens: 5, temperature: 0 });
 * console.assert(out.ids.length === 5 && out.stop === "length");
 * disposeParams(model.params);
 * ```
 */
export async function generate(
  model: Model,
  prompt: ArrayLike<number>,
  options: GenerateOptions,
  onToken?: OnToken,
): Promise<Generation> {
  const problem = samplingProblem(options);
  if (problem !== undefined) throw new Error(`Cannot generate: ${problem}`);
  if (!(Number.isInteger(options.maxNewTokens) && options.maxNewTokens >= 0)) {
    throw new Error(`Cannot generate: maxNewTokens must be an integer ≥ 0`);
  }
  if (prompt.length === 0) throw new Error("Cannot generate: the prompt has no tokens");
  const maxSeq = model.shape.maxSeqLen;
  const keep = options.slideKeep ?? Math.max(1, Math.floor(maxSeq / 2));
  if (!(Number.isInteger(keep) && keep >= 1 && keep < maxSeq)) {
    throw new Error(`Cannot generate: slideKeep must be in [1, ${maxSeq}), got ${keep}`);
  }
  const stopIds = new Set(options.stopIds ?? []);
  const useCache = options.cache ?? true;
  const rng = createRng(options.seed ?? 0);
  const all = Array.from(prompt);
  // The model conditions on all[start..].
  let start = Math.max(0, all.length - maxSeq);
  const ids: number[] = [];
  let cache: KvCache | undefined;
  let prefills = 0;
  const opened = useCache && options.rowDecoder !== false
    ? openRowDecoder(model, {
      ...(options.availableBytes === undefined ? {} : { availableBytes: options.availableBytes }),
    })
    : undefined;
  const rows: RowDecoder | undefined = opened !== undefined && E.isRight(opened)
    ? opened.right
    : undefined;

  const refill = async (): Promise<Float32Array> => {
    const window = all.slice(start);
    if (!useCache) return await lastLogits(model, window);
    if (cache !== undefined) disposeCache(cache);
    cache = undefined;
    const r = prefill(model, window);
    prefills++;
    if (rows !== undefined) {
      // The prompt goes through tfjs as one matrix product; the row decoder takes its cache.
      try {
        rows.load(r.cache);
      } finally {
        disposeCache(r.cache);
      }
    } else {
      cache = r.cache;
    }
    return await read(r.logits);
  };

  try {
    let logits = await refill();
    while (ids.length < options.maxNewTokens) {
      const choosable = options.vocabLimit ?? logits.length;
      logits.fill(-Infinity, choosable);
      const bad = nonFiniteIndex(logits.subarray(0, choosable));
      if (bad >= 0) throw new NonFiniteLogits(ids.length + 1, bad, logits[bad]!);
      const token = sampleToken(logits, options, rng);
      if (stopIds.has(token)) return { ids, stop: "stop-id", stopId: token, prefills };
      ids.push(token);
      all.push(token);
      if (onToken?.(token, ids.length - 1) === true) return { ids, stop: "caller", prefills };
      if (ids.length === options.maxNewTokens) break;
      if (all.length - start > maxSeq) {
        if (options.overflow === "stop") return { ids, stop: "context", prefills };
        start = all.length - keep;
        logits = await refill();
      } else if (rows !== undefined) {
        logits = rows.step(token);
      } else if (useCache) {
        const r = decodeStep(model, cache!, token);
        cache = r.cache;
        logits = await read(r.logits);
      } else {
        logits = await refill();
      }
    }
    return { ids, stop: "length", prefills };
  } finally {
    if (cache !== undefined) disposeCache(cache);
  }
}

async function read(logits: tf.Tensor): Promise<Float32Array> {
  try {
    return (await logits.data()) as Float32Array;
  } finally {
    logits.dispose();
  }
}
