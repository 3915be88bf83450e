/**
 * What a finished run shows: the summary table, `report.json`, the loss curve
 * and measured-against-predicted memory per stage as SVG.
 *
 * @module
 */
import { type Bar, lineChart, stackedBarChart } from "../charts/mod.ts";
import { formatBytes, formatCount } from "../base/mod.ts";
import type { RunMetric, RunResult, ValidGraph } from "../pipeline/mod.ts";

/** `report.json`: per stage, measured and predicted; the final model's path. */
export function runReportJson(
  g: ValidGraph,
  r: RunResult,
  extra: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const most = (pick: (s: RunResult["stages"][number]) => number | null): number | null => {
    const xs = r.stages.map(pick).filter((x): x is number => x !== null);
    return xs.length === 0 ? null : Math.max(...xs);
  };
  const budget = g.pipeline.memoryBudget;
  return {
    name: g.pipeline.name ?? "pipeline",
    ...extra,
    split: g.stages.map((s) => s.added),
    stages: r.stages.map((s) => ({
      ...s,
      valPerplexity: Math.exp(s.valLoss),
      measuredOverPredicted: s.measuredPeakBytes / s.predictedPeakBytes,
      ...(budget === undefined ? {} : { withinBudget: s.measuredPeakBytes <= budget }),
    })),
    memoryBudgetBytes: budget ?? null,
    peakMeasuredBytes: most((s) => s.measuredPeakBytes),
    peakPredictedBytes: most((s) => s.predictedPeakBytes),
    peakAccountedStateBytes: most((s) => s.accountedStateBytes),
    peakProcessBytes: most((s) => s.processPeakBytes),
    standardPredictedStateBytes: r.standardPredicted.stateBytes,
    standardPredictedPeakBytes: r.standardPredicted.peakBytes,
    finalValLoss: r.finalValLoss,
    mergedValLoss: r.mergedValLoss,
    finalCheckpoint: r.finalCheckpoint,
    globalSteps: r.globalSteps,
    tokens: r.tokens,
    resumedFrom: r.resumedFrom ?? null,
    runWallSeconds: stagesWallSeconds(r),
    regime: "model state: fp32 Adam (4 B weight + 4 B gradient + 8 B m, v per trained " +
      "parameter; 4 B per frozen one), embeddings counted; peak: what the engine held at once " +
      "(distinct tensor buffers; GPU buffers on webgpu): model state, activations, workspace",
  };
}

/**
 * The run's wall time over all its sessions: the sum of its stages' (null when a stage was
 * recorded before stages timed themselves). Unlike `wallSeconds`, this session's time, it
 * leaves out what a stopped session did after its last checkpoint.
 */
function stagesWallSeconds(r: RunResult): number | null {
  const times = r.stages.map((s) => s.wallSeconds);
  return times.every((t) => t !== undefined) ? times.reduce((a, b) => a + b, 0) : null;
}

function percent(measured: number, predicted: number): string {
  const e = (predicted / measured - 1) * 100;
  return `${e >= 0 ? "+" : ""}${e.toFixed(1)}%`;
}

/** The stages' measured peaks against the graph's memory budget, in one line. */
export function budgetLine(r: RunResult, budget: number): string {
  const over = r.stages.filter((s) => s.measuredPeakBytes > budget);
  const peak = Math.max(...r.stages.map((s) => s.measuredPeakBytes));
  return over.length === 0
    ? `Memory budget ${formatBytes(budget)}: every stage's measured peak within it (largest ${
      formatBytes(peak)
    }, ${((1 - peak / budget) * 100).toFixed(1)}% to spare)`
    : `Memory budget ${formatBytes(budget)} EXCEEDED by stage ${
      over.map((s) => `${s.stage} (${formatBytes(s.measuredPeakBytes)})`).join(", ")
    }`;
}

const STANDARD = "standard pre-training";

