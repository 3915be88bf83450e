/**
 * Running evaluation tasks on a loaded model: a task's records are read, turned into items and
 * token-level requests (`evals/`), scored in batches (`kernels/scoring.ts`) with a progress
 * line, and reduced to the harness's metrics. A log-likelihood or a metric that is not finite
 * is an error naming the model and the task, never a number in a report.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  type ContentInvalid,
  contentInvalid,
  type FileError,
  nonFiniteIndex,
} from "../base/mod.ts";
import {
  BUILTIN_TASKS,
  type ChoiceItem,
  choiceMetrics,
  type DocumentItem,
  encodePair,
  type ItemScore,
  nonFiniteMetric,
  pairRequest,
  perplexityMetrics,
  prefixToken,
  readRecords,
  readTaskFile,
  rollingWindows,
  type ScoreRequest,
  type TargetItem,
  targetMetrics,
  type TaskDef,
  type TaskItems,
  taskItems,
  type TaskMetrics,
  type TaskResult,
  wordCount,
} from "../evals/mod.ts";
import { exists } from "../checkpoint/mod.ts";
import { type RequestScore, scoreRequests } from "../kernels/mod.ts";
import type { LoadedModel } from "./load_model.ts";

/** A task to run and where its data files are. */
export interface ResolvedTask {
  readonly def: TaskDef;
  readonly data: string;
  readonly labels?: string;
}

/** Options of {@link evaluateTask}. */
export interface EvaluateOptions {
  /** Requests per forward pass. */
  readonly batch?: number;
  /** Rolling-window length for perplexity (default: the model's maxSeqLen). */
  readonly window?: number;
  /** Ids newly scored per window (default: the window, the harness's). */
  readonly stride?: number;
  /** Progress lines (a terminal gets one line redrawn in place). */
  readonly progress?: (line: string, final: boolean) => void;
}

/** The error for a task name that is not built in. */
export function unknownTask(name: string): ConfigInvalid {
  return configInvalid(
    "--tasks",
    `unknown task "${name}": built-in tasks are ${
      Object.keys(BUILTIN_TASKS).join(", ")
    } (or give --task-file DEF --data PATH)`,
  );
}

/**
 * The built-in task `name` with its data below `dataDir`; a missing file is an error that says
 * where the data is expected and in which format.
 */
export async function builtinTask(
  name: string,
  dataDir: string,
): Promise<E.Either<ConfigInvalid, ResolvedTask>> {
  const def = BUILTIN_TASKS[name];
  if (def === undefined) return E.left(unknownTask(name));
  const data = `${dataDir}/${def.reader.data}`;
  const labels = def.reader.labels === undefined ? undefined : `${dataDir}/${def.reader.labels}`;
  for (const path of [data, ...(labels === undefined ? [] : [labels])]) {
    if (!(await exists(path))) {
      return E.left(configInvalid(
        `task ${name}`,
        `its data is expected at ${path} (${
          def.description ?? def.kind
        }); give --data-dir DIR holding ${def.reader.data}`,
      ));
    }
  }
  return E.right({ def, data, ...(labels === undefined ? {} : { labels }) });
}

/**
 * A task from a definition file: its data is `dataPath` when given (`--data`), else the
 * definition's `reader.data` relative to the definition's folder.
 */
export async function taskFromFile(
  defPath: string,
  dataPath: string | undefined,
): Promise<E.Either<ConfigInvalid | FileError, ResolvedTask>> {
  const def = await readTaskFile(defPath);
  if (E.isLeft(def)) return def;
  const folder = defPath.includes("/") ? defPath.slice(0, defPath.lastIndexOf("/")) : ".";
  const near = (p: string) => (p.startsWith("/") ? p : `${folder}/${p}`);
  const data = dataPath ?? near(def.right.reader.data);
  if (!(await exists(data))) {
    return E.left(configInvalid(`${defPath}: reader.data`, `no data file at ${data}`));
  }
  const labels = def.right.reader.labels;
  return E.right({
    def: def.right,
    data,
    ...(labels === undefined ? {} : { labels: near(labels) }),
  });
}

