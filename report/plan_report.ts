/**
 * How a plan is shown: a human table, one JSON object, and the paper's Fig. 2
 * as SVG (memory per stage, stacked by term, beside the baselines).
 *
 * @module
 */
import { stackedBarChart } from "../charts/mod.ts";
import { adapterParamsPerLayer, formatBytes, formatCount, paramCounts } from "../base/mod.ts";
import {
  bytesPerParam,
  embeddingParams,
  galoreRankText,
  type Plan,
  type StageTerms,
} from "../solvers/mod.ts";
import type { Config } from "../pipeline/mod.ts";

/** Human names of the memory terms; starred ones are outside Eq. 1–2. */
export const TERM_LABELS: Readonly<Record<keyof StageTerms, string>> = {
  newLayers: "new layers",
  frozenLayers: "frozen layers",
  adapters: "adapters",
  embeddings: "embeddings*",
  activations: "activations*",
};

const TERMS = Object.keys(TERM_LABELS) as (keyof StageTerms)[];

/** The assumptions a plan was made under, as plain data. */
export function planAssumptions(config: Config): Record<string, unknown> {
  const m = config.memory;
  const counts = paramCounts(config.shape);
  return {
    precision: m.precision,
    bytesPerParam: bytesPerParam(m.precision),
    paramsPerLayer: counts.perLayer,
    adapter: {
      kind: config.pet.kind,
      rank: config.pet.rank,
      targets: config.pet.targets,
      paramsPerLayer: adapterParamsPerLayer(config.shape, config.pet.rank, config.pet.targets),
    },
    galore: { rank: config.galore.rank, targets: config.galore.targets },
    embeddings: m.embeddings,
    embeddingParams: embeddingParams(config.shape),
    trainEmbeddingsAfterStage1: m.trainEmbeddingsAfterStage1,
    activations: m.activations ?? false,
    minLayersPerStage: config.plan.minLayers,
    outsidePaperFormula: [
      ...(m.embeddings ? ["embeddings"] : []),
      ...(m.activations !== undefined ? ["activations"] : []),
    ],
    gigabyte: 1e9,
  };
}

/** The plan as one JSON-ready object (bytes are plain numbers). */
export function planJson(plan: Plan, config: Config): Record<string, unknown> {
  return {
    name: config.name,
    mode: plan.mode,
    split: plan.split,
    stages: plan.stages.map((s) => ({
      stage: s.stage,
      layers: s.layers,
      added: s.added,
      bytes: s.bytes,
      terms: s.terms,
      params: s.params,
    })),
    peakBytes: plan.peakBytes,
    standardBytes: plan.standardBytes,
    reduction: plan.reduction,
    baselines: {
      standard: plan.baselines.standard,
      relora: plan.baselines.relora.bytes,
      galore: plan.baselines.galore.bytes,
    },
    baselineDetails: {
      relora: plan.baselines.relora,
      galore: plan.baselines.galore,
    },
    solver: plan.solver,
    assumptions: planAssumptions(config),
    ...(plan.budgetSearch === undefined ? {} : { budgetSearch: plan.budgetSearch }),
    ...(plan.budget === undefined ? {} : { budget: plan.budget }),
  };
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
  return rows.map((r) =>
    r.map((cell, c) => c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))
      .join("  ")
  ).join("\n");
}

