/**
 * From records to what gets scored, as lm-evaluation-harness builds its requests: strings only
 * (the tokeniser comes later), so every task's items can be checked without a model.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid, type ext } from "../base/mod.ts";
import type {
  FillBlankDef,
  LastWordDef,
  MultipleChoiceDef,
  PerplexityDef,
  TaskDef,
} from "./task_def.ts";
import type { TaskRecord } from "./task_records.ts";
import { PY_SPACE } from "./requests.ts";

/** One way to answer: the continuation scored after its context. */
export interface Option {
  /**
   * Text the model reads first (the prompt; for a blank, the sentence up to and with the option).
   */
  readonly context: string;
  /** Text whose log-likelihood is scored, the delimiter first. */
  readonly continuation: string;
}

/** A multiple-choice or fill-in-the-blank item: the option with the highest score is the answer. */
export interface ChoiceItem {
  /** The record the item was built from, `file:line`. */
  readonly where: string;
  /** The options, in the record's order. */
  readonly options: readonly Option[];
  /** Characters of each choice (without the delimiter): `acc_norm` divides by them. */
  readonly lengths: readonly number[];
  /** Index of the right option, 0-based. */
  readonly gold: number;
}

/** A LAMBADA-style item: the target must be predicted greedily. */
export interface TargetItem {
  /** The record the item was built from, `file:line`. */
  readonly where: string;
  /** The passage up to the target word. */
  readonly context: string;
  /** The delimiter and the target word. */
  readonly continuation: string;
}

/** A document whose rolling log-likelihood is measured. */
export interface DocumentItem {
  /** The record the document came from, `file:line` or `file`. */
  readonly where: string;
  /** The document, detokenised when the task asks: what is scored. */
  readonly text: string;
  /**
   * The document as read, before detokenising: its words and bytes are counted on it, as the
   * harness's WikiText `process_results` counts them.
   */
  readonly original: string;
}

/** The items of one task, by kind. */
export type TaskItems =
  | { readonly kind: "choice"; readonly items: readonly ChoiceItem[] }
  | { readonly kind: "target"; readonly items: readonly TargetItem[] }
  | { readonly kind: "documents"; readonly items: readonly DocumentItem[] };

/** A hole `{field}`, or a doubled brace standing for a literal one (Python's `str.format`). */
const HOLE = /\{\{|\}\}|\{([^{}]+)\}/g;

/**
 * What is wrong with a template's braces, or `undefined`: every `{` must open a hole `{field}`
 * closed before the next brace, and every `}` must close one; `{{` and `}}` are literal braces.
 * Checked when a definition is loaded, so a typo such as `"{query"` is not taken as text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { templateProblem } from "./task_items.ts";
 * assert(templateProblem("Q: {query}\nA:") === undefined);
 * assert(templateProblem("{{literal}} {x}") === undefined);
 * assert(templateProblem("{query")?.startsWith('unclosed "{" at character 1'));
 * assert(templateProblem("query}")?.startsWith('stray "}" at character 6'));
 * ```
 */
export function templateProblem(template: string): string | undefined {
  const literal = "write {{ or }} for a literal brace";
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if ((c === "{" || c === "}") && template[i + 1] === c) {
      i++;
      continue;
    }
    if (c === "}") return `stray "}" at character ${i + 1} closes no hole: ${literal}`;
    if (c !== "{") continue;
    const close = template.indexOf("}", i + 1);
    const reopen = template.indexOf("{", i + 1);
    if (close < 0 || (reopen >= 0 && reopen < close)) {
      return `unclosed "{" at character ${i + 1}: a hole is {field}; ${literal}`;
    }
    if (close === i + 1) {
      return `empty hole "{}" at character ${i + 1}: name a field inside the braces`;
    }
    i = close;
  }
  return undefined;
}

function valueText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

/**
 * `template` with each `{field}` replaced by the record's value (a string, number or boolean)
 * and each `{{`, `}}` by a literal brace; the braces are checked at load ({@link templateProblem}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fill } from "./task_items.ts";
 * const r = fill("Question: {goal}\nAnswer:", { fields: { goal: "Why?" }, where: "f:1" }, "prompt");
 * assert(r._tag === "Right" && r.right === "Question: Why?\nAnswer:");
 * assert(fill("{nope}", { fields: {}, where: "f:1" }, "prompt")._tag === "Left");
 * ```
 */
export function fill(
  template: string,
  record: TaskRecord,
  what: string,
): ext.Either<ConfigInvalid, string> {
  let problem: string | undefined;
  const text = template.replace(HOLE, (whole: string, name: string | undefined) => {
    if (name === undefined) return whole[0]!;
    const v = valueText(record.fields[name]);
    if (v === undefined && problem === undefined) {
      problem = name in record.fields
        ? `field "${name}" of ${what} is ${JSON.stringify(record.fields[name])}, not text`
        : `the record has no field "${name}" (needed by ${what} "${template}"; it has ${
          Object.keys(record.fields).join(", ") || "no fields"
        })`;
    }
    return v ?? "";
  });
  return problem === undefined ? E.right(text) : E.left(configInvalid(record.where, problem));
}

