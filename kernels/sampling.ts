/**
 * Choosing the next token from a row of logits: greedy, or a seeded draw after temperature,
 * top-k and top-p (nucleus) filtering, applied in that order (Hugging Face's `generate`
 * order). Pure functions over plain arrays; probabilities are computed in float64.
 *
 * @module
 */
import type { Rng } from "../base/mod.ts";

/** How the next token is chosen; the defaults leave the distribution as the model gives it. */
export interface SamplingOptions {
  /** Divides the logits; 0 (or below) is greedy. Default 1. */
  readonly temperature?: number;
  /** Keep only the k most likely tokens; 0 or unset: no limit. */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 or unset: all. */
  readonly topP?: number;
}

/**
 * The index of the largest logit (the first one on ties).
 *
 * @example
 * ```ts
 * import { argmax } from "./sampling.ts";
 * console.assert(argmax(new Float32Array([0, 3, 1, 3])) === 1);
 * ```
 */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** Whether these options choose greedily (no randomness is used). */
export function isGreedy(options: SamplingOptions): boolean {
  return (options.temperature ?? 1) <= 0 || options.topK === 1;
}

/**
 * The checked options: a problem in words (naming the option), or undefined when they are usable.
 *
 * @example
 * ```ts
 * import { samplingProblem } from "./sampling.ts";
 * console.assert(samplingProblem({ topP: 1.5 }) !== undefined);
 * ```
 */
export function samplingProblem(options: SamplingOptions): string | undefined {
  const { temperature, topK, topP } = options;
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) {
    return `temperature must be a finite number ≥ 0, got ${temperature}`;
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0)) {
    return `top-k must be an integer ≥ 0, got ${topK}`;
  }
  if (topP !== undefined && !(topP > 0 && topP <= 1)) {
    return `top-p must lie in (0, 1], got ${topP}`;
  }
  return undefined;
}

/**
 * The distribution a draw is made from: softmax(logits / temperature) restricted to the top-k
 * tokens, then to the nucleus of mass topP, renormalised; excluded tokens get 0. Ties at a
 * cut keep the lower index. Greedy options give a one-hot vector at {@link argmax}.
 *
 * @example
 * ```ts
 * import { samplingDistribution } from "./sampling.ts";
 * const p = samplingDistribution(new Float32Array([0, Math.log(3)]), {});
 * console.assert(Math.abs(p[1]! - 0.75) < 1e-12);
 * ```
 */
export function samplingDistribution(
  logits: ArrayLike<number>,
  options: SamplingOptions,
): Float64Array {
  const v = logits.length;
  const probs = new Float64Array(v);
  if (isGreedy(options)) {
    probs[argmax(logits)] = 1;
    return probs;
  }
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  let kept: number[];
  if (topK > 0 && topK < v) kept = byLogit(logits).slice(0, topK);
  else if (topP < 1) kept = byLogit(logits);
  else kept = Array.from({ length: v }, (_, i) => i);
  let max = -Infinity;
  for (const i of kept) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (const i of kept) {
    const e = Math.exp((logits[i]! - max) / temperature);
    probs[i] = e;
    sum += e;
  }
  for (const i of kept) probs[i]! /= sum;
  if (topP < 1) {
    // `kept` is sorted by logit, hence by probability: the nucleus is a prefix.
    let mass = 0;
    let end = 0;
    while (end < kept.length && mass < topP) mass += probs[kept[end++]!]!;
    for (let j = end; j < kept.length; j++) probs[kept[j]!] = 0;
    for (let j = 0; j < end; j++) probs[kept[j]!]! /= mass;
  }
  return probs;
}

/** Indices by decreasing logit, lower index first on ties. */
function byLogit(logits: ArrayLike<number>): number[] {
  const idx = Array.from({ length: logits.length }, (_, i) => i);
  return idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
}

/**
 * The next token: {@link argmax} when greedy (the generator is not advanced), else one draw
 * from {@link samplingDistribution} with one `rng.nextFloat()`.
 *
 * @example
 * ```ts
 * import { createRng } from "../base/mod.ts";
 * import { sampleToken } from "./sampling.ts";
 * const logits = new Float32Array([0.1, 2, 0.3]);
 * console.assert(sampleToken(logits, { temperature: 0 }, createRng(1)) === 1);
 * const t = sampleToken(logits, { temperature: 0.8, topP: 0.9 }, createRng(1)); // seeded draw
 * ```
 */
export function sampleToken(
  logits: ArrayLike<number>,
  options: SamplingOptions,
  rng: Rng,
): number {
  if (isGreedy(options)) return argmax(logits);
  const probs = samplingDistribution(logits, options);
  const u = rng.nextFloat();
  let acc = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    acc += probs[i]!;
    last = i;
    if (u < acc) return i;
  }
  // Rounding can leave Σp a hair below u: the last token with mass takes the remainder.
  return last;
}
