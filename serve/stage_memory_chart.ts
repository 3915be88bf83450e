/**
 * A run's memory per stage as `charts/`'s stacked bars: the measured peak split into model
 * state by role and the rest (activations, workspace), beside the plan's predicted peak, with
 * the memory budget as a line. Stages the run has not finished show their prediction alone.
 *
 * @module
 */
import { type Bar, stackedBarChart } from "../charts/mod.ts";
import { formatBytes } from "../base/mod.ts";
import type { StageRecord } from "../pipeline/mod.ts";
import { measuredStageBar } from "../report/mod.ts";
import type { PlannedStage } from "./graph_view.ts";

/** The chart, or null when there is nothing to draw yet. */
export function stageMemorySvg(
  measured: readonly StageRecord[],
  planned: readonly PlannedStage[],
  budget: number | null,
): string | null {
  const stages = [...new Set([...planned.map((p) => p.stage), ...measured.map((m) => m.stage)])]
    .sort((a, b) => a - b);
  const bars: Bar[] = stages.flatMap((stage) => {
    const m = measured.find((s) => s.stage === stage);
    const p = planned.find((s) => s.stage === stage);
    const predicted = m?.predictedPeakBytes ?? p?.predictedPeakBytes ?? null;
    return [
      ...(m === undefined ? [] : [measuredStageBar(m)]),
      ...(predicted === null ? [] : [{
        label: `s${stage} predicted`,
        segments: [{ name: "predicted", value: predicted }],
        reference: true,
      }]),
    ];
  });
  if (bars.length === 0) return null;
  return stackedBarChart({
    title: "Peak memory per stage: measured (by role) and predicted",
    yLabel: "bytes at the step's peak",
    format: formatBytes,
    bars,
    ...(budget === null ? {} : { line: { value: budget, label: "memory budget" } }),
  });
}
