/**
 * Everything the run page shows, read from one run directory through the project's codecs:
 * status, the stage graph (its `pipeline.yaml`, else the comparison's graph file for the run),
 * the decoded log placed on its axes, per-stage memory, the report's figures, the checkpoint's
 * progress and `eval.json`. Each file that cannot be read is a problem naming it; the rest of
 * the page still shows.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { decodeWith } from "../base/mod.ts";
import { readCheckpointState, RUN_DIR } from "../checkpoint/mod.ts";
import { enginePeakBytes, RunProgressCodec, type StageRecord } from "../pipeline/mod.ts";
import { type GraphView, readGraph } from "./graph_view.ts";
import { finite, type JsonObject, numbers, readJsonObject } from "./json_file.ts";
import { metricsTail, type PlacedRecord, type RunCompute } from "./metrics_tail.ts";
import { runStatus, type StatusView } from "./run_status.ts";
import { stageMemorySvg } from "./stage_memory_chart.ts";

/** A file that could not be read as what it should be. */
export interface FileProblem {
  /** The file, relative to the run directory. */
  readonly file: string;
  readonly message: string;
}

/** One task of `eval.json`: its numbers (acc, acc_norm, perplexities, bits per byte, n). */
export interface EvalTask {
  readonly task: string;
  readonly values: Readonly<Record<string, number>>;
}

/** Where the run stood at its last checkpoint. */
export interface CheckpointView {
  readonly globalStep: number;
  readonly tokens: number;
  /** The running stage's largest measured peak and accounted state so far; null before a step. */
  readonly stagePeakBytes: number | null;
  readonly stageStateBytes: number | null;
}

/** The run page's data. */
export interface RunView {
  readonly kind: "run";
  readonly name: string;
  readonly status: StatusView;
  readonly graph: GraphView | null;
  readonly records: readonly PlacedRecord[];
  /** Bytes of the log read: live updates continue from here. */
  readonly metricsOffset: number;
  readonly problems: readonly FileProblem[];
  /** `report.json`'s figures, once the run finished. */
  readonly report: Readonly<Record<string, number | string | null>> | null;
  readonly memorySvg: string | null;
  readonly checkpoint: CheckpointView | null;
  readonly evaluation: readonly EvalTask[] | null;
}

const REPORT_NUMBERS = [
  "finalValLoss",
  "mergedValLoss",
  "globalSteps",
  "tokens",
  "flopsPaper",
  "flopsExecuted",
  "runWallSeconds",
  "peakMeasuredBytes",
  "peakPredictedBytes",
  "peakAccountedStateBytes",
  "peakProcessBytes",
  "standardPredictedPeakBytes",
  "memoryBudgetBytes",
  "floorNats",
];

function evalTasks(o: JsonObject): EvalTask[] | string {
  const tasks = o.tasks;
  if (typeof tasks !== "object" || tasks === null) return "has no `tasks` object";
  return Object.entries(tasks).map(([task, t]) => ({
    task,
    values: Object.fromEntries(
      Object.entries(typeof t === "object" && t !== null ? t : {}).flatMap(([k, v]) =>
        finite(v) === null ? [] : [[k, v as number]]
      ),
    ),
  }));
}

async function checkpointView(dir: string): Promise<E.Either<string, CheckpointView> | undefined> {
  const state = await readCheckpointState(`${dir}/${RUN_DIR.checkpoint}`)();
  if (E.isLeft(state)) {
    return state.left._tag === "IoFailed" ? undefined : E.left(state.left.message);
  }
  const p = decodeWith(RunProgressCodec, state.right.progress);
  if (E.isLeft(p)) return E.left(`progress: ${p.left.join("; ")}`);
  const peak = p.right.stagePeak;
  return E.right({
    globalStep: p.right.globalStep,
    tokens: p.right.tokens,
    stagePeakBytes: peak === null ? null : enginePeakBytes(peak.measured),
    stageStateBytes: peak?.accounted.total ?? null,
  });
}

/**
 * Reads run directory `dir` (`name` is its title). `graphFile` is where its graph is found
 * while its own `pipeline.yaml`, written when it finishes, is absent (a comparison's
 * `graphs/<run>.yaml`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readRunView } from "./run_view.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/metrics.jsonl`, "not json\n");
 * const v = await readRunView(dir, "r", undefined);
 * assert.equal(v.problems[0]?.file, "metrics.jsonl");
 * assert.equal(v.status.status, "stopped");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readRunView(
  dir: string,
  name: string,
  graphFile: string | undefined,
): Promise<RunView> {
  const problems: FileProblem[] = [];
  const note = (file: string, message: string) => problems.push({ file, message });
  const graph = await runGraph(dir, graphFile, note);
  const tail = metricsTail(`${dir}/${RUN_DIR.metrics}`, graph?.compute);
  const read = await tail.read();
  for (const p of read.problems) note(RUN_DIR.metrics, p);
  const stages = read.records.filter((r): r is PlacedRecord & StageRecord & { type: "stage" } =>
    r.type === "stage"
  );
  const report = await readJsonObject(`${dir}/${RUN_DIR.report}`);
  if (report !== undefined && E.isLeft(report)) note(RUN_DIR.report, report.left);
  const evaluation = await readJsonObject(`${dir}/eval.json`);
  let tasks: EvalTask[] | null = null;
  if (evaluation !== undefined) {
    const t = E.isLeft(evaluation) ? evaluation.left : evalTasks(evaluation.right);
    if (typeof t === "string") note("eval.json", t);
    else tasks = t;
  }
  const checkpoint = await checkpointView(dir);
  if (checkpoint !== undefined && E.isLeft(checkpoint)) {
    note(`${RUN_DIR.checkpoint}/state.json`, checkpoint.left);
  }
  const budget = graph?.view.memoryBudgetBytes ??
    (report !== undefined && E.isRight(report) ? finite(report.right.memoryBudgetBytes) : null);
  return {
    kind: "run",
    name,
    status: await runStatus(dir),
    graph: graph?.view ?? null,
    records: read.records,
    metricsOffset: tail.offset,
    problems,
    report: report !== undefined && E.isRight(report)
      ? {
        ...numbers(report.right, REPORT_NUMBERS),
        backend: typeof report.right.backend === "string" ? report.right.backend : null,
      }
      : null,
    memorySvg: stageMemorySvg(stages, graph?.view.stages ?? [], budget),
    checkpoint: checkpoint !== undefined && E.isRight(checkpoint) ? checkpoint.right : null,
    evaluation: tasks,
  };
}

/** The run's graph: its `pipeline.yaml`, else `graphFile`; a damaged one is a problem. */
async function runGraph(
  dir: string,
  graphFile: string | undefined,
  note: (file: string, message: string) => void,
): Promise<{ view: GraphView; compute: RunCompute } | undefined> {
  for (
    const [file, label] of [
      [`${dir}/${RUN_DIR.pipeline}`, RUN_DIR.pipeline],
      ...(graphFile === undefined ? [] : [[graphFile, graphFile]]),
    ] as const
  ) {
    const g = await readGraph(file);
    if (g === undefined) continue;
    if (E.isRight(g)) return g.right;
    note(label, g.left);
  }
  return undefined;
}
