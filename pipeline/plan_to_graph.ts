/**
 * From a config and its plan to the stage graph `deno task run` executes:
 * stage 1 trains n_1 layers; every later stage grows by n_i, attaches ReLoRA to
 * the frozen layers and continues. Steps come from the FLOPs-matched budget.
 * A config without a plan (no `nodes:`) is standard pre-training: one `train` node.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { type ConfigInvalid, configInvalid, decodeWith, type ext, FileName } from "../base/mod.ts";
import type { Plan } from "../solvers/mod.ts";
import type { Config } from "./config.ts";
import {
  attachPET,
  continueTraining,
  grow,
  type Pipeline,
  type StageNode,
  train,
} from "./stage_graph.ts";

/** One stage's length: the steps it runs and its warmup + cosine schedule's length. */
export interface StageLength {
  /** Optimizer steps the stage runs. */
  readonly steps: number;
  /** Length of its warmup + cosine schedule. */
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
    if (stage === 1) return [train({ id: "s1.train", layers: added, ...schedule })];
    return [
      grow({ id: `s${stage}.grow`, add: added, placement: config.plan.placement }),
      attachPET({
        id: `s${stage}.pet`,
        kind: "relora",
        rank: config.pet.rank,
        alpha: config.pet.alpha,
        targets: [...config.pet.targets],
        resetEvery: config.pet.resetEvery,
        restartWarmup: Math.min(config.pet.restartWarmup, config.pet.resetEvery - 1),
        pruneRatio: config.pet.pruneRatio,
        trainEmbeddings: config.memory.trainEmbeddingsAfterStage1,
      }),
      continueTraining({ id: `s${stage}.continue`, ...schedule }),
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
    training: config.training,
    data: config.data,
    ...(budget === undefined ? {} : { flops: budget.flops }),
    ...(plan.mode.kind === "budget" ? { memoryBudget: plan.mode.bytes } : {}),
    nodes,
  } as Pipeline;
}

/**
 * The graph of a config without `nodes:`: standard pre-training, one `train` node of the full
 * depth for `training.steps`, with the config's settings as they were decoded. The run's folder
 * is named after the graph, so a name taken from the file's must be a plain file name too.
 */
export function standardGraph(config: Config, file: string): ext.Either<ConfigInvalid, Pipeline> {
  const named = decodeWith(t.type({ name: FileName }), { name: config.name });
  if (E.isLeft(named)) return E.left(configInvalid(file, named.left.join("; ")));
  return E.right({
    version: 1,
    name: named.right.name,
    model: { ...config.shape },
    training: config.training,
    data: config.data,
    nodes: [train({ id: "standard", layers: config.shape.layers, steps: config.training.steps })],
  } as Pipeline);
}