/** The plan as text for a terminal. */
export function planText(plan: Plan, config: Config): string {
  const m = config.memory;
  const P = paramCounts(config.shape).perLayer;
  const E = adapterParamsPerLayer(config.shape, config.pet.rank, config.pet.targets);
  const b = bytesPerParam(m.precision);
  const modeLine = plan.mode.kind === "optimal"
    ? `optimal split for ${plan.mode.stages} stage(s), solved by HiGHS`
    : plan.mode.kind === "split"
    ? "given split, evaluated"
    : `fewest stages whose peak fits ${formatBytes(plan.mode.bytes)} (HiGHS per stage count)`;
  const lines = [
    `STEP plan "${config.name}": L = ${config.shape.layers} layers, P_layer = ${
      formatCount(P)
    }, E = ${formatCount(E)} per layer (ReLoRA r = ${config.pet.rank} on ${
      config.pet.targets.join(",")
    })`,
    `Assumptions: ${
      m.precision === "mixed" ? "mixed-precision Adam" : "fp32 Adam"
    } (${b.weight}+${b.grad}+${b.optimizer} B per trained param, ${b.weight} B per frozen param); embeddings ${
      m.embeddings
        ? `counted (${formatCount(embeddingParams(config.shape))}, ${
          m.trainEmbeddingsAfterStage1 ? "trained in every stage" : "frozen after stage 1"
        })`
        : "not counted"
    }; activations ${
      m.activations === undefined
        ? "not counted"
        : `counted (micro-batch ${m.activations.microBatch} × ${m.activations.seqLen} tokens${
          (m.activations.accumulation ?? 1) > 1 ? ` × ${m.activations.accumulation} summed` : ""
        }${m.activations.recompute ? ", layers recomputed" : ""}${
          m.activations.lossChunk === undefined
            ? ""
            : `, loss in chunks of ${m.activations.lossChunk} tokens`
        }; each stage at its step's busiest moment, ${
          m.activations.attention === "composite" ? "composite" : "fused"
        } attention)`
    }`,
    `Mode: ${modeLine}. Split: [${plan.split.join(", ")}]`,
    "",
  ];
  const shown = TERMS.filter((t) =>
    t === "newLayers" || t === "frozenLayers" || t === "adapters" ||
    plan.stages.some((s) => s.terms[t] > 0)
  );
  const header = [
    "stage",
    "layers",
    "added",
    "trained",
    "frozen",
    "adapter",
    ...shown.map((t) => TERM_LABELS[t]),
    "total",
  ];
  const rows = plan.stages.map((s) => [
    String(s.stage),
    String(s.layers),
    String(s.added),
    formatCount(s.params.trainable),
    formatCount(s.params.frozen),
    formatCount(s.params.adapters),
    ...shown.map((t) => formatBytes(s.terms[t])),
    formatBytes(s.bytes) + (s.bytes === plan.peakBytes ? " ◀ peak" : ""),
  ]);
  lines.push(table([header, ...rows]), "");
  const bl = plan.baselines;
  const vs = (x: number): string =>
    `${((1 - x / bl.standard) * 100).toFixed(1)}% less than standard`;
  lines.push(
    table([
      ["method", "peak", ""],
      ["standard (Eq. 1)", formatBytes(bl.standard), ""],
      [
        "ReLoRA",
        formatBytes(bl.relora.bytes),
        `full-rank warm start; LoRA phase ${formatBytes(bl.relora.loraPhaseBytes)}`,
      ],
      [
        "GaLore",
        formatBytes(bl.galore.bytes),
        `${galoreRankText(config.shape, config.galore)}; ${vs(bl.galore.bytes)}`,
      ],
      [`STEP-${plan.split.length}stages`, formatBytes(plan.peakBytes), vs(plan.peakBytes)],
    ]),
  );
  if (plan.budgetSearch !== undefined) {
    lines.push(
      "",
      "Stage counts probed: " +
        plan.budgetSearch.map((p) => `K=${p.stages}: ${formatBytes(p.peakBytes)}`).join(", "),
    );
  }
  const budget = plan.budget;
  const methodRow = (
    name: string,
    run: { readonly flopsPerToken: number; readonly tokens: number; readonly steps: number },
  ): string[] => [
    name,
    run.flopsPerToken.toExponential(3),
    formatCount(run.tokens),
    String(run.steps),
    "",
  ];
  if (budget !== undefined) {
    lines.push(
      "",
      `Compute budget: ${
        budget.flops.toExponential(3)
      } FLOPs (6·N_trained + 2·N_frozen per token, non-embedding), batch ${budget.batchTokens} tokens`,
      table([
        ["run", "FLOPs/token", "tokens", "steps", "schedule"],
        ...budget.stages.map((s) => [
          `STEP stage ${s.stage}`,
          s.flopsPerToken.toExponential(3),
          formatCount(s.tokens),
          String(s.steps),
          String(s.scheduleSteps),
        ]),
        [
          "STEP total",
          "",
          formatCount(budget.stepTotal.tokens),
          String(budget.stepTotal.steps),
          "",
        ],
        methodRow("standard", budget.standard),
        methodRow("ReLoRA (LoRA phase)", budget.relora),
        methodRow("GaLore", budget.galore),
      ]),
    );
  }
  if (shown.some((t) => t === "embeddings" || t === "activations")) {
    lines.push("", "* outside the paper's Eq. 1–2");
  }
  return lines.join("\n");
}

/** The paper's Fig. 2: memory per stage, stacked by term, beside the baselines. */
export function planSvg(plan: Plan, config: Config): string {
  const gb = (v: number): string => `${(v / 1e9).toFixed(v >= 1e10 ? 1 : 2)} GB`;
  const stageBars = plan.stages.map((s) => ({
    label: `stage ${s.stage} (${s.layers}L)`,
    segments: TERMS.map((t) => ({ name: TERM_LABELS[t], value: s.terms[t] })),
  }));
  return stackedBarChart({
    title: `${config.name}: STEP memory per stage vs standard pre-training`,
    yLabel: "model-state memory (GB = 1e9 B)",
    format: gb,
    bars: [
      ...stageBars,
      {
        label: "standard",
        segments: [{ name: "standard (Eq. 1)", value: plan.baselines.standard }],
        reference: true,
      },
      {
        label: "GaLore",
        segments: [{ name: "GaLore", value: plan.baselines.galore.bytes }],
        reference: true,
      },
    ],
    line: { value: plan.peakBytes, label: `STEP peak ${gb(plan.peakBytes)}` },
  });
}