function progressReporter(
  name: string,
  total: number,
  print: EvaluateOptions["progress"],
): (done: number) => void {
  const started = performance.now();
  let shown = -1;
  return (done: number) => {
    if (print === undefined) return;
    const tenth = Math.floor((done / Math.max(1, total)) * 10);
    if (tenth === shown && done < total) return;
    shown = tenth;
    const s = (performance.now() - started) / 1000;
    const rate = done / Math.max(s, 1e-9);
    const eta = rate > 0 ? (total - done) / rate : 0;
    const bar = "#".repeat(tenth) + ".".repeat(10 - tenth);
    print(
      `${name} [${bar}] ${done}/${total} requests  ${rate.toFixed(1)}/s  ${
        done < total ? `ETA ${eta.toFixed(0)} s` : `${s.toFixed(1)} s`
      }`,
      done >= total,
    );
  };
}

/**
 * Every request's score, or an error when one is not finite: the weights were checked when
 * loaded, so non-finite logits mean the forward pass overflowed float32.
 */
async function score(
  loaded: LoadedModel,
  name: string,
  requests: readonly ScoreRequest[],
  options: EvaluateOptions,
): Promise<E.Either<ContentInvalid, RequestScore[]>> {
  const report = progressReporter(name, requests.length, options.progress);
  const scores = await scoreRequests(loaded.model, requests, {
    ...(options.batch === undefined ? {} : { batch: options.batch }),
    onProgress: report,
  });
  const bad = nonFiniteIndex(scores.map((s) => s.logprob));
  if (bad < 0) return E.right(scores);
  return E.left(contentInvalid(
    loaded.source,
    `task "${name}": the log-likelihood of request ${bad + 1} of ${requests.length} is ` +
      `${scores[bad]!.logprob}: the model's logits are not finite (its weights are, so the ` +
      "forward pass overflowed float32); no result is reported",
  ));
}

/** A task's metrics and each item's scores. */
interface Scored {
  readonly metrics: TaskMetrics;
  readonly items: readonly ItemScore[];
}

async function choiceTask(
  loaded: LoadedModel,
  name: string,
  items: readonly ChoiceItem[],
  options: EvaluateOptions,
): Promise<E.Either<ContentInvalid, Scored>> {
  const tok = loaded.tokenizer;
  const window = loaded.model.shape.maxSeqLen;
  const requests = items.flatMap((it) =>
    it.options.map((o) => pairRequest(encodePair(tok, o.context, o.continuation), window))
  );
  const scores = await score(loaded, name, requests, options);
  if (E.isLeft(scores)) return scores;
  let k = 0;
  const outcomes = items.map((it) => {
    const logprobs = it.options.map(() => scores.right[k++]!.logprob);
    return { logprobs, lengths: it.lengths, gold: it.gold };
  });
  return E.right({
    metrics: { kind: "choice", ...choiceMetrics(outcomes) },
    items: outcomes.map((o) => ({ logprobs: o.logprobs, gold: o.gold })),
  });
}

async function targetTask(
  loaded: LoadedModel,
  name: string,
  items: readonly TargetItem[],
  options: EvaluateOptions,
): Promise<E.Either<ContentInvalid, Scored>> {
  const window = loaded.model.shape.maxSeqLen;
  const requests = items.map((it) =>
    pairRequest(encodePair(loaded.tokenizer, it.context, it.continuation), window)
  );
  const scores = await score(loaded, name, requests, options);
  return E.map((s: RequestScore[]): Scored => ({
    metrics: { kind: "target", ...targetMetrics(s) },
    items: s.map((r) => ({ logprob: r.logprob, greedy: r.greedy, tokens: r.tokens })),
  }))(scores);
}