function choiceTexts(
  choices: string | readonly string[],
  record: TaskRecord,
): ext.Either<ConfigInvalid, string[]> {
  if (typeof choices !== "string") {
    const out: string[] = [];
    for (const c of choices) {
      const f = fill(c, record, "choices");
      if (E.isLeft(f)) return f;
      out.push(f.right);
    }
    return E.right(out);
  }
  const whole = /^\{([^{}]+)\}$/.exec(choices);
  const list = whole === null ? undefined : record.fields[whole[1]!];
  if (!Array.isArray(list)) {
    return E.left(configInvalid(
      record.where,
      `choices "${choices}" must name a field holding a list of strings${
        whole === null ? "" : ` (field "${whole[1]}" is ${JSON.stringify(list)})`
      }`,
    ));
  }
  const out: string[] = [];
  for (const v of list) {
    const s = valueText(v);
    if (s === undefined) {
      return E.left(configInvalid(record.where, `choice ${JSON.stringify(v)} is not text`));
    }
    out.push(s);
  }
  return E.right(out);
}

function goldIndex(
  template: string,
  base: number,
  count: number,
  record: TaskRecord,
): ext.Either<ConfigInvalid, number> {
  const text = fill(template, record, "gold");
  if (E.isLeft(text)) return text;
  const n = Number(text.right.trim());
  const i = n - base;
  if (text.right.trim() === "" || !Number.isInteger(n) || i < 0 || i >= count) {
    return E.left(configInvalid(
      record.where,
      `gold "${text.right}" is not a choice index from ${base} to ${base + count - 1}`,
    ));
  }
  return E.right(i);
}

function multipleChoice(
  def: MultipleChoiceDef,
  record: TaskRecord,
): ext.Either<ConfigInvalid, ChoiceItem> {
  const context = fill(def.prompt, record, "prompt");
  if (E.isLeft(context)) return context;
  const choices = choiceTexts(def.choices, record);
  if (E.isLeft(choices)) return choices;
  if (choices.right.length < 2) {
    return E.left(
      configInvalid(record.where, `${choices.right.length} choice(s): need at least 2`),
    );
  }
  const gold = goldIndex(def.gold, def.goldBase ?? 0, choices.right.length, record);
  if (E.isLeft(gold)) return gold;
  const delimiter = def.delimiter ?? " ";
  return E.right({
    where: record.where,
    options: choices.right.map((c) => ({ context: context.right, continuation: delimiter + c })),
    lengths: choices.right.map((c) => c.length),
    gold: gold.right,
  });
}

/**
 * WinoGrande's partial scoring: context = the sentence up to the blank with the option in it;
 * continuation = the delimiter and the rest of the sentence, trimmed (the harness's way). The
 * sentence must hold exactly one blank with text after it: the harness fills the first blank and
 * scores what follows, so a second blank would be scored as literal text, and a blank at the end
 * leaves an empty continuation on which every option scores alike (acc from ties, no stderr).
 */
function fillBlank(def: FillBlankDef, record: TaskRecord): ext.Either<ConfigInvalid, ChoiceItem> {
  const sentence = fill(def.sentence, record, "sentence");
  if (E.isLeft(sentence)) return sentence;
  const blank = def.blank ?? "_";
  const at = sentence.right.indexOf(blank);
  const field = `sentence "${def.sentence}"`;
  const shown = JSON.stringify(sentence.right);
  if (at < 0) {
    return E.left(configInvalid(record.where, `${field} has no blank "${blank}": ${shown}`));
  }
  const blanks = sentence.right.split(blank).length - 1;
  if (blanks > 1) {
    return E.left(configInvalid(
      record.where,
      `${field} has ${blanks} blanks "${blank}" where each option fills exactly one: ${shown}`,
    ));
  }
  const before = sentence.right.slice(0, at);
  const rest = sentence.right.slice(at + blank.length).trim();
  if (rest === "") {
    return E.left(configInvalid(
      record.where,
      `${field} has nothing after the blank "${blank}" to score (partial scoring compares the ` +
        `likelihood of the text after the blank; with none every option scores alike): ${shown}`,
    ));
  }
  const options: string[] = [];
  for (const o of def.options) {
    const f = fill(o, record, "options");
    if (E.isLeft(f)) return f;
    options.push(f.right);
  }
  const gold = goldIndex(def.gold, def.goldBase ?? 0, options.length, record);
  if (E.isLeft(gold)) return gold;
  const delimiter = def.delimiter ?? " ";
  return E.right({
    where: record.where,
    options: options.map((o) => ({ context: before + o, continuation: delimiter + rest })),
    lengths: options.map(() => rest.length),
    gold: gold.right,
  });
}

