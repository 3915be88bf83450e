/**
 * Choosing the next token from a row of logits: greedy, or a seeded draw after temperature,
 * top-k and top-p (nucleus) filtering, applied in that order (Hugging Face's `generate`
 * order). Pure functions over plain arrays; probabilities are computed in float64.
 *
 * @module
 */
import { argmax, type Rng } from "../base/mod.ts";

/** How the next token is chosen; the defaults leave the distribution as the model gives it. */
export interface SamplingOptions {
  /** Divides the logits; 0 (or below) is greedy. Default 1. */
  readonly temperature?: number;
  /** Keep only the k most likely tokens; 0 or unset: no limit. */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 or unset: all. */
  readonly topP?: number;
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
  const limited = topK > 0 && topK < v;
  // With top-k, only the k largest logits (sorted); without, every index.
  const kept = limited ? largest(logits, (idx) => idx.length >= topK).slice(0, topK) : undefined;
  const count = kept?.length ?? v;
  const at = kept === undefined ? (j: number) => j : (j: number) => kept[j]!;
  let max = -Infinity;
  for (let j = 0; j < count; j++) max = Math.max(max, logits[at(j)]!);
  let sum = 0;
  for (let j = 0; j < count; j++) {
    const e = Math.exp((logits[at(j)]! - max) / temperature);
    probs[at(j)] = e;
    sum += e;
  }
  for (let j = 0; j < count; j++) probs[at(j)]! /= sum;
  if (topP >= 1) return probs;
  // Probability falls with the logit, so the nucleus is a prefix of the order by logit.
  const massOf = (idx: readonly number[]) => idx.reduce((m, i) => m + probs[i]!, 0);
  const order = kept ?? largest(logits, (idx) => massOf(idx) >= topP);
  let mass = 0;
  let end = 0;
  while (end < order.length && mass < topP) mass += probs[order[end++]!]!;
  const nucleus = new Float64Array(v);
  for (let j = 0; j < end; j++) nucleus[order[j]!] = probs[order[j]!]! / mass;
  return nucleus;
}

/**
 * The indices whose values lie within a gap of the maximum, the gap doubling until `enough`
 * holds (or every index is in), sorted by decreasing value, lower index first on ties. Only
 * the candidates are sorted: with a 50K vocabulary a full sort per token would cost more than
 * the model's step.
 */
function largest(values: ArrayLike<number>, enough: (idx: readonly number[]) => boolean): number[] {
  let max = -Infinity;
  let min = Infinity;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (x > max) max = x;
    if (x < min && x > -Infinity) min = x;
  }
  let idx: number[] = [];
  for (let gap = 1;; gap *= 2) {
    const t = max - gap;
    idx = [];
    if (!(t >= min)) {
      // Every index, those at −∞ (masked ids) included.
      for (let i = 0; i < values.length; i++) idx.push(i);
    } else {
      for (let i = 0; i < values.length; i++) if (values[i]! >= t) idx.push(i);
    }
    if (idx.length === values.length || enough(idx)) break;
  }
  return idx.sort((a, b) => values[b]! - values[a]! || a - b);
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