async function documentTask(
  loaded: LoadedModel,
  name: string,
  items: readonly DocumentItem[],
  options: EvaluateOptions,
): Promise<E.Either<ConfigInvalid | ContentInvalid, Scored & { windows: number }>> {
  const max = loaded.model.shape.maxSeqLen;
  const window = options.window ?? max;
  const stride = options.stride ?? window;
  if (!(Number.isInteger(window) && window >= 1 && window <= max)) {
    return E.left(
      configInvalid(
        "--window",
        `${window} must be an integer in 1..${max} (the model's maxSeqLen)`,
      ),
    );
  }
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= window)) {
    return E.left(
      configInvalid("--stride", `${stride} must be an integer in 1..${window} (the window)`),
    );
  }
  const tok = loaded.tokenizer;
  const encoder = new TextEncoder();
  const perDoc = items.map((it) => {
    const ids = tok.encode(it.text);
    return { ids, windows: rollingWindows(ids, prefixToken(tok), window, stride) };
  });
  const scores = await score(loaded, name, perDoc.flatMap((d) => d.windows), options);
  if (E.isLeft(scores)) return scores;
  let k = 0;
  const docs = items.map((it, i) => {
    let logprob = 0;
    for (let w = 0; w < perDoc[i]!.windows.length; w++) logprob += scores.right[k++]!.logprob;
    return {
      logprob,
      tokens: perDoc[i]!.ids.length,
      words: wordCount(it.original),
      bytes: encoder.encode(it.original).length,
    };
  });
  return E.right({
    metrics: { kind: "documents", window, stride, ...perplexityMetrics(docs) },
    items: docs,
    windows: k,
  });
}

/** A task with its records read and turned into items: all its input, checked. */
export interface ReadTask {
  readonly task: ResolvedTask;
  readonly items: TaskItems;
}

/**
 * Reads `task`'s records (the first `limit`) and builds its items, before any model is loaded:
 * a bad data file is refused in a moment, not after a large checkpoint has been read.
 */
export async function readTask(
  task: ResolvedTask,
  limit?: number,
): Promise<E.Either<ConfigInvalid | FileError, ReadTask>> {
  const records = await readRecords(task.def.reader, task.data, task.labels);
  if (E.isLeft(records)) return records;
  const kept = limit === undefined ? records.right : records.right.slice(0, limit);
  if (kept.length === 0) return E.left(configInvalid(task.data, "the task has no records"));
  const items = taskItems(task.def, kept);
  return E.map((its: TaskItems) => ({ task, items: its }))(items);
}

/** Runs one task, read by {@link readTask}, on the loaded model. */
export async function evaluateTask(
  loaded: LoadedModel,
  read: ReadTask,
  options: EvaluateOptions = {},
): Promise<E.Either<ConfigInvalid | FileError, TaskResult>> {
  const started = performance.now();
  const task = read.task;
  const name = task.def.name;
  const its = read.items;
  let scored: E.Either<ConfigInvalid | ContentInvalid, Scored>;
  let requests: number;
  switch (its.kind) {
    case "choice":
      requests = its.items.reduce((a, it) => a + it.options.length, 0);
      scored = await choiceTask(loaded, name, its.items, options);
      break;
    case "target":
      requests = its.items.length;
      scored = await targetTask(loaded, name, its.items, options);
      break;
    case "documents":
      {
        const d = await documentTask(loaded, name, its.items, options);
        scored = d;
        requests = E.isRight(d) ? d.right.windows : 0;
      }
      break;
  }
  if (E.isLeft(scored)) return scored;
  const metrics = scored.right.metrics;
  const bad = nonFiniteMetric(metrics);
  if (bad !== undefined) {
    return E.left(contentInvalid(
      loaded.source,
      `task "${name}": ${bad.name} came out ${bad.value} from finite log-likelihoods` +
        `${bad.value === Infinity ? " (beyond what a float64 holds)" : ""}; no result is reported`,
    ));
  }
  return E.right({
    name,
    metrics,
    requests,
    seconds: (performance.now() - started) / 1000,
    items: scored.right.items,
  });
}
