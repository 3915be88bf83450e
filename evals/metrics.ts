/**
 * Task metrics as lm-evaluation-harness computes them: accuracy and length-normalised accuracy
 * with the standard error of the mean, LAMBADA's greedy accuracy and target perplexity, and a
 * document set's token perplexity, word perplexity and bits per byte.
 *
 * @module
 */
import { argmax, mean, sampleStd } from "../base/mod.ts";
import { PY_SPACE } from "./requests.ts";

/** The score of one continuation: Σ log p over its tokens, and whether each was the argmax. */
export interface ContinuationScore {
  /** Σ log p of the continuation's tokens, in nats (≤ 0). */
  readonly logprob: number;
  /** Whether every one of its tokens was the model's most likely token at its position. */
  readonly greedy: boolean;
  /** Tokens scored. */
  readonly tokens: number;
}

/**
 * Standard error of the mean with the sample standard deviation (n − 1), the harness's
 * `mean_stderr`; NaN below two values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stderrOfMean } from "./metrics.ts";
 * assert(Math.abs(stderrOfMean([0, 1, 1, 0]) - Math.sqrt(1 / 3 / 4)) < 1e-12);
 * ```
 */
export function stderrOfMean(xs: readonly number[]): number {
  return sampleStd(xs) / Math.sqrt(xs.length);
}

/** Accuracy metrics of a choice task. */
export interface ChoiceMetrics {
  /** Share of items whose gold choice has the highest log-likelihood. */
  readonly acc: number;
  /** Share of items whose gold choice has the highest log-likelihood per character. */
  readonly acc_norm: number;
  /** Standard error of the mean of each (NaN below two items). */
  readonly stderr: { readonly acc: number; readonly acc_norm: number };
  /** Expected accuracy of guessing: the mean of 1 / choices. */
  readonly chance: number;
  /** Items scored. */
  readonly n: number;
}

/** One choice item's scores: the log-likelihood of each option and its length in characters. */
export interface ChoiceOutcome {
  /** Log-likelihood of each option, in nats. */
  readonly logprobs: readonly number[];
  /** Characters of each option, which `acc_norm` divides by. */
  readonly lengths: readonly number[];
  /** Index of the right option, 0-based. */
  readonly gold: number;
}

/** Whether the item was right, unnormalised and normalised by characters. */
export function choiceCorrect(o: ChoiceOutcome): { acc: number; acc_norm: number } {
  const norm = o.logprobs.map((l, i) => l / Math.max(1, o.lengths[i]!));
  return {
    acc: argmax(o.logprobs) === o.gold ? 1 : 0,
    acc_norm: argmax(norm) === o.gold ? 1 : 0,
  };
}

/**
 * `acc` (the highest log-likelihood is gold) and `acc_norm` (the highest log-likelihood per
 * character of the choice), each with its standard error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { choiceMetrics } from "./metrics.ts";
 * const m = choiceMetrics([
 *   { logprobs: [-1, -2], lengths: [1, 10], gold: 0 },
 *   { logprobs: [-3, -4], lengths: [1, 10], gold: 1 },
 * ]);
 * assert.equal(m.acc, 0.5);
 * assert.equal(m.acc_norm, 0.5);
 * assert.equal(m.chance, 0.5);
 * ```
 */
export function choiceMetrics(outcomes: readonly ChoiceOutcome[]): ChoiceMetrics {
  const acc: number[] = [];
  const norm: number[] = [];
  for (const o of outcomes) {
    const c = choiceCorrect(o);
    acc.push(c.acc);
    norm.push(c.acc_norm);
  }
  return {
    acc: mean(acc),
    acc_norm: mean(norm),
    stderr: { acc: stderrOfMean(acc), acc_norm: stderrOfMean(norm) },
    chance: mean(outcomes.map((o) => 1 / o.logprobs.length)),
    n: outcomes.length,
  };
}

/** LAMBADA's metrics. */
export interface TargetMetrics {
  /** Share of targets whose every token was the argmax. */
  readonly acc: number;
  /** Standard error of the mean of `acc` (NaN below two items). */
  readonly stderr: { readonly acc: number };
  /** exp(−mean over items of the target's log-likelihood), the harness's `perplexity`. */
  readonly perplexity: number;
  /** Items scored. */
  readonly n: number;
}

/** Greedy accuracy and target perplexity of LAMBADA-style items. */
export function targetMetrics(scores: readonly ContinuationScore[]): TargetMetrics {
  const acc = scores.map((s) => (s.greedy ? 1 : 0));
  return {
    acc: mean(acc),
    stderr: { acc: stderrOfMean(acc) },
    perplexity: Math.exp(-mean(scores.map((s) => s.logprob))),
    n: scores.length,
  };
}

/** One document's rolling log-likelihood and its sizes. */
export interface DocumentScore {
  /** Σ log p of every token of the document, in nats. */
  readonly logprob: number;
  /** Tokens scored. */
  readonly tokens: number;
  /** Whitespace-separated words, as the harness counts them. */
  readonly words: number;
  /** UTF-8 bytes. */
  readonly bytes: number;
}

