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
import { type ext, oneOf, strict, type StrictC } from "../base/mod.ts";

/** How a data file is laid out. */
export const FORMATS = ["jsonl", "json", "lines", "text", "wikitext"] as const;
/** How a data file is laid out (see {@link ReaderCodec}). */
export type Format = typeof FORMATS[number];

const Strings = t.readonlyArray(t.string);

/** The field a {@link ReaderCodec} must give. */
export const READER_REQUIRED = {
  /** The data file: relative to `--data-dir` for a built-in task, to a task file's folder. */
  data: t.string,
};
/** The fields a {@link ReaderCodec} may give. */
export const READER_OPTIONAL = {
  /** How the file is laid out (default: from its extension). */
  format: oneOf("format", FORMATS),
  /** Names of the lines of a record, for the `lines` layout. */
  fields: Strings,
  /** A file of labels, one per record, joined as field `label` (found as `data` is). */
  labels: t.string,
};

/**
 * Where a task's records come from.
 * - `jsonl`: one JSON object per line; `json`: an array of objects.
 * - `lines`: plain text, `fields.length` lines per record, named by `fields` in order.
 * - `text`: the whole file is one document (field `text`); `wikitext`: one document per
 *   top-level ` = Title = ` article (field `text`), WikiText's layout.
 * - `labels`: a second file, one value per line, joined to the records as field `label`
 *   (PIQA's `valid-labels.lst`).
 */
export const ReaderCodec: StrictC<typeof READER_REQUIRED, typeof READER_OPTIONAL> = strict(
  "reader",
  READER_REQUIRED,
  READER_OPTIONAL,
);
/** Where a task's records come from. */
export type Reader = ext.TypeOf<typeof ReaderCodec>;

/** The kinds of task. */
export const KINDS = ["multiple_choice", "fill_blank", "last_word", "perplexity"] as const;

/** Fields every kind of task must give. */
export const TASK_REQUIRED = {
  /** The name results are reported under, e.g. `piqa`. */
  name: t.string,
  /** Where the records come from and how they are laid out. */
  reader: ReaderCodec,
};
/** Fields the scored kinds of task (all but `perplexity`) may give. */
export const TASK_OPTIONAL = {
  /** Text between the prompt and a continuation (the harness's `target_delimiter`). */
  delimiter: t.string,
  /** One line on what the task is and which split of which data it reads. */
  description: t.string,
};

/** The fields a multiple-choice task must give (see {@link MultipleChoiceCodec}). */
export const MULTIPLE_CHOICE_REQUIRED = {
  ...TASK_REQUIRED,
  /** The kind's tag. */
  kind: t.literal("multiple_choice"),
  /** Template of the context every choice continues. */
  prompt: t.string,
  /** The choices: a template naming a list field, or a list of templates. */
  choices: t.union([t.string, Strings]),
  /** Template of the right choice's index. */
  gold: t.string,
};
/** The fields a multiple-choice task may give. */
export const MULTIPLE_CHOICE_OPTIONAL = {
  ...TASK_OPTIONAL,
  /** What `gold` counts from (default 0). */
  goldBase: t.number,
};

/**
 * `choices` is either one template naming a list field (`"{choices}"`) or a list of templates
 * (`["{sol1}", "{sol2}"]`); `gold` is a template that yields the right choice's index, counted
 * from `goldBase` (0 unless the data counts from 1). `delimiter` defaults to one space.
 */
export const MultipleChoiceCodec: StrictC<
  typeof MULTIPLE_CHOICE_REQUIRED,
  typeof MULTIPLE_CHOICE_OPTIONAL
> = strict("multiple_choice task", MULTIPLE_CHOICE_REQUIRED, MULTIPLE_CHOICE_OPTIONAL);

/** The fields a fill-the-blank task must give (see {@link FillBlankCodec}). */
export const FILL_BLANK_REQUIRED = {
  ...TASK_REQUIRED,
  /** The kind's tag. */
  kind: t.literal("fill_blank"),
  /** Template of the sentence with its blank. */
  sentence: t.string,
  /** Templates of the options that fill the blank, in order. */
  options: Strings,
  /** Template of the right option's index. */
  gold: t.string,
};
/** The fields a fill-the-blank task may give. */
export const FILL_BLANK_OPTIONAL = {
  ...TASK_OPTIONAL,
  /** What `gold` counts from (default 0; WinoGrande's answers count from 1). */
  goldBase: t.number,
  /** The text that marks the blank (default `_`). */
  blank: t.string,
};

