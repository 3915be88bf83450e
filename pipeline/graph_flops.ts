/**
 * The compute a stage graph spends, in the paper's accounting (spec §4): a
 * training token costs 6·N FLOPs for N trained parameters and 2·N for N
 * frozen ones, non-embedding parameters only, adapters counted as trained.
 * `budget.flops` in a plan becomes a graph's `flops`; validation checks that
 * the nodes add up to it.
 *
 * @module
 */
import type { LlamaShape, Projection } from "../base/mod.ts";
import { stageFlopsPerToken } from "../solvers/mod.ts";

/** What the count reads of one stage. */
export interface FlopsStage {
  /** n_i: layers this stage adds. */
  readonly added: number;
  /** Optimizer steps of the stage. */
  readonly steps: number;
  /** Adapters on the frozen layers, if any. */
  readonly pet: { readonly rank: number; readonly targets: readonly Projection[] } | undefined;
}

/** The graph's compute, per stage and in total. */
export interface GraphFlops {
  /** Per stage: its number, FLOPs per token (6·trained + 2·frozen), tokens and FLOPs. */
  readonly stages: readonly {
    readonly stage: number;
    readonly flopsPerToken: number;
    readonly tokens: number;
    readonly flops: number;
  }[];
  /** The whole graph's FLOPs. */
  readonly total: number;
  /** One optimizer step of every stage: how far rounding steps to integers can move the total. */
  readonly oneStepPerStage: number;
}

/**
 * FLOPs of `stages` at `batchTokens` tokens per step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { graphFlops } from "./graph_flops.ts";
 * import { completeShape } from "../base/mod.ts";
 * const shape = completeShape({ hidden: 64, intermediate: 176, heads: 4, layers: 2, vocab: 257 } as never);
 * const f = graphFlops({ shape, stages: [{ added: 2, steps: 10, pet: undefined }], batchTokens: 1024 });
 * assert(f.total === f.stages[0]!.flopsPerToken * 10 * 1024);
 * ```
 */
export function graphFlops(input: {
  readonly shape: LlamaShape;
  readonly stages: readonly FlopsStage[];
  readonly batchTokens: number;
}): GraphFlops {
  const split = input.stages.map((s) => s.added);
  const stages = input.stages.map((s, idx) => {
    const flopsPerToken = stageFlopsPerToken(
      {
        shape: input.shape,
        adapter: s.pet === undefined ? { rank: 0, targets: [] } : s.pet,
        assumptions: {
          precision: "fp32",
          embeddings: false,
          trainEmbeddingsAfterStage1: false,
          activations: undefined,
        },
      },
      split,
      idx + 1,
    );
    const tokens = s.steps * input.batchTokens;
    return { stage: idx + 1, flopsPerToken, tokens, flops: flopsPerToken * tokens };
  });
  return {
    stages,
    total: stages.reduce((a, s) => a + s.flops, 0),
    oneStepPerStage: stages.reduce((a, s) => a + s.flopsPerToken * input.batchTokens, 0),
  };
}
