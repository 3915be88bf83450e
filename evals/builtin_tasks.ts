/**
 * The built-in tasks: the paper's zero-shot benchmarks and WikiText perplexity, as definitions
 * like any `--task-file` (prompts from lm-evaluation-harness), each reading its data below a
 * data folder (`--data-dir`, by default `../shared/data` when it exists). The folders and
 * formats are the shared data's; sets that are not shared (WinoGrande, ARC-Challenge,
 * OpenBookQA) are expected in the same formats at the paths named here.
 *
 * @module
 */
import type { TaskDef } from "./task_def.ts";

const ARC_PROMPT = "{query}\nAnswer:";

/** Every built-in task, by name. */
export const BUILTIN_TASKS: Readonly<Record<string, TaskDef>> = {
  piqa: {
    name: "piqa",
    kind: "multiple_choice",
    description: "PIQA validation: physical commonsense, 2 solutions",
    reader: { data: "piqa/valid.jsonl", labels: "piqa/valid-labels.lst" },
    prompt: "Question: {goal}\nAnswer:",
    choices: ["{sol1}", "{sol2}"],
    gold: "{label}",
  },
  hellaswag: {
    name: "hellaswag",
    kind: "multiple_choice",
    description: "HellaSwag validation: 4 endings (text layout: context, label, 4 endings)",
    reader: {
      data: "hellaswag/hellaswag_val_full.txt",
      format: "lines",
      fields: ["ctx", "label", "ending0", "ending1", "ending2", "ending3"],
    },
    prompt: "{ctx}",
    choices: ["{ending0}", "{ending1}", "{ending2}", "{ending3}"],
    gold: "{label}",
  },
  arc_easy: {
    name: "arc_easy",
    kind: "multiple_choice",
    description: "ARC-Easy test ({query, choices, gold} JSONL)",
    reader: { data: "arc-easy/arc_easy.jsonl" },
    prompt: ARC_PROMPT,
    choices: "{choices}",
    gold: "{gold}",
  },
  arc_challenge: {
    name: "arc_challenge",
    kind: "multiple_choice",
    description: "ARC-Challenge test, same layout as ARC-Easy",
    reader: { data: "arc-challenge/arc_challenge.jsonl" },
    prompt: ARC_PROMPT,
    choices: "{choices}",
    gold: "{gold}",
  },
  openbookqa: {
    name: "openbookqa",
    kind: "multiple_choice",
    description: "OpenBookQA test, {query, choices, gold} JSONL (the question stem as query)",
    reader: { data: "openbookqa/openbookqa.jsonl" },
    prompt: "{query}",
    choices: "{choices}",
    gold: "{gold}",
  },
  winogrande: {
    name: "winogrande",
    kind: "fill_blank",
    description: "WinoGrande dev, released JSONL (sentence with _, option1, option2, answer 1/2)",
    reader: { data: "winogrande/dev.jsonl" },
    sentence: "{sentence}",
    options: ["{option1}", "{option2}"],
    gold: "{answer}",
    goldBase: 1,
  },
  lambada: {
    name: "lambada",
    kind: "last_word",
    description: "LAMBADA (OpenAI version) test: greedy last word",
    reader: { data: "lambada/lambada_test.jsonl" },
    text: "{text}",
  },
  wikitext: {
    name: "wikitext",
    kind: "perplexity",
    description: "WikiText-2 validation, one document per article, detokenised",
    reader: { data: "wikitext-2/valid.txt", format: "wikitext" },
    detokenize: "wikitext",
  },
};

/** Where the built-in tasks' data is looked for when no folder is given (`--data-dir`). */
export const DEFAULT_DATA_DIR = "../shared/data";

/** The zero-shot tasks whose data the shared folder has: the default of `deno task eval`. */
export const SHARED_ZERO_SHOT: readonly string[] = ["piqa", "hellaswag", "arc_easy", "lambada"];
