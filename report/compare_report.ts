/**
 * What `deno task compare` writes once every run has finished: `report.json` (a `runs` array and a
 * `summary` per method, mean and standard deviation over seeds), `report.md` (the paper's Table 2
 * form) and two pictures: validation loss against FLOPs for every run, and peak memory per
 * method (accounted model state, measured peak, predicted peak).
 *
 * @module
 */
import { type Bar, lineChart, type Series, stackedBarChart } from "../charts/mod.ts";
import { formatBytes, mean, sampleStd } from "../base/mod.ts";
import { type CompareRun, flopsAtStep, type RunMetric } from "../pipeline/mod.ts";

/** What one finished run measured (read from its run directory). */
export interface RunOutcome {
  /** The run as planned: method, seed, graph and its FLOPs. */
  readonly run: CompareRun;
  /** The run's `report.json`. */
  readonly report: Readonly<Record<string, unknown>>;
  /** The run's `metrics.jsonl` records. */
  readonly metrics: readonly RunMetric[];
  /** The final model's `deno task eval --json` object, when it was evaluated. */
  readonly evaluation?: Readonly<Record<string, unknown>>;
}

/** One entry of `report.json`'s `runs`. */
export interface RunRow {
  /** The method's name, e.g. `standard`, `relora`, `galore`, `step-2`. */
  readonly method: string;
  /** The seed this run of the method trained with. */
  readonly seed: number;
  /** FLOPs in the matched accounting. */
  readonly flops: number;
  /** FLOPs in the paper's accounting: 6 per trained and 2 per frozen parameter and token. */
  readonly flopsPaper: number;
  /** FLOPs of the matmuls the engine runs. */
  readonly flopsExecuted: number;
  /** Tokens trained on. */
  readonly tokens: number;
  /** Optimizer steps over all stages. */
  readonly steps: number;
  /** The run's wall time, from its report ({@link runWallSeconds}); null when it does not say. */
  readonly wallSeconds: number | null;
  /**
   * Largest accounted model state of any stage (live tensors by role), in bytes; null when not
   * recorded.
   */
  readonly accountedStateBytes: number | null;
  /** Largest measured engine peak of any stage, in bytes; null when not recorded. */
  readonly measuredPeakBytes: number | null;
  /**
   * Largest predicted peak of any stage (model state, activations, workspace), in bytes; null when
   * not recorded.
   */
  readonly predictedPeakBytes: number | null;
  /** The planner's figure for the method (Eq. 1–2, the baselines' formulas; `memory:` terms). */
  readonly plannerPeakBytes: number | null;
  /** The process's peak resident size, in bytes; null where the OS does not tell. */
  readonly processPeakBytes: number | null;
  /** Final validation loss, in nats per token. */
  readonly valLoss: number | null;
  /** exp(valLoss). */
  readonly valPerplexity: number | null;
  /** Last validation loss on the second corpus, in nats per token; null without one. */
  readonly secondLoss: number | null;
  /** exp(secondLoss). */
  readonly secondPerplexity: number | null;
  /** Mean `acc` over the zero-shot tasks evaluated (0–1), the paper's downstream column. */
  readonly zeroShotMean: number | null;
  /** The same mean for guessing (LAMBADA's chance is 0). */
  readonly zeroShotChance: number | null;
  /** Each zero-shot task's `acc`. */
  readonly zeroShot: Readonly<Record<string, number>> | null;
  /** WikiText's rolling-window perplexity per token (`deno task eval`'s `wikitext`). */
  readonly wikitextPerplexity: number | null;
  /** WikiText's bits per byte (`deno task eval`'s `wikitext`). */
  readonly wikitextBitsPerByte: number | null;
}

/** Mean and sample standard deviation (null with fewer than two values). */
export interface Stat {
  /** Mean of the values that exist; null when none does. */
  readonly mean: number | null;
  /** Sample standard deviation (n − 1); null below two values. */
  readonly std: number | null;
  /** Values that existed (runs of the method that recorded the field). */
  readonly n: number;
}

