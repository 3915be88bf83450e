/**
 * Fine-tuning as a stage graph: one `train` node over every layer of the base, whose
 * `training:` section is the fine-tuning settings, so the interpreter's fold (`train_stage.ts`)
 * trains it like any stage — the same schedule function (warmup, then a cosine to 0:
 * `minLrRatio: 0`, Alpaca's and the Hugging Face `cosine` schedule's floor), the same step
 * hyper-parameters, skip counting, checkpoints and progress — and the run's voice writes
 * fine-tuning's records and lines.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ext, formatDuration, type LlamaShape, type PipelineError } from "../base/mod.ts";
import { countedTargets, epochOf, type FinetunePlan } from "./finetune_plan.ts";
import type { RunState } from "./run_state.ts";
import type { RunVoice } from "./run_voice.ts";
import { pipeline, train } from "./stage_graph.ts";
import { validateGraph, type ValidGraph } from "./validate_graph.ts";

/** The id of fine-tuning's one node: what its errors name. */
export const FINETUNE_NODE = "finetune";

/**
 * The graph of a fine-tuning run by `plan` of a base of `shape`. A step holds at most
 * `batch / microBatch` micro-batches (rounded up) of at most the model's context each, which is
 * what `seqLen`, `microBatch` and `batchTokens` say; the data effect pads each micro-batch only
 * to its longest example.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeShape } from "../base/mod.ts";
 * import { finetuneGraph } from "./finetune_graph.ts";
 * import { finetunePlan } from "./finetune_plan.ts";
 * import { FINETUNE_DEFAULTS } from "./finetune_settings.ts";
 * const shape = completeShape({ hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 64 } as never);
 * const plan = finetunePlan(FINETUNE_DEFAULTS, 100);
 * const g = plan._tag === "Right" ? finetuneGraph(shape, plan.right) : plan;
 * assert(g._tag === "Right" && g.right.totalSteps === 24 && g.right.training.minLrRatio === 0);
 * ```
 */
export function finetuneGraph(
  shape: LlamaShape,
  plan: FinetunePlan,
): ext.Either<PipelineError, ValidGraph> {
  const S = plan.settings;
  const accumulation = Math.ceil(S.batch / plan.microBatch);
  const graph = pipeline({
    name: FINETUNE_NODE,
    model: shape,
    training: {
      seqLen: shape.maxSeqLen,
      microBatch: plan.microBatch,
      batchTokens: accumulation * plan.microBatch * shape.maxSeqLen,
      steps: plan.steps,
      lr: S.lr,
      warmup: plan.warmup,
      minLrRatio: 0,
      weightDecay: S.weightDecay,
      beta1: S.beta1,
      beta2: S.beta2,
      eps: S.eps,
      clip: S.clip,
      seed: S.seed,
      // The held-out set is measured before the first step and after the last (the run's own
      // evaluations), never in between: a period of the whole run falls on its last step, which
      // the fold leaves to the run's end.
      evalEvery: plan.steps,
      evalBatches: Math.max(1, Math.ceil(plan.heldOut.length / plan.microBatch)),
      checkpointEvery: S.checkpointEvery,
      logEvery: S.logEvery,
      maxSkippedSteps: S.maxSkippedSteps,
    },
  }, [train({ id: FINETUNE_NODE, layers: shape.layers, steps: plan.steps })]);
  return E.flatMap(validateGraph)(graph);
}

/** What fine-tuning tells a user to change when a run diverges: its flags. */
export const FINETUNE_ADVICE = "lower --lr or raise --warmup";

/** Which checkpoint a stopped fine-tuning run keeps. */
export function finetuneKept(s: RunState): string {
  return s.savedAt === undefined
    ? "no checkpoint was written yet"
    : `the checkpoint of global step ${s.savedAt} is kept`;
}

/**
 * Fine-tuning's voice: `train` records with the step's epoch and response tokens, a progress
 * line with the epoch, and a run none of whose steps updated the base refused by `untrained`
 * (its weights are finite, so it is the base that is broken, not the LR).
 */
export function finetuneVoice(
  plan: FinetunePlan,
  untrained: (message: string) => PipelineError,
): RunVoice {
  return {
    stepRecord: ({ k, outcome: o, lr, batches }) => ({
      type: "train",
      step: k + 1,
      epoch: epochOf(plan, k),
      loss: o.loss,
      lr,
      gradNorm: o.gradNorm,
      responseTokens: countedTargets(batches),
      ...(o.skipped ? { skipped: true } : {}),
    }),
    progressLine: ({ k, outcome, lr, tokensPerSecond, etaMs }) =>
      `[finetune ${k + 1}/${plan.steps} epoch ${epochOf(plan, k) + 1}/${plan.settings.epochs}] ` +
      `loss ${outcome.loss.toFixed(4)}  lr ${lr.toExponential(2)}  ${
        Math.round(tokensPerSecond)
      } tok/s  ETA ${formatDuration(etaMs)}`,
    kept: finetuneKept,
    advice: FINETUNE_ADVICE,
    untrained,
  };
}
