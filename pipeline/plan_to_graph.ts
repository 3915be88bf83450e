/**
 * From a config and its plan to the stage graph `deno task run` executes:
 * stage 1 trains n_1 layers; every later stage grows by n_i, attaches ReLoRA to
 * the frozen layers and continues. Steps come from the FLOPs-matched budget.
 *
 * @module
 */
import type { Plan } from "../solvers/mod.ts";
import type { Config } from "./config.ts";
import type { Pipeline, StageNode } from "./stage_graph.ts";

/** Builds the stage graph of a plan (ids `s1.train`, `s2.grow`, `s2.pet`, `s2.continue`, …). */
export function planToGraph(config: Config, plan: Plan): Pipeline {
  const nodes: StageNode[] = [];
  const budget = plan.budget;
  plan.split.forEach((added, idx) => {
    const stage = idx + 1;
    const b = budget?.stages[idx];
    const steps = b?.steps ?? config.training.steps;
    const scheduleSteps = b?.scheduleSteps ?? steps;
    const schedule = {
      steps,
      scheduleSteps,
      lr: config.training.lr,
      warmup: Math.min(config.training.warmup, Math.max(0, scheduleSteps - 1)),
    };
    if (stage === 1) {
      nodes.push({ op: "train", id: "s1.train", layers: added, ...schedule } as StageNode);
    } else {
      nodes.push({
        op: "grow",
        id: `s${stage}.grow`,
        add: added,
        placement: config.plan.placement,
      } as StageNode);
      nodes.push({
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
      } as StageNode);
      nodes.push({ op: "continue", id: `s${stage}.continue`, ...schedule } as StageNode);
    }
  });
  return {
    version: 1,
    name: config.name,
    model: { ...config.shape },
    training: { ...config.training },
    data: {
      source: config.data.source,
      tokenizer: config.data.tokenizer,
      textField: config.data.textField,
      valFraction: config.data.valFraction,
      cacheDir: config.data.cacheDir,
      builtinBytes: config.data.builtinBytes,
      ...(config.data.validation === undefined ? {} : { validation: config.data.validation }),
    },
    ...(budget === undefined ? {} : { flops: budget.flops }),
    ...(plan.mode.kind === "budget" ? { memoryBudget: plan.mode.bytes } : {}),
    nodes,
  } as Pipeline;
}
