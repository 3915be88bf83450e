/**
 * Evaluation tasks as data: where the records are and how they are laid out (a reader), and
 * how a record becomes a scored request (prompt, choices, gold), following EleutherAI's
 * lm-evaluation-harness. Four kinds cover the paper's benchmarks:
 *
 * - `multiple_choice` — the log-likelihood of each choice after the prompt; `acc` and `acc_norm`
 *   (PIQA, HellaSwag, ARC, OpenBookQA, any `{query, choices, gold}` JSONL).
 * - `fill_blank` — WinoGrande's partial scoring: each option fills the blank in the sentence and
 *   the likelihood of the shared rest of the sentence decides; `acc`.
 * - `last_word` — LAMBADA: the last word after the passage; `acc` (every token greedy) and the
 *   target's perplexity.
 * - `perplexity` — rolling-window log-likelihood of whole documents; token and word perplexity,
 *   bits per byte.
 *
 * Templates are strings with `{field}` holes filled from the record. A definition is YAML or
 * JSON (`--task-file`); the built-in ones (`builtin_tasks.ts`) are written the same way.
 *
 * @module
 */
import * as t from "io-ts";
import { oneOf, strict } from "../base/mod.ts";

/** How a data file is laid out. */
export const FORMATS = ["jsonl", "json", "lines", "text", "wikitext"] as const;
/** How a data file is laid out (see {@link ReaderCodec}). */
export type Format = typeof FORMATS[number];

const Strings = t.readonlyArray(t.string);

/**
 * Where a task's records come from.
 * - `jsonl`: one JSON object per line; `json`: an array of objects.
 * - `lines`: plain text, `fields.length` lines per record, named by `fields` in order.
 * - `text`: the whole file is one document (field `text`); `wikitext`: one document per
 *   top-level ` = Title = ` article (field `text`), WikiText's layout.
 * - `labels`: a second file, one value per line, joined to the records as field `label`
 *   (PIQA's `valid-labels.lst`).
 */
export const ReaderCodec = strict("reader", { data: t.string }, {
  format: oneOf("format", FORMATS),
  fields: Strings,
  labels: t.string,
});
/** Where a task's records come from. */
export type Reader = t.TypeOf<typeof ReaderCodec>;

/** The kinds of task. */
export const KINDS = ["multiple_choice", "fill_blank", "last_word", "perplexity"] as const;

/** Fields every kind shares. */
const common = {
  name: t.string,
  reader: ReaderCodec,
};
const commonOptional = {
  /** Text between the prompt and a continuation (the harness's `target_delimiter`). */
  delimiter: t.string,
  description: t.string,
};

/**
 * `choices` is either one template naming a list field (`"{choices}"`) or a list of templates
 * (`["{sol1}", "{sol2}"]`); `gold` is a template that yields the right choice's index, counted
 * from `goldBase` (0 unless the data counts from 1). `delimiter` defaults to one space.
 */
export const MultipleChoiceCodec = strict("multiple_choice task", {
  ...common,
  kind: t.literal("multiple_choice"),
  prompt: t.string,
  choices: t.union([t.string, Strings]),
  gold: t.string,
}, { ...commonOptional, goldBase: t.number });

/**
 * `sentence` holds one blank (`blank`, default `_`); each of `options` fills it; the rest of the
 * sentence after the blank is the scored continuation (after `delimiter`, default a space).
 */
export const FillBlankCodec = strict("fill_blank task", {
  ...common,
  kind: t.literal("fill_blank"),
  sentence: t.string,
  options: Strings,
  gold: t.string,
}, { ...commonOptional, goldBase: t.number, blank: t.string });

/**
 * Either `text` (the passage; its last space-separated word is the target) or `context` and
 * `target` templates; the target follows `delimiter` (default a space).
 */
export const LastWordCodec = strict("last_word task", {
  ...common,
  kind: t.literal("last_word"),
}, { ...commonOptional, text: t.string, context: t.string, target: t.string });

/**
 * Each record's `text` template (default `{text}`) is a document; `detokenize: wikitext` undoes
 * WikiText's tokenisation (` @-@ `, ` , ` …) first, as the harness does.
 */
export const PerplexityCodec = strict("perplexity task", {
  ...common,
  kind: t.literal("perplexity"),
}, {
  description: t.string,
  text: t.string,
  detokenize: oneOf("detokenize", ["wikitext"]),
});

/** Any task definition. */
export const TaskDefCodec = t.union([
  MultipleChoiceCodec,
  FillBlankCodec,
  LastWordCodec,
  PerplexityCodec,
]);
/** Any task definition. */
export type TaskDef = t.TypeOf<typeof TaskDefCodec>;
/** A multiple-choice task. */
export type MultipleChoiceDef = t.TypeOf<typeof MultipleChoiceCodec>;
/** A WinoGrande-style task. */
export type FillBlankDef = t.TypeOf<typeof FillBlankCodec>;
/** A LAMBADA-style task. */
export type LastWordDef = t.TypeOf<typeof LastWordCodec>;
/** A perplexity task. */
export type PerplexityDef = t.TypeOf<typeof PerplexityCodec>;

/** The codec of a kind, for error messages that name only the fields of that kind. */
export function codecOfKind(kind: unknown): t.Type<TaskDef, unknown, unknown> | undefined {
  switch (kind) {
    case "multiple_choice":
      return MultipleChoiceCodec as t.Type<TaskDef, unknown, unknown>;
    case "fill_blank":
      return FillBlankCodec as t.Type<TaskDef, unknown, unknown>;
    case "last_word":
      return LastWordCodec as t.Type<TaskDef, unknown, unknown>;
    case "perplexity":
      return PerplexityCodec as t.Type<TaskDef, unknown, unknown>;
    default:
      return undefined;
  }
}
