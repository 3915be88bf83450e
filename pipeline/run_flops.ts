/**
 * A validated graph's compute in both accountings: the paper's rule (6·N trained + 2·N frozen
 * per token, non-embedding; `graph_flops.ts`) and the matmuls the engine executes
 * (`solvers/executed_flops.ts`, GaLore's projections included), per stage and along the run.
 *
 * @module
 */
import { executedFlopsPerToken, galoreStepExtraFlops } from "../solvers/mod.ts";
import { graphFlops } from "./graph_flops.ts";
import type { ValidGraph } from "./validate_graph.ts";

/** Per-token FLOPs of each stage of a graph under one accounting (GaLore's projections included). */
export function stagePricesPerToken(
  g: ValidGraph,
  accounting: "paper" | "executed",
): number[] {
  const T = g.training;
  if (accounting === "paper") {
    // GaLore trains every weight: the paper charges it as standard training.
    return graphFlops({ shape: g.shape, stages: g.stages, batchTokens: T.batchTokens }).stages
      .map((s) => s.flopsPerToken);
  }
  return g.stages.map((s) => {
    const f = executedFlopsPerToken({
      shape: g.shape,
      roles: s.roles,
      adapterRank: s.pet?.rank ?? 0,
      seqLen: T.seqLen,
      recompute: T.recompute,
      microBatch: T.microBatch,
      ...(T.lossChunk === undefined ? {} : { lossChunk: T.lossChunk }),
    }).total;
    const galore = s.galore === undefined
      ? 0
      : galoreStepExtraFlops(g.shape, s.layers, s.galore) / T.batchTokens;
    return f + galore;
  });
}

/** A run's compute in both accountings. */
export interface RunFlops {
  /** FLOPs in the paper's accounting (6·N trained + 2·N frozen per token, non-embedding). */
  readonly paper: number;
  /** FLOPs of the matmuls the engine executes. */
  readonly executed: number;
  /** Tokens trained on. */
  readonly tokens: number;
  /** Optimizer steps of the run. */
  readonly steps: number;
  /** Cumulative FLOPs (matched accounting) at the end of each stage, by global step. */
  readonly stageEnds: readonly { readonly globalStep: number; readonly flops: number }[];
}

/** Both figures of a validated graph; `stageEnds` in `matched` accounting. */
export function runFlops(g: ValidGraph, matched: "paper" | "executed"): RunFlops {
  const B = g.training.batchTokens;
  const total = (perToken: readonly number[]) =>
    g.stages.reduce((a, s, i) => a + (perToken[i] ?? 0) * s.steps * B, 0);
  const paper = stagePricesPerToken(g, "paper");
  const executed = stagePricesPerToken(g, "executed");
  const used = matched === "paper" ? paper : executed;
  let step = 0;
  let flops = 0;
  const stageEnds = g.stages.map((s, i) => {
    step += s.steps;
    flops += (used[i] ?? 0) * s.steps * B;
    return { globalStep: step, flops };
  });
  return {
    paper: total(paper),
    executed: total(executed),
    tokens: g.totalSteps * B,
    steps: g.totalSteps,
    stageEnds,
  };
}

/** FLOPs spent by global step `step`, from a run's stage ends (linear within a stage). */
export function flopsAtStep(f: RunFlops, step: number): number {
  let prevStep = 0;
  let prevFlops = 0;
  for (const end of f.stageEnds) {
    if (step <= end.globalStep) {
      const span = end.globalStep - prevStep;
      return prevFlops + (span === 0 ? 0 : (end.flops - prevFlops) * (step - prevStep) / span);
    }
    prevStep = end.globalStep;
    prevFlops = end.flops;
  }
  return prevFlops;
}