function lastWord(def: LastWordDef, record: TaskRecord): ext.Either<ConfigInvalid, TargetItem> {
  const delimiter = def.delimiter ?? " ";
  if (def.text !== undefined) {
    const text = fill(def.text, record, "text");
    if (E.isLeft(text)) return text;
    // The harness splits at the last space, so the target keeps any punctuation after it.
    const cut = text.right.lastIndexOf(" ");
    if (cut <= 0 || cut === text.right.length - 1) {
      return E.left(configInvalid(record.where, "the text has no last word after a space"));
    }
    return E.right({
      where: record.where,
      context: text.right.slice(0, cut),
      continuation: delimiter + text.right.slice(cut + 1),
    });
  }
  if (def.context === undefined || def.target === undefined) {
    return E.left(configInvalid(
      def.name,
      "a last_word task needs either `text` or both `context` and `target`",
    ));
  }
  const context = fill(def.context, record, "context");
  if (E.isLeft(context)) return context;
  const target = fill(def.target, record, "target");
  if (E.isLeft(target)) return target;
  if (target.right.trim() === "") {
    return E.left(configInvalid(record.where, "the target is empty"));
  }
  return E.right({
    where: record.where,
    context: context.right,
    continuation: delimiter + target.right.trim(),
  });
}

const WS = `[${PY_SPACE}]`;

/**
 * WikiText's tokenised text back to ordinary prose, exactly as lm-evaluation-harness's
 * `wikitext_detokenizer` (`lm_eval/tasks/wikitext/preprocess_wikitext.py`, 0.4.x) does it, step
 * by step and in its order: joined numbers (` @-@ `, ` @,@ `, ` @.@ `), punctuation, brackets and
 * quotes tightened, headings (`= = =` → `===`), the spaces around line breaks dropped, ` N ` →
 * ` 1 `, ` 's` → `'s`. `\s` is Python's ({@link PY_SPACE}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wikitextDetokenize } from "./task_items.ts";
 * assert(wikitextDetokenize("a 1 @,@ 000 @-@ year ( the \" best \" ) , it 's") ===
 *   'a 1,000-year (the "best"), it\'s');
 * ```
 */
export function wikitextDetokenize(text: string): string {
  let s = text;
  // contractions
  s = s.replaceAll("s '", "s'");
  s = s.replace(/\/' [0-9]\//g, "/'[0-9]/"); // as the harness has it: literal slashes
  // number separators
  s = s.replaceAll(" @-@ ", "-").replaceAll(" @,@ ", ",").replaceAll(" @.@ ", ".");
  // punctuation
  for (const p of [":", ";", ".", "!", "?", ","]) s = s.replaceAll(` ${p} `, `${p} `);
  // double brackets
  s = s.replace(new RegExp(`\\(${WS}*([^)]*?)${WS}*\\)`, "gu"), "($1)");
  s = s.replace(new RegExp(`\\[${WS}*([^\\]]*?)${WS}*\\]`, "gu"), "[$1]");
  s = s.replace(new RegExp(`\\{${WS}*([^}]*?)${WS}*\\}`, "gu"), "{$1}");
  s = s.replace(new RegExp(`"${WS}*([^"]*?)${WS}*"`, "gu"), '"$1"');
  s = s.replace(new RegExp(`'${WS}*([^']*?)${WS}*'`, "gu"), "'$1'");
  // miscellaneous
  s = s.replaceAll("= = = =", "====").replaceAll("= = =", "===").replaceAll("= =", "==");
  s = s.replaceAll(" \u00b0 ", "\u00b0");
  s = s.replaceAll(" \n", "\n").replaceAll("\n ", "\n");
  s = s.replaceAll(" N ", " 1 ");
  s = s.replaceAll(" 's", "'s");
  return s;
}

function documentOf(
  def: PerplexityDef,
  record: TaskRecord,
): ext.Either<ConfigInvalid, DocumentItem> {
  const text = fill(def.text ?? "{text}", record, "text");
  if (E.isLeft(text)) return text;
  const body = def.detokenize === "wikitext" ? wikitextDetokenize(text.right) : text.right;
  return E.right({ where: record.where, text: body, original: text.right });
}

function each<A>(
  records: readonly TaskRecord[],
  f: (r: TaskRecord) => ext.Either<ConfigInvalid, A>,
): ext.Either<ConfigInvalid, A[]> {
  const out: A[] = [];
  for (const r of records) {
    const a = f(r);
    if (E.isLeft(a)) return a;
    out.push(a.right);
  }
  return E.right(out);
}

/** The items of a task's records; the first bad record is an error naming its file and line. */
export function taskItems(
  def: TaskDef,
  records: readonly TaskRecord[],
): ext.Either<ConfigInvalid, TaskItems> {
  switch (def.kind) {
    case "multiple_choice":
      return E.map((items: ChoiceItem[]) => ({ kind: "choice", items } as const))(
        each(records, (r) => multipleChoice(def, r)),
      );
    case "fill_blank":
      return E.map((items: ChoiceItem[]) => ({ kind: "choice", items } as const))(
        each(records, (r) => fillBlank(def, r)),
      );
    case "last_word":
      return E.map((items: TargetItem[]) => ({ kind: "target", items } as const))(
        each(records, (r) => lastWord(def, r)),
      );
    case "perplexity":
      return E.map((items: DocumentItem[]) => ({ kind: "documents", items } as const))(
        each(records, (r) => documentOf(def, r)),
      );
  }
}