/** The fields of a {@link RunRow} that a {@link MethodSummary} summarises over seeds, in order. */
export const SUMMARY_FIELDS = [
  "valLoss",
  "valPerplexity",
  "secondPerplexity",
  "zeroShotMean",
  "wikitextPerplexity",
  "wikitextBitsPerByte",
  "measuredPeakBytes",
  "predictedPeakBytes",
  "plannerPeakBytes",
  "accountedStateBytes",
  "processPeakBytes",
  "wallSeconds",
  "tokens",
  "steps",
  "flopsPaper",
  "flopsExecuted",
] as const;

/** Per method: each summarised field's mean and standard deviation over seeds. */
export type MethodSummary = Readonly<Record<(typeof SUMMARY_FIELDS)[number], Stat>> & {
  readonly method: string;
  readonly seeds: number;
};

function num(x: unknown): number | null {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

/** Mean and sample standard deviation of the values that exist. */
export function stat(values: readonly (number | null)[]): Stat {
  const xs = values.filter((v): v is number => v !== null);
  if (xs.length === 0) return { mean: null, std: null, n: 0 };
  return { mean: mean(xs), std: xs.length < 2 ? null : sampleStd(xs), n: xs.length };
}

/**
 * A run's wall time as its `report.json` records it: `runWallSeconds`, its stages' times summed
 * over every session that ran them. A report written before that existed gives its `wallSeconds`
 * only when one session ran the whole run (it is that session's time); otherwise null.
 */
export function runWallSeconds(report: Readonly<Record<string, unknown>>): number | null {
  const total = num(report.runWallSeconds);
  if (total !== null) return total;
  return report.resumedFrom === null ? num(report.wallSeconds) : null;
}

/** The second corpus's last evaluation in a run's metrics. */
function secondLoss(o: RunOutcome, label: string | undefined): number | null {
  if (label === undefined) return null;
  const last = o.metrics.findLast((m) => m.type === "eval" && m.set === label);
  return last?.type === "eval" ? num(last.valLoss) : null;
}

/** The zero-shot and WikiText figures of a run's evaluation. */
function evaluationFields(o: RunOutcome): Pick<
  RunRow,
  "zeroShotMean" | "zeroShotChance" | "zeroShot" | "wikitextPerplexity" | "wikitextBitsPerByte"
> {
  const tasks = (o.evaluation?.tasks ?? {}) as Record<string, Record<string, unknown>>;
  const zeroShot: Record<string, number> = {};
  const chances: number[] = [];
  for (const [name, t] of Object.entries(tasks)) {
    const acc = num(t.acc);
    if (acc === null) continue;
    zeroShot[name] = acc;
    chances.push(num(t.chance) ?? 0);
  }
  const accs = Object.values(zeroShot);
  const meanOf = (xs: number[]) => (xs.length === 0 ? null : mean(xs));
  const wiki = tasks.wikitext;
  return {
    zeroShotMean: meanOf(accs),
    zeroShotChance: meanOf(chances),
    zeroShot: accs.length === 0 ? null : zeroShot,
    wikitextPerplexity: num(wiki?.token_perplexity),
    wikitextBitsPerByte: num(wiki?.bits_per_byte),
  };
}

/** A run's row of `report.json`. */
export function runRow(
  o: RunOutcome,
  matched: "paper" | "executed",
  secondLabel: string | undefined,
  plannerPeakBytes: number | null,
): RunRow {
  const r = o.report;
  const f = o.run.flops;
  const val = num(r.finalValLoss);
  const second = secondLoss(o, secondLabel);
  return {
    method: o.run.method,
    seed: o.run.seed,
    flops: matched === "paper" ? f.paper : f.executed,
    flopsPaper: f.paper,
    flopsExecuted: f.executed,
    tokens: f.tokens,
    steps: f.steps,
    wallSeconds: runWallSeconds(r),
    accountedStateBytes: num(r.peakAccountedStateBytes),
    measuredPeakBytes: num(r.peakMeasuredBytes),
    predictedPeakBytes: num(r.peakPredictedBytes),
    plannerPeakBytes,
    processPeakBytes: num(r.peakProcessBytes),
    valLoss: val,
    valPerplexity: val === null ? null : Math.exp(val),
    secondLoss: second,
    secondPerplexity: second === null ? null : Math.exp(second),
    ...evaluationFields(o),
  };
}

/** Every method's summary, in the order the methods first appear. */
export function summarise(rows: readonly RunRow[]): MethodSummary[] {
  const methods = [...new Set(rows.map((r) => r.method))];
  return methods.map((method) => {
    const mine = rows.filter((r) => r.method === method);
    const fields = Object.fromEntries(
      SUMMARY_FIELDS.map((f) => [f, stat(mine.map((r) => r[f]))]),
    ) as Record<(typeof SUMMARY_FIELDS)[number], Stat>;
    return { method, seeds: mine.length, ...fields };
  });
}

/** The comparison's facts beside its runs. */
export interface CompareFacts {
  /** Name of the comparison's config. */
  readonly config: string;
  /** Which FLOPs the methods were matched on: the paper's accounting or the executed matmuls. */
  readonly accounting: "paper" | "executed";
  /** The compute every run got, in that accounting. */
  readonly flops: number;
  /** The backend the runs trained on, as their reports name it. */
  readonly backend: string;
  /** Name of the second validation corpus, when there is one. */
  readonly secondLabel: string | undefined;
  /** OS, architecture and core count of the machine, e.g. `linux x86_64, 16 cores`. */
  readonly machine: string;
}

/** `report.json`. */
export function compareReportJson(
  facts: CompareFacts,
  rows: readonly RunRow[],
): Record<string, unknown> {
  return {
    ...facts,
    runs: rows,
    summary: summarise(rows),
    memory: "accounted: model state (fp32 weights, gradients, Adam moments) counted role by " +
      "role at its peak; measured: the most bytes of distinct tensor buffers the engine held " +
      "at once (GPU bytes on webgpu); predicted: the buffer replay of one step; process: the " +
      "OS's peak resident size of the run's process (runtime and data included)",
  };
}

function pm(s: Stat, format: (v: number) => string): string {
  if (s.mean === null) return "–";
  return s.std === null ? format(s.mean) : `${format(s.mean)} ± ${format(s.std)}`;
}

const fixed = (digits: number) => (v: number) => v.toFixed(digits);

/** `report.md`: the paper's Table 2 form (mean ± standard deviation over seeds), then every run. */
export function compareReportMarkdown(facts: CompareFacts, rows: readonly RunRow[]): string {
  const summary = summarise(rows);
  const second = facts.secondLabel ?? "second corpus";
  const std = summary.find((s) => s.method === "standard");
  const vsStd = (s: MethodSummary) => {
    const a = s.measuredPeakBytes.mean;
    const b = std?.measuredPeakBytes.mean;
    return a === null || b === null || b === undefined ? "–" : `${((a / b - 1) * 100).toFixed(1)}%`;
  };
  const lines = [
    `# Comparison at equal compute: ${facts.config}`,
    "",
    `Every run gets ${facts.flops.toExponential(3)} FLOPs under the **${facts.accounting}** ` +
    "accounting (paper: 6·N trained + 2·N frozen per token, non-embedding; executed: the " +
    `engine's matmuls). Backend: ${facts.backend}. Machine: ${facts.machine}.`,
    "",
    "Peak memory: *measured* is the most bytes of tensor buffers the engine held at once; " +
    "*predicted* the buffer replay of the run's step; *planner* the planner's formula for the " +
    "method under the config's `memory:` terms; *model state* weights, gradients and Adam " +
    "moments counted role by role. Mean ± sample standard deviation over seeds.",
    "",
    `| method | seeds | peak memory (measured) | vs standard | predicted peak | planner | model state | val PPL | ${second} PPL | WikiText PPL (rolling) | zero-shot acc | tokens | steps | wall |`,
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...summary.map((s) =>
      `| ${s.method} | ${s.seeds} | ${pm(s.measuredPeakBytes, formatBytes)} | ${vsStd(s)} | ${
        pm(s.predictedPeakBytes, formatBytes)
      } | ${pm(s.plannerPeakBytes, formatBytes)} | ${pm(s.accountedStateBytes, formatBytes)} | ${
        pm(s.valPerplexity, fixed(3))
      } | ${pm(s.secondPerplexity, fixed(3))} | ${pm(s.wikitextPerplexity, fixed(3))} | ${
        pm(s.zeroShotMean, (v) => `${(100 * v).toFixed(1)}%`)
      } | ${pm(s.tokens, (v) => String(Math.round(v)))} | ${
        pm(s.steps, (v) => String(Math.round(v)))
      } | ${pm(s.wallSeconds, (v) => `${v.toFixed(0)} s`)} |`
    ),
    "",
    "## Runs",
    "",
    "| method | seed | FLOPs (paper) | FLOPs (executed) | tokens | steps | wall | state | measured | predicted | process | val loss | val PPL | " +
    `${second} PPL |`,
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.method} | ${r.seed} | ${r.flopsPaper.toExponential(3)} | ${
        r.flopsExecuted.toExponential(3)
      } | ${r.tokens} | ${r.steps} | ${
        r.wallSeconds === null ? "–" : `${r.wallSeconds.toFixed(0)} s`
      } | ${bytes(r.accountedStateBytes)} | ${bytes(r.measuredPeakBytes)} | ${
        bytes(r.predictedPeakBytes)
      } | ${bytes(r.processPeakBytes)} | ${r.valLoss?.toFixed(4) ?? "–"} | ${
        r.valPerplexity?.toFixed(3) ?? "–"
      } | ${r.secondPerplexity?.toFixed(3) ?? "–"} |`
    ),
    "",
    ...zeroShotSection(rows),
  ];
  return lines.join("\n");
}

/** Each run's zero-shot accuracies and WikiText figures, when the runs were evaluated. */
function zeroShotSection(rows: readonly RunRow[]): string[] {
  const tasks = [...new Set(rows.flatMap((r) => Object.keys(r.zeroShot ?? {})))];
  if (tasks.length === 0 && rows.every((r) => r.wikitextPerplexity === null)) return [];
  const pct = (v: number | undefined | null) =>
    v === undefined || v === null ? "–" : (100 * v).toFixed(1);
  return [
    "## Zero-shot tasks and WikiText (`deno task eval` on each final model)",
    "",
    "Accuracy (`acc`, %) per task, its mean, and the mean a guesser would score (LAMBADA's " +
    "chance is 0); WikiText's rolling-window perplexity per token and bits per byte.",
    "",
    `| method | seed | ${tasks.join(" | ")} | mean | chance | WikiText PPL | bits/byte |`,
    `|---|---|${tasks.map(() => "---|").join("")}---|---|---|---|`,
    ...rows.map((r) =>
      `| ${r.method} | ${r.seed} | ${tasks.map((t) => pct(r.zeroShot?.[t])).join(" | ")} | ${
        pct(r.zeroShotMean)
      } | ${pct(r.zeroShotChance)} | ${r.wikitextPerplexity?.toFixed(3) ?? "–"} | ${
        r.wikitextBitsPerByte?.toFixed(4) ?? "–"
      } |`
    ),
    "",
  ];
}

function bytes(b: number | null): string {
  return b === null ? "–" : formatBytes(b);
}

/** Validation loss against FLOPs (matched accounting), one line per run. */
export function lossVsFlopsSvg(title: string, outcomes: readonly RunOutcome[]): string {
  const series: Series[] = outcomes.map((o) => ({
    name: `${o.run.method} s${o.run.seed}`,
    group: o.run.method,
    dashed: o.run.seed > 0,
    points: o.metrics.flatMap((m) =>
      m.type === "eval" && m.set === undefined
        ? [[flopsAtStep(o.run.flops, m.globalStep), m.valLoss] as const]
        : []
    ),
  }));
  return lineChart({
    title,
    xLabel: "FLOPs",
    yLabel: "validation loss (nats/token)",
    series,
    xFormat: (v) => v === 0 ? "0" : v.toExponential(1),
  });
}

/** Peak memory per method (mean over seeds): measured, predicted, accounted model state. */
export function compareMemorySvg(title: string, rows: readonly RunRow[]): string {
  const bars: Bar[] = summarise(rows).flatMap((s) => [
    {
      label: `${s.method}`,
      segments: [{ name: "measured peak", value: s.measuredPeakBytes.mean ?? 0 }],
    },
    { label: "", segments: [{ name: "predicted peak", value: s.predictedPeakBytes.mean ?? 0 }] },
    { label: "", segments: [{ name: "model state", value: s.accountedStateBytes.mean ?? 0 }] },
  ]);
  return stackedBarChart({ title, yLabel: "bytes", bars, format: formatBytes });
}
