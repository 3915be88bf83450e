/**
 * `deno task eval CHECKPOINT [--tasks a,b,…] [--task-file DEF --data PATH] [--data-dir DIR]
 * [--limit N] [--batch N] [--window N] [--stride N] [--json] [--out FILE] [--items FILE]
 * [--tokenizer NAME|PATH] [--backend NAME]`
 *
 * Zero-shot evaluation the way lm-evaluation-harness does it (multiple choice by
 * log-likelihood with `acc`/`acc_norm` and standard errors, LAMBADA's greedy last word,
 * WikiText's rolling-window perplexity): a Markdown table, or one JSON object with `--json`.
 * Progress goes to stderr.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  exitCode,
  type PipelineError,
  renderError,
} from "../base/mod.ts";
import { checkOutput, exists, type InputPath } from "../checkpoint/mod.ts";
import type { TokenizerSpec } from "../data/mod.ts";
import {
  builtinTask,
  evaluateTask,
  loadModel,
  type ReadTask,
  readTask,
  type ResolvedTask,
  startBackend,
  taskFromFile,
  unknownTask,
} from "../effects/mod.ts";
import {
  BUILTIN_TASKS,
  DEFAULT_DATA_DIR,
  SHARED_ZERO_SHOT,
  type TaskResult,
} from "../evals/mod.ts";
import { type BackendName, BACKENDS } from "../pipeline/mod.ts";
import { evalJson, evalTable } from "../report/mod.ts";
import { writeFileAtomic } from "../store/mod.ts";
import {
  backendFlag,
  booleanFlag,
  intFlag,
  onePositional,
  parseCommand,
  stringFlag,
  tokenizerFlag,
} from "./_args.ts";
import { exitWithParent } from "./_parent_watch.ts";

const DEFAULT_TASKS = [...SHARED_ZERO_SHOT, "wikitext"];

const USAGE = `Usage: deno task eval CHECKPOINT [options]

Zero-shot evaluation with lm-evaluation-harness's conventions.

CHECKPOINT  a run's final/ or checkpoint/, or a Hugging Face directory (ckpt import/export)

Options:
  --tasks a,b,…      built-in tasks (default ${DEFAULT_TASKS.join(",")}); known:
                     ${Object.keys(BUILTIN_TASKS).join(", ")}
  --data-dir DIR     where the built-in tasks' data is (default ${DEFAULT_DATA_DIR} when it exists)
  --task-file DEF    a task definition (YAML/JSON) to run as well; --data PATH gives its data
  --limit N          the first N items of each task
  --batch N          requests per forward pass (default 8)
  --window N         rolling-window length for perplexity (default: the model's maxSeqLen)
  --stride N         ids newly scored per window (default: the window)
  --json             print one JSON object instead of the table
  --out FILE         also write the JSON object to FILE (atomically)
  --items FILE       write each item's log-likelihoods to FILE as JSON lines: {task, item,
                     logprobs, gold} (choices), {task, item, logprob, greedy, tokens} (targets),
                     {task, item, logprob, tokens, words, bytes} (documents); nats
  --tokenizer T      bytes | gpt2 | a tokenizer.json or HF model folder, when the
                     checkpoint carries none
  --backend NAME     ${BACKENDS.join(" | ")} (default auto)
  -h, --help         show this help`;

interface EvalArgs {
  readonly checkpoint: string;
  readonly tasks: readonly string[];
  readonly taskFile?: string;
  readonly data?: string;
  readonly dataDir?: string;
  readonly limit?: number;
  readonly batch?: number;
  readonly window?: number;
  readonly stride?: number;
  readonly json: boolean;
  readonly out?: string;
  readonly items?: string;
  readonly tokenizer?: TokenizerSpec;
  readonly backend: BackendName;
}

function parseCli(argv: readonly string[]): E.Either<ConfigInvalid, EvalArgs | "help"> {
  const parsed = parseCommand(argv, {
    tasks: { type: "string" },
    "task-file": { type: "string" },
    data: { type: "string" },
    "data-dir": { type: "string" },
    limit: { type: "string" },
    batch: { type: "string" },
    window: { type: "string" },
    stride: { type: "string" },
    json: { type: "boolean", default: false },
    out: { type: "string" },
    items: { type: "string" },
    tokenizer: { type: "string" },
    backend: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  if (booleanFlag(cmd, "help")) return E.right("help");
  const checkpoint = onePositional(cmd, "CHECKPOINT", USAGE);
  if (E.isLeft(checkpoint)) return checkpoint;
  const ints: Record<string, number | undefined> = {};
  for (const flag of ["limit", "batch", "window", "stride"]) {
    const v = intFlag(cmd, flag, 1);
    if (E.isLeft(v)) return v;
    ints[flag] = v.right;
  }
  const taskFile = stringFlag(cmd, "task-file");
  const data = stringFlag(cmd, "data");
  if (data !== undefined && taskFile === undefined) {
    return E.left(
      configInvalid("--data", "gives the data of a --task-file: name the definition too"),
    );
  }
  const named = stringFlag(cmd, "tasks");
  const tasks = named === undefined
    ? (taskFile === undefined ? DEFAULT_TASKS : [])
    : named.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (named !== undefined && tasks.length === 0) {
    return E.left(configInvalid("--tasks", "is empty: name at least one task"));
  }
  const tokenizer = tokenizerFlag(cmd);
  if (E.isLeft(tokenizer)) return tokenizer;
  const backend = backendFlag(cmd);
  if (E.isLeft(backend)) return backend;
  const out = stringFlag(cmd, "out");
  const items = stringFlag(cmd, "items");
  if (out !== undefined && out === items) {
    return E.left(configInvalid("--items", `is ${items}, the --out file too: name two files`));
  }
  const dataDir = stringFlag(cmd, "data-dir");
  return E.right({
    checkpoint: checkpoint.right,
    tasks,
    json: booleanFlag(cmd, "json"),
    backend: backend.right ?? "auto",
    ...(taskFile === undefined ? {} : { taskFile }),
    ...(data === undefined ? {} : { data }),
    ...(dataDir === undefined ? {} : { dataDir }),
    ...(out === undefined ? {} : { out }),
    ...(items === undefined ? {} : { items }),
    ...(tokenizer.right === undefined ? {} : { tokenizer: tokenizer.right }),
    ...Object.fromEntries(Object.entries(ints).filter(([, v]) => v !== undefined)),
  });
}

/** The tasks of the command line, each with its data found, before any model is loaded. */
async function resolveTasks(a: EvalArgs): Promise<E.Either<PipelineError, ResolvedTask[]>> {
  const out: ResolvedTask[] = [];
  const unknown = a.tasks.find((n) => BUILTIN_TASKS[n] === undefined);
  if (unknown !== undefined) return E.left(unknownTask(unknown));
  if (a.tasks.length > 0) {
    const dir = a.dataDir ?? DEFAULT_DATA_DIR;
    if (!(await exists(dir))) {
      return E.left(configInvalid(
        a.dataDir === undefined ? "--data-dir" : `--data-dir ${dir}`,
        `the built-in tasks read their data from a folder laid out as ../shared/data (piqa/, hellaswag/, arc-easy/, lambada/, wikitext-2/, …); ${dir} does not exist: give --data-dir DIR`,
      ));
    }
    for (const name of a.tasks) {
      const t = await builtinTask(name, dir);
      if (E.isLeft(t)) return t;
      out.push(t.right);
    }
  }
  if (a.taskFile !== undefined) {
    const t = await taskFromFile(a.taskFile, a.data);
    if (E.isLeft(t)) return t;
    out.push(t.right);
  }
  const names = out.map((t) => t.def.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) {
    return E.left(configInvalid("--tasks", `task "${twice}" is named twice`));
  }
  return E.right(out);
}