/** The end-of-run summary table (and the budget line when the graph has a memory budget). */
export function runSummary(
  r: RunResult,
  budget?: number,
  method?: string,
  measure: "engine" | "trainer process" = "engine",
): string {
  const rows = [
    [
      "stage",
      "layers",
      "trainable",
      "frozen",
      "adapter",
      "val loss",
      "state",
      "peak",
      "predicted",
      "error",
      "process",
    ],
    ...r.stages.map((s) => [
      String(s.stage),
      String(s.layers),
      formatCount(s.trainableParams),
      formatCount(s.frozenParams),
      formatCount(s.adapterParams),
      s.valLoss.toFixed(4),
      formatBytes(s.accountedStateBytes),
      formatBytes(s.measuredPeakBytes),
      formatBytes(s.predictedPeakBytes),
      percent(s.measuredPeakBytes, s.predictedPeakBytes),
      s.processPeakBytes === null ? "-" : formatBytes(s.processPeakBytes),
    ]),
  ];
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? "").length))) ??
    [];
  const table = rows.map((row) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join("  ")
  );
  const peak = Math.max(...r.stages.map((s) => s.measuredPeakBytes));
  const standard = r.standardPredicted.peakBytes;
  const predicted = Math.max(...r.stages.map((s) => s.predictedPeakBytes));
  const label = method ?? "STEP";
  const versus = (mine: number) =>
    `${label} ${Math.abs((1 - mine / standard) * 100).toFixed(1)}% ${
      mine <= standard ? "less" : "more"
    }`;
  // A trainer process's resident growth (the torch engine on CPU) also holds torch's allocator
  // caches and libraries: it is not the quantity the prediction models, so the comparison with
  // standard pre-training is made prediction to prediction.
  const comparison = measure === "trainer process"
    ? `${label} peak ${formatBytes(peak)} measured (the trainer process's resident growth); ` +
      `predicted ${formatBytes(predicted)} against ${
        formatBytes(standard)
      } for standard pre-training of the final model with the same batches (${versus(predicted)})`
    : `${label} peak ${
      formatBytes(peak)
    } measured; standard pre-training of the final model with ` +
      `the same batches: ${formatBytes(standard)} predicted (${versus(peak)})`;
  return [
    "Summary (state: weights + gradients + Adam moments, fp32, counted role by role; peak: what " +
    "the engine held at once, measured, against its prediction; process: the OS's peak " +
    "resident size):",
    ...table,
    (method ?? (r.stages.length === 1 ? STANDARD : "STEP")) === STANDARD
      ? `Peak ${formatBytes(peak)} measured (standard pre-training)`
      : comparison,
    ...(budget === undefined ? [] : [budgetLine(r, budget)]),
    `Final val loss ${r.finalValLoss.toFixed(4)}; after merging the adapters ${
      r.mergedValLoss.toFixed(4)
    }`,
    `Final model (adapters merged): ${r.finalCheckpoint}`,
  ].join("\n");
}

/**
 * Loss curve: training loss per step, validation loss, stage boundaries, the data's floor. A
 * skipped step's loss (not finite, `null` on disk) has no point.
 */
export function lossChartSvg(
  title: string,
  records: readonly RunMetric[],
  floorNats: number | undefined,
): string {
  const points: { train: [number, number][]; val: [number, number][] } = { train: [], val: [] };
  const markers: { x: number; label: string }[] = [];
  for (const r of records) {
    if (r.type === "train") points.train.push([r.globalStep, r.loss ?? NaN]);
    else if (r.type === "eval") points.val.push([r.globalStep, r.valLoss]);
    else if (r.type === "grow") markers.push({ x: r.globalStep, label: `grow → ${r.layers}L` });
  }
  return lineChart({
    title,
    xLabel: "optimizer step",
    yLabel: "cross-entropy (nats/token)",
    series: [
      { name: "train loss", points: points.train },
      { name: "val loss", points: points.val, dashed: true },
    ],
    markers,
    ...(floorNats === undefined ? {} : { floor: { value: floorNats, label: "data floor" } }),
  });
}

/** What {@link measuredStageBar} reads of a stage's record. */
export interface MeasuredStage {
  /** Stage number, from 1. */
  readonly stage: number;
  /** Model state by role at the stage's step. */
  readonly accountedState: RunResult["stages"][number]["accountedState"];
  /** Their sum. */
  readonly accountedStateBytes: number;
  /** The step's measured peak. */
  readonly measuredPeakBytes: number;
}

/** A stage's measured peak as a stacked bar: model state by role, then the rest of the peak. */
export function measuredStageBar(s: MeasuredStage): Bar {
  return {
    label: `s${s.stage} measured`,
    segments: [
      { name: "trained weights", value: s.accountedState.trainableWeights },
      { name: "adapters", value: s.accountedState.adapters },
      { name: "gradients", value: s.accountedState.gradients },
      { name: "Adam m, v", value: s.accountedState.optimizer },
      { name: "frozen weights", value: s.accountedState.frozen },
      {
        name: "activations, workspace",
        value: Math.max(0, s.measuredPeakBytes - s.accountedStateBytes),
      },
    ],
  };
}

/**
 * Per stage: the measured peak, split into model state (role by role) and the rest (activations
 * and workspace), beside the predicted peak; standard pre-training's predicted peak last.
 */
export function memoryChartSvg(title: string, r: RunResult, budget?: number): string {
  const fmt = (v: number): string => formatBytes(v);
  return stackedBarChart({
    title,
    yLabel: "bytes at the step's peak",
    format: fmt,
    bars: [
      ...r.stages.flatMap((s) => [
        measuredStageBar(s),
        {
          label: `s${s.stage} predicted`,
          segments: [{ name: "predicted", value: s.predictedPeakBytes }],
          reference: true,
        },
      ]),
      {
        label: "standard",
        segments: [{ name: "standard", value: r.standardPredicted.peakBytes }],
        reference: true,
      },
      ...(budget === undefined ? [] : [{
        label: "budget",
        segments: [{ name: "memory budget", value: budget }],
        reference: true,
      }]),
    ],
  });
}
