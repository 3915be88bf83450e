/**
 * How evaluation results are shown: a Markdown table (one row per metric, with its standard
 * error and the chance level where they exist) and one JSON object
 * `{ model, tokenizer, limit, tasks: { NAME: { acc, acc_norm, stderr, n, … } } }`.
 *
 * @module
 */
import type { TaskMetrics, TaskResult } from "../evals/mod.ts";

/** The model an evaluation ran on, as the report names it. */
export interface EvaluatedModel {
  /** The checkpoint path the model was read from. */
  readonly source: string;
  /** The checkpoint's format, e.g. `hf` or `step`. */
  readonly format: string;
  /** The tokeniser's name, e.g. `gpt2`. */
  readonly tokenizer: string;
  /** How the tokeniser was determined. */
  readonly tokenizerHow: string;
}

function num(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

/** A task's metrics as plain JSON (non-finite values as null). */
export function taskJson(r: TaskResult): Record<string, unknown> {
  const m = r.metrics;
  const base = { requests: r.requests, seconds: Number(r.seconds.toFixed(2)) };
  switch (m.kind) {
    case "choice":
      return {
        acc: num(m.acc),
        acc_norm: num(m.acc_norm),
        stderr: { acc: num(m.stderr.acc), acc_norm: num(m.stderr.acc_norm) },
        chance: num(m.chance),
        n: m.n,
        ...base,
      };
    case "target":
      return {
        acc: num(m.acc),
        stderr: { acc: num(m.stderr.acc) },
        perplexity: num(m.perplexity),
        n: m.n,
        ...base,
      };
    case "documents":
      return {
        word_perplexity: num(m.word_perplexity),
        token_perplexity: num(m.token_perplexity),
        byte_perplexity: num(m.byte_perplexity),
        bits_per_byte: num(m.bits_per_byte),
        n: m.n,
        tokens: m.tokens,
        words: m.words,
        bytes: m.bytes,
        window: m.window,
        stride: m.stride,
        ...base,
      };
  }
}

/** The whole evaluation as one JSON object. */
export function evalJson(
  model: EvaluatedModel,
  limit: number | undefined,
  results: readonly TaskResult[],
): Record<string, unknown> {
  return {
    model: model.source,
    format: model.format,
    tokenizer: { name: model.tokenizer, how: model.tokenizerHow },
    limit: limit ?? null,
    tasks: Object.fromEntries(results.map((r) => [r.name, taskJson(r)])),
  };
}

function rows(name: string, m: TaskMetrics): string[][] {
  const pct = (x: number) => (100 * x).toFixed(2);
  const se = (x: number) => (Number.isFinite(x) ? `± ${(100 * x).toFixed(2)}` : "");
  switch (m.kind) {
    case "choice":
      return [
        [name, String(m.n), "acc (%)", pct(m.acc), se(m.stderr.acc), pct(m.chance)],
        ["", "", "acc_norm (%)", pct(m.acc_norm), se(m.stderr.acc_norm), pct(m.chance)],
      ];
    case "target":
      return [
        [name, String(m.n), "acc (%)", pct(m.acc), se(m.stderr.acc), "0.00"],
        ["", "", "perplexity", m.perplexity.toFixed(2), "", ""],
      ];
    case "documents":
      return [
        [name, String(m.n), "word_perplexity", m.word_perplexity.toFixed(3), "", ""],
        ["", "", "token_perplexity", m.token_perplexity.toFixed(3), "", ""],
        ["", "", "bits_per_byte", m.bits_per_byte.toFixed(4), "", ""],
        ["", "", `(window ${m.window}, stride ${m.stride})`, "", "", ""],
      ];
  }
}

/**
 * A Markdown table of every task's metrics.
 *
 * @example
 * ```ts
 * import { evalTable } from "./eval_report.ts";
 * const t = evalTable([{ name: "piqa", requests: 4, seconds: 1, metrics: {
 *   kind: "choice", acc: 0.5, acc_norm: 0.5, stderr: { acc: 0.1, acc_norm: 0.1 }, chance: 0.5, n: 2,
 * } }]);
 * console.assert(t.includes("| piqa | 2 | acc (%) | 50.00 | ± 10.00 | 50.00 |"));
 * ```
 */
export function evalTable(results: readonly TaskResult[]): string {
  const lines = [
    "| task | n | metric | value | stderr | chance |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    for (const row of rows(r.name, r.metrics)) lines.push(`| ${row.join(" | ")} |`);
  }
  return lines.join("\n");
}
