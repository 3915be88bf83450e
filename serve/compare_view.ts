/**
 * Everything the comparison page shows, read from a `deno task compare` folder: every run's
 * validation loss against FLOPs (both accountings, placed by the run's graph file), the
 * report's table and facts, memory per method (`report/`'s chart) and each run's zero-shot
 * results from its `eval.json`. A comparison still running shows what its runs have written.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { compareMemorySvg, type RunRow, SUMMARY_FIELDS } from "../report/mod.ts";
import { RUN_DIR } from "../checkpoint/mod.ts";
import { readGraph } from "./graph_view.ts";
import { finite, type JsonObject, readJsonObject } from "./json_file.ts";
import { metricsTail } from "./metrics_tail.ts";
import type { FileProblem } from "./run_view.ts";
import { comparisonStatus, runStatus, type StatusView } from "./run_status.ts";

/** A comparison folder's parts (`cli/compare.ts` writes them). */
export const COMPARE_DIR = {
  graphs: "graphs",
  runs: "runs",
  report: "report.json",
  table: "report.md",
} as const;

/** One validation loss of a run, on both FLOPs axes. */
export interface ComparePoint {
  readonly step: number;
  readonly flopsPaper: number | null;
  readonly flopsExecuted: number | null;
  readonly valLoss: number;
}

/** One run of the comparison. */
export interface CompareRunView {
  /** The run's name, `<method>-s<seed>`. */
  readonly run: string;
  readonly method: string;
  readonly seed: number;
  /** Null while its directory does not exist (not started). */
  readonly status: StatusView | null;
  readonly points: readonly ComparePoint[];
  /** Each zero-shot task's accuracy, from the run's `eval.json`. */
  readonly zeroShot: Readonly<Record<string, number>> | null;
}

/** The comparison page's data. */
export interface CompareView {
  readonly kind: "comparison";
  readonly name: string;
  readonly status: StatusView;
  /** The matched accounting, as the report names it; null before the report. */
  readonly accounting: string | null;
  /** The report's facts (config, FLOPs, backend, machine, second corpus); null before it. */
  readonly facts: Readonly<Record<string, string | number | null>> | null;
  /** The report's rows; null before it. */
  readonly rows: readonly RunRow[] | null;
  /** `report.md`, the paper's Table 2 form. */
  readonly table: string | null;
  readonly memorySvg: string | null;
  readonly runs: readonly CompareRunView[];
  readonly problems: readonly FileProblem[];
}

const ROW_NUMBERS = [
  ...SUMMARY_FIELDS,
  "flops",
  "secondLoss",
  "zeroShotChance",
] as const;

/** A report row, or undefined when `u` lacks its method and seed. */
function rowOf(u: unknown): RunRow | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as JsonObject;
  const seed = finite(o.seed);
  if (typeof o.method !== "string" || seed === null) return undefined;
  const zs = o.zeroShot;
  const zeroShot = typeof zs === "object" && zs !== null
    ? Object.fromEntries(Object.entries(zs).filter(([, v]) => finite(v) !== null))
    : null;
  const figures = Object.fromEntries(ROW_NUMBERS.map((k) => [k, finite(o[k])]));
  return { ...figures, method: o.method, seed, zeroShot } as unknown as RunRow;
}

function splitRunName(run: string): { method: string; seed: number } {
  const m = /^(.*)-s(\d+)$/.exec(run);
  return m === null ? { method: run, seed: 0 } : { method: m[1]!, seed: Number(m[2]) };
}

async function names(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.endsWith(suffix) && !e.name.startsWith(".")) {
        out.push(e.name.slice(0, e.name.length - suffix.length));
      }
    }
  } catch {
    // A folder not written yet has no entries.
  }
  return out.sort();
}

