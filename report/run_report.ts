/**
 * What a finished run shows: the summary table, `report.json`, the loss curve
 * and measured-against-predicted memory per stage as SVG.
 *
 * @module
 */
import { lineChart, stackedBarChart } from "../charts/mod.ts";
import { formatBytes, formatCount } from "../base/mod.ts";
import type { RunResult, ValidGraph } from "../pipeline/mod.ts";

/** `report.json`: per stage, measured and predicted; the final model's path. */
export function runReportJson(
  g: ValidGraph,
  r: RunResult,
  extra: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  return {
    name: g.pipeline.name ?? "pipeline",
    ...extra,
    split: g.stages.map((s) => s.added),
    stages: r.stages.map((s) => ({
      ...s,
      valPerplexity: Math.exp(s.valLoss),
      measuredOverPredicted: s.measuredPeakBytes / s.predictedPeakBytes,
    })),
    peakMeasuredBytes: Math.max(...r.stages.map((s) => s.measuredPeakBytes)),
    peakPredictedBytes: Math.max(...r.stages.map((s) => s.predictedPeakBytes)),
    standardPredictedPeakBytes: r.standardPredictedPeakBytes,
    finalValLoss: r.finalValLoss,
    mergedValLoss: r.mergedValLoss,
    finalCheckpoint: r.finalCheckpoint,
    globalSteps: r.globalSteps,
    tokens: r.tokens,
    resumedFrom: r.resumedFrom ?? null,
    regime:
      "fp32 Adam model state (4 B weight + 4 B gradient + 8 B m, v per trained parameter; 4 B per frozen one), embeddings counted, activations not",
  };
}

/** The end-of-run summary table. */
export function runSummary(r: RunResult): string {
  const rows = [
    [
      "stage",
      "layers",
      "trainable",
      "frozen",
      "adapter",
      "val loss",
      "measured peak",
      "predicted",
      "ratio",
    ],
    ...r.stages.map((s) => [
      String(s.stage),
      String(s.layers),
      formatCount(s.trainableParams),
      formatCount(s.frozenParams),
      formatCount(s.adapterParams),
      s.valLoss.toFixed(4),
      `${formatBytes(s.measuredPeakBytes)}`,
      `${formatBytes(s.predictedPeakBytes)}`,
      (s.measuredPeakBytes / s.predictedPeakBytes).toFixed(4),
    ]),
  ];
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? "").length))) ??
    [];
  const table = rows.map((row) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join("  ")
  );
  const peak = Math.max(...r.stages.map((s) => s.measuredPeakBytes));
  return [
    "Summary (model state = weights + gradients + Adam moments, fp32):",
    ...table,
    r.stages.length === 1
      ? `Peak ${formatBytes(peak)} measured (standard pre-training)`
      : `STEP peak ${formatBytes(peak)} measured; standard pre-training of the final model: ${
        formatBytes(r.standardPredictedPeakBytes)
      } predicted (${((1 - peak / r.standardPredictedPeakBytes) * 100).toFixed(1)}% less)`,
    `Final val loss ${r.finalValLoss.toFixed(4)}; after merging the adapters ${
      r.mergedValLoss.toFixed(4)
    }`,
    `Final model (adapters merged): ${r.finalCheckpoint}`,
  ].join("\n");
}

/** A metrics record as the log writes it. */
export type MetricRecord = Readonly<Record<string, unknown>>;

/** Loss curve: training loss per step, validation loss, stage boundaries, the data's floor. */
export function lossChartSvg(
  title: string,
  records: readonly MetricRecord[],
  floorNats: number | undefined,
): string {
  const train = records.filter((r) => r.type === "train").map((r) =>
    [Number(r.globalStep), Number(r.loss)] as const
  );
  const val = records.filter((r) => r.type === "eval").map((r) =>
    [Number(r.globalStep), Number(r.valLoss)] as const
  );
  const markers = records.filter((r) => r.type === "grow").map((r) => ({
    x: Number(r.globalStep),
    label: `grow → ${r.layers}L`,
  }));
  return lineChart({
    title,
    xLabel: "optimizer step",
    yLabel: "cross-entropy (nats/token)",
    series: [
      { name: "train loss", points: train },
      { name: "val loss", points: val, dashed: true },
    ],
    markers,
    ...(floorNats === undefined ? {} : { floor: { value: floorNats, label: "data floor" } }),
  });
}

/** Measured against predicted model state per stage, beside standard pre-training. */
export function memoryChartSvg(title: string, r: RunResult): string {
  const fmt = (v: number): string => formatBytes(v);
  return stackedBarChart({
    title,
    yLabel: "model state (fp32)",
    format: fmt,
    bars: [
      ...r.stages.flatMap((s) => [
        {
          label: `s${s.stage} measured`,
          segments: [
            { name: "trained weights", value: s.measuredPeak.trainableWeights },
            { name: "adapters", value: s.measuredPeak.adapters },
            { name: "gradients", value: s.measuredPeak.gradients },
            { name: "Adam m, v", value: s.measuredPeak.optimizer },
            { name: "frozen weights", value: s.measuredPeak.frozen },
          ],
        },
        {
          label: `s${s.stage} predicted`,
          segments: [{ name: "predicted", value: s.predictedPeakBytes }],
          reference: true,
        },
      ]),
      {
        label: "standard",
        segments: [{ name: "standard", value: r.standardPredictedPeakBytes }],
        reference: true,
      },
    ],
  });
}