/** Perplexity metrics of a document set: each is pooled over all documents. */
export interface PerplexityMetrics {
  /** exp(−Σ log p / tokens): depends on the tokeniser. */
  readonly token_perplexity: number;
  /** exp(−Σ log p / words): comparable across tokenisers. */
  readonly word_perplexity: number;
  /** exp(−Σ log p / bytes): comparable across tokenisers. */
  readonly byte_perplexity: number;
  /** −Σ log p / bytes / ln 2. */
  readonly bits_per_byte: number;
  /** Documents. */
  readonly n: number;
  /** Tokens scored, over all documents. */
  readonly tokens: number;
  /** Whitespace-separated words, over all documents. */
  readonly words: number;
  /** UTF-8 bytes, over all documents. */
  readonly bytes: number;
}

const SPACES = new RegExp(`[${PY_SPACE}]+`, "u");

/** The words of a document as the harness counts them (`re.split(r"\s+", doc)`, Python's `\s`). */
export function wordCount(text: string): number {
  return text.split(SPACES).length;
}

/**
 * Pooled perplexities: exp(−Σ log p / Σ units) per token, word and byte, and bits per byte
 * (−Σ log p / Σ bytes / ln 2), so models with different tokenisers compare on words and bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { perplexityMetrics } from "./metrics.ts";
 * const m = perplexityMetrics([{ logprob: -Math.LN2 * 8, tokens: 8, words: 2, bytes: 8 }]);
 * assert(Math.abs(m.bits_per_byte - 1) < 1e-12 && Math.abs(m.token_perplexity - 2) < 1e-12);
 * ```
 */
export function perplexityMetrics(docs: readonly DocumentScore[]): PerplexityMetrics {
  const sum = (f: (d: DocumentScore) => number) => docs.reduce((a, d) => a + f(d), 0);
  const ll = sum((d) => d.logprob);
  const tokens = sum((d) => d.tokens);
  const words = sum((d) => d.words);
  const bytes = sum((d) => d.bytes);
  return {
    token_perplexity: Math.exp(-ll / tokens),
    word_perplexity: Math.exp(-ll / words),
    byte_perplexity: Math.exp(-ll / bytes),
    bits_per_byte: -ll / bytes / Math.LN2,
    n: docs.length,
    tokens,
    words,
    bytes,
  };
}

/** What one task measured, by kind. */
export type TaskMetrics =
  | ({ readonly kind: "choice" } & ChoiceMetrics)
  | ({ readonly kind: "target" } & TargetMetrics)
  | (
    & { readonly kind: "documents"; readonly window: number; readonly stride: number }
    & PerplexityMetrics
  );

/**
 * The first value of `m` a report shows as a result that is not finite, with its name: such a
 * value is an error, never a number in a table. Standard errors are not results (below two
 * items they are undefined, NaN, and shown blank); counts are integers.
 *
 * @example
 * ```ts
 * import { nonFiniteMetric, perplexityMetrics } from "./metrics.ts";
 * const m = perplexityMetrics([{ logprob: -1e6, tokens: 1, words: 1, bytes: 1 }]);
 * const bad = nonFiniteMetric({ kind: "documents", window: 8, stride: 8, ...m });
 * console.assert(bad?.name === "token_perplexity" && bad.value === Infinity);
 * ```
 */
export function nonFiniteMetric(
  m: TaskMetrics,
): { readonly name: string; readonly value: number } | undefined {
  const shown: Record<string, number> = m.kind === "choice"
    ? { acc: m.acc, acc_norm: m.acc_norm, chance: m.chance }
    : m.kind === "target"
    ? { acc: m.acc, perplexity: m.perplexity }
    : {
      token_perplexity: m.token_perplexity,
      word_perplexity: m.word_perplexity,
      byte_perplexity: m.byte_perplexity,
      bits_per_byte: m.bits_per_byte,
    };
  const found = Object.entries(shown).find(([, v]) => !Number.isFinite(v));
  return found === undefined ? undefined : { name: found[0], value: found[1] };
}

/**
 * One item's scores as `deno task eval --items` writes them: a choice item's log-likelihood per
 * option and its gold index, a target's log-likelihood, greedy flag and tokens, or a
 * document's rolling log-likelihood and sizes ({@link DocumentScore}). Log-likelihoods in nats.
 */
export type ItemScore =
  | { readonly logprobs: readonly number[]; readonly gold: number }
  | ContinuationScore
  | DocumentScore;

/** One task's result. */
export interface TaskResult {
  /** The task's name, as its definition gives it. */
  readonly name: string;
  /** What the task measured, by kind. */
  readonly metrics: TaskMetrics;
  /** Scored requests (one per choice, target or window). */
  readonly requests: number;
  /** Wall-clock time the task took, in seconds. */
  readonly seconds: number;
  /** Each item's scores, in the data's order (what `--items` writes). */
  readonly items?: readonly ItemScore[];
}
