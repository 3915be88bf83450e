/**
 * From a config and its plan to the stage graph `deno task run` executes:
 * stage 1 trains n_1 layers; every later stage grows by n_i, attaches ReLoRA to
 * the frozen layers and continues. Steps come from the FLOPs-matched budget.
 *
 * @module
 */
import type { Plan } from "../solvers/mod.ts";
import { type Config, graphDataSection } from "./config.ts";
import type { Pipeline, StageNode } from "./stage_graph.ts";

/** One stage's length: the steps it runs and its warmup + cosine schedule's length. */
export interface StageLength {
  readonly steps: number;
  readonly scheduleSteps: number;
}

/**
 * STEP's nodes for a split: `train` n_1 layers, then per stage `grow` by n_i, `attachPET` on the
 * frozen layers and `continue`; ids `s1.train`, `s2.grow`, `s2.pet`, `s2.continue`, ….
 */
export function stepNodes(
  config: Config,
  split: readonly number[],
  lengths: readonly StageLength[],
): StageNode[] {
  return split.flatMap((added, idx): StageNode[] => {
    const stage = idx + 1;
    const { steps, scheduleSteps } = lengths[idx] ?? {
      steps: config.training.steps,
      scheduleSteps: config.training.steps,
    };
    const schedule = {
      steps,
      scheduleSteps,
      lr: config.training.lr,
      warmup: Math.min(config.training.warmup, Math.max(0, scheduleSteps - 1)),
    };
    if (stage === 1) {
      return [{ op: "train", id: "s1.train", layers: added, ...schedule } as StageNode];
    }
    return [
      {
        op: "grow",
        id: `s${stage}.grow`,
        add: added,
        placement: config.plan.placement,
      } as StageNode,
      {
        op: "attachPET",
        id: `s${stage}.pet`,
        kind: "relora",
        rank: config.pet.rank,
        alpha: config.pet.alpha,
        targets: [...config.pet.targets],
        resetEvery: config.pet.resetEvery,
        restartWarmup: Math.min(config.pet.restartWarmup, config.pet.resetEvery - 1),
        pruneRatio: config.pet.pruneRatio,
        trainEmbeddings: config.memory.trainEmbeddingsAfterStage1,
      } as StageNode,
      { op: "continue", id: `s${stage}.continue`, ...schedule } as StageNode,
    ];
  });
}

/** Builds the stage graph of a plan (ids `s1.train`, `s2.grow`, `s2.pet`, `s2.continue`, …). */
export function planToGraph(config: Config, plan: Plan): Pipeline {
  const budget = plan.budget;
  const nodes = stepNodes(
    config,
    plan.split,
    plan.split.map((_, idx) => {
      const b = budget?.stages[idx];
      const steps = b?.steps ?? config.training.steps;
      return { steps, scheduleSteps: b?.scheduleSteps ?? steps };
    }),
  );
  return {
    version: 1,
    name: config.name,
    model: { ...config.shape },
    training: { ...config.training },
    data: graphDataSection(config.data),
    ...(budget === undefined ? {} : { flops: budget.flops }),
    ...(plan.mode.kind === "budget" ? { memoryBudget: plan.mode.bytes } : {}),
    nodes,
  } as Pipeline;
}