async function runView(
  dir: string,
  run: string,
  note: (file: string, message: string) => void,
): Promise<CompareRunView> {
  const runDir = `${dir}/${COMPARE_DIR.runs}/${run}`;
  const graphFile = `${COMPARE_DIR.graphs}/${run}.yaml`;
  const graph = await readGraph(`${dir}/${graphFile}`);
  if (graph !== undefined && E.isLeft(graph)) note(graphFile, graph.left);
  const started = await Deno.stat(runDir).then((s) => s.isDirectory, () => false);
  const read = await metricsTail(
    `${runDir}/${RUN_DIR.metrics}`,
    graph !== undefined && E.isRight(graph) ? graph.right.compute : undefined,
  ).read();
  for (const p of read.problems) note(`${COMPARE_DIR.runs}/${run}/${RUN_DIR.metrics}`, p);
  const evaluation = await readJsonObject(`${runDir}/eval.json`);
  if (evaluation !== undefined && E.isLeft(evaluation)) {
    note(`${COMPARE_DIR.runs}/${run}/eval.json`, evaluation.left);
  }
  const tasks = evaluation !== undefined && E.isRight(evaluation) ? evaluation.right.tasks : null;
  const zeroShot = typeof tasks === "object" && tasks !== null
    ? Object.fromEntries(
      Object.entries(tasks).flatMap(([k, t]) => {
        const acc = typeof t === "object" && t !== null ? finite((t as JsonObject).acc) : null;
        return acc === null ? [] : [[k, acc]];
      }),
    )
    : null;
  return {
    run,
    ...splitRunName(run),
    status: started ? await runStatus(runDir) : null,
    points: read.records.flatMap((r) =>
      r.type === "eval" && r.set === undefined
        ? [{
          step: r.globalStep,
          flopsPaper: r.at.flopsPaper,
          flopsExecuted: r.at.flopsExecuted,
          valLoss: r.valLoss,
        }]
        : []
    ),
    zeroShot,
  };
}

/**
 * Reads comparison folder `dir` (`name` is its title).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCompareView } from "./compare_view.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/graphs`);
 * await Deno.writeTextFile(`${dir}/graphs/standard-s0.yaml`, "nodes: [");
 * const v = await readCompareView(dir, "c");
 * assert.deepEqual(v.runs.map((r) => [r.method, r.seed, r.status]), [["standard", 0, null]]);
 * assert.equal(v.problems[0]?.file, "graphs/standard-s0.yaml");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readCompareView(dir: string, name: string): Promise<CompareView> {
  const problems: FileProblem[] = [];
  const note = (file: string, message: string) => problems.push({ file, message });
  const runNames = [
    ...new Set([
      ...(await names(`${dir}/${COMPARE_DIR.graphs}`, ".yaml")),
      ...(await names(`${dir}/${COMPARE_DIR.runs}`, "")),
    ]),
  ];
  const runs: CompareRunView[] = [];
  for (const run of runNames) runs.push(await runView(dir, run, note));
  const report = await readJsonObject(`${dir}/${COMPARE_DIR.report}`);
  if (report !== undefined && E.isLeft(report)) note(COMPARE_DIR.report, report.left);
  const r = report !== undefined && E.isRight(report) ? report.right : undefined;
  const rows = Array.isArray(r?.runs) ? r.runs.flatMap((u) => rowOf(u) ?? []) : null;
  if (r !== undefined && rows === null) note(COMPARE_DIR.report, "has no `runs` array");
  const table = await Deno.readTextFile(`${dir}/${COMPARE_DIR.table}`).catch(() => null);
  const text = (u: unknown) => (typeof u === "string" ? u : null);
  return {
    kind: "comparison",
    name,
    status: await comparisonStatus(dir),
    accounting: text(r?.accounting),
    facts: r === undefined ? null : {
      config: text(r.config),
      flops: finite(r.flops),
      backend: text(r.backend),
      machine: text(r.machine),
      secondLabel: text(r.secondLabel),
    },
    rows,
    table,
    memorySvg: rows === null || rows.length === 0
      ? null
      : compareMemorySvg("Peak memory per method (mean over seeds)", rows),
    runs,
    problems,
  };
}