/** What an evaluation reads: the checkpoint, the definitions, their data and the data folder. */
function evalInputs(a: EvalArgs, tasks: readonly ResolvedTask[]): InputPath[] {
  return [
    { what: "the checkpoint", path: a.checkpoint, checkpoint: true },
    ...(a.taskFile === undefined ? [] : [{ what: "the --task-file", path: a.taskFile }]),
    ...(a.data === undefined ? [] : [{ what: "the --data file", path: a.data }]),
    ...(a.tasks.length === 0 ? [] : [{
      what: "the --data-dir",
      path: a.dataDir ?? DEFAULT_DATA_DIR,
    }]),
    ...tasks.flatMap((t) => [
      { what: `the data of task "${t.def.name}"`, path: t.data },
      ...(t.labels === undefined
        ? []
        : [{ what: `the labels of task "${t.def.name}"`, path: t.labels }]),
    ]),
  ];
}

/** Runs the eval command; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const args = parseCli(argv);
  if (E.isLeft(args)) return fail(args.left);
  if (args.right === "help") {
    console.log(USAGE);
    return 0;
  }
  const a = args.right;
  const tasks = await resolveTasks(a);
  if (E.isLeft(tasks)) return fail(tasks.left);
  // Before the model is loaded: an evaluation may take hours, its output must be writable.
  const out = a.out === undefined
    ? E.right(undefined)
    : await checkOutput({ kind: "file", flag: "--out", path: a.out }, evalInputs(a, tasks.right));
  if (E.isLeft(out)) return fail(out.left);
  const itemsOut = a.items === undefined ? E.right(undefined) : await checkOutput(
    { kind: "file", flag: "--items", path: a.items },
    evalInputs(a, tasks.right),
  );
  if (E.isLeft(itemsOut)) return fail(itemsOut.left);
  // Every task's data is read and checked before the model is: a bad record fails in a moment.
  const read: ReadTask[] = [];
  for (const task of tasks.right) {
    const r = await readTask(task, a.limit);
    if (E.isLeft(r)) return fail(r.left);
    read.push(r.right);
  }
  const backend = await startBackend(a.backend)();
  if (E.isLeft(backend)) return fail(backend.left);
  const loaded = await loadModel(a.checkpoint, {
    ...(a.tokenizer === undefined ? {} : { tokenizer: a.tokenizer }),
  })();
  if (E.isLeft(loaded)) return fail(loaded.left);
  const m = loaded.right;
  const tty = Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  console.error(
    `Model: ${m.source} (${m.format}); tokenizer ${m.tokenizer.name}, ${m.tokenizerHow}`,
  );
  console.error(`Backend: ${backend.right}`);
  const results: TaskResult[] = [];
  try {
    for (const task of read) {
      const r = await evaluateTask(m, task, {
        ...(a.batch === undefined ? {} : { batch: a.batch }),
        ...(a.window === undefined ? {} : { window: a.window }),
        ...(a.stride === undefined ? {} : { stride: a.stride }),
        progress: (line, final) => {
          if (tty) Deno.stderr.writeSync(encoder.encode(`\r${line}${final ? "\n" : ""}`));
          else console.error(line);
        },
      });
      if (E.isLeft(r)) return fail(r.left);
      results.push(r.right);
    }
  } finally {
    m.dispose();
  }
  const json = evalJson(
    {
      source: m.source,
      format: m.format,
      tokenizer: m.tokenizer.name,
      tokenizerHow: m.tokenizerHow,
    },
    a.limit,
    results,
  );
  if (out.right !== undefined) {
    const w = await writeFileAtomic(out.right, JSON.stringify(json, null, 2) + "\n")();
    if (E.isLeft(w)) return fail(w.left);
  }
  if (itemsOut.right !== undefined) {
    const lines = results.flatMap((r) =>
      (r.items ?? []).map((s, item) => JSON.stringify({ task: r.name, item, ...s }) + "\n")
    );
    const w = await writeFileAtomic(itemsOut.right, lines.join(""))();
    if (E.isLeft(w)) return fail(w.left);
  }
  console.log(a.json ? JSON.stringify(json, null, 2) : evalTable(results));
  return 0;
}

function fail(e: PipelineError): number {
  console.error(renderError(e));
  return exitCode(e);
}

if (import.meta.main) {
  // Started by `deno task compare`: ends when compare ends (cli/_parent_watch.ts).
  exitWithParent();
  Deno.exit(await main(Deno.args));
}