/**
 * `sentence` holds one blank (`blank`, default `_`); each of `options` fills it; the rest of the
 * sentence after the blank is the scored continuation (after `delimiter`, default a space).
 */
export const FillBlankCodec: StrictC<typeof FILL_BLANK_REQUIRED, typeof FILL_BLANK_OPTIONAL> =
  strict("fill_blank task", FILL_BLANK_REQUIRED, FILL_BLANK_OPTIONAL);

/** The fields a last-word task must give (see {@link LastWordCodec}). */
export const LAST_WORD_REQUIRED = {
  ...TASK_REQUIRED,
  /** The kind's tag. */
  kind: t.literal("last_word"),
};
/** The fields a last-word task may give: `text`, or `context` and `target`. */
export const LAST_WORD_OPTIONAL = {
  ...TASK_OPTIONAL,
  /** Template of the passage whose last word is the target. */
  text: t.string,
  /** Template of the context before the target. */
  context: t.string,
  /** Template of the target word. */
  target: t.string,
};

/**
 * Either `text` (the passage; its last space-separated word is the target) or `context` and
 * `target` templates; the target follows `delimiter` (default a space).
 */
export const LastWordCodec: StrictC<typeof LAST_WORD_REQUIRED, typeof LAST_WORD_OPTIONAL> = strict(
  "last_word task",
  LAST_WORD_REQUIRED,
  LAST_WORD_OPTIONAL,
);

/** The fields a perplexity task must give (see {@link PerplexityCodec}). */
export const PERPLEXITY_REQUIRED = {
  ...TASK_REQUIRED,
  /** The kind's tag. */
  kind: t.literal("perplexity"),
};
/** The fields a perplexity task may give. */
export const PERPLEXITY_OPTIONAL = {
  /** One line on what the task is and which split of which data it reads. */
  description: t.string,
  /** Template of a document (default `{text}`). */
  text: t.string,
  /** Undo a corpus's tokenisation before scoring; `wikitext` is the only one. */
  detokenize: oneOf("detokenize", ["wikitext"]),
};

/**
 * Each record's `text` template (default `{text}`) is a document; `detokenize: wikitext` undoes
 * WikiText's tokenisation (` @-@ `, ` , ` …) first, as the harness does.
 */
export const PerplexityCodec: StrictC<typeof PERPLEXITY_REQUIRED, typeof PERPLEXITY_OPTIONAL> =
  strict("perplexity task", PERPLEXITY_REQUIRED, PERPLEXITY_OPTIONAL);

/** Any task definition. */
export const TaskDefCodec: ext.UnionC<[
  typeof MultipleChoiceCodec,
  typeof FillBlankCodec,
  typeof LastWordCodec,
  typeof PerplexityCodec,
]> = t.union([
  MultipleChoiceCodec,
  FillBlankCodec,
  LastWordCodec,
  PerplexityCodec,
]);
/** Any task definition. */
export type TaskDef = ext.TypeOf<typeof TaskDefCodec>;
/** A multiple-choice task. */
export type MultipleChoiceDef = ext.TypeOf<typeof MultipleChoiceCodec>;
/** A WinoGrande-style task. */
export type FillBlankDef = ext.TypeOf<typeof FillBlankCodec>;
/** A LAMBADA-style task. */
export type LastWordDef = ext.TypeOf<typeof LastWordCodec>;
/** A perplexity task. */
export type PerplexityDef = ext.TypeOf<typeof PerplexityCodec>;

/** The codec of a kind, for error messages that name only the fields of that kind. */
export function codecOfKind(kind: unknown): ext.Type<TaskDef, unknown, unknown> | undefined {
  switch (kind) {
    case "multiple_choice":
      return MultipleChoiceCodec as ext.Type<TaskDef, unknown, unknown>;
    case "fill_blank":
      return FillBlankCodec as ext.Type<TaskDef, unknown, unknown>;
    case "last_word":
      return LastWordCodec as ext.Type<TaskDef, unknown, unknown>;
    case "perplexity":
      return PerplexityCodec as ext.Type<TaskDef, unknown, unknown>;
    default:
      return undefined;
  }
}
