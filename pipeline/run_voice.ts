/**
 * How a kind of run speaks: the record each optimizer step appends to `metrics.jsonl`, its
 * progress line, and the words a stopped run ends with. The training fold (`train_stage.ts`) is
 * one for every kind of run; pre-training and fine-tuning (`finetune_run.ts`) differ only in
 * their voice, chosen once in the run's facts.
 *
 * @module
 */
import { formatBytes, formatDuration, type PipelineError } from "../base/mod.ts";
import { enginePeakBytes, type Env, type MicroBatch, type StepOutcome } from "./effects.ts";
import type { MetricRecord } from "./metrics_records.ts";
import type { StagePrediction } from "./predict.ts";
import { keptCheckpoint, type RunState } from "./run_state.ts";
import type { GraphStage } from "./validate_graph.ts";

/** One optimizer step, as the fold hands it to the voice. */
export interface StepAt {
  /** The stage the fold trains. */
  readonly stage: GraphStage;
  /** The step within the stage, from 0. */
  readonly k: number;
  /** The run after the step. */
  readonly state: RunState;
  /** What the engine's step reported. */
  readonly outcome: StepOutcome;
  /** The step's learning rate. */
  readonly lr: number;
  /** What the step trained on. */
  readonly batches: readonly MicroBatch[];
}

/** A step with this session's pace, for the progress line. */
export interface ProgressAt extends StepAt {
  /** Input tokens per second since the last progress line. */
  readonly tokensPerSecond: number;
  /** Milliseconds to the end of the run at this session's pace. */
  readonly etaMs: number;
}

/** How a kind of run writes and prints what the fold does. */
export interface RunVoice {
  /** The `train` record of a step. */
  stepRecord(at: StepAt): MetricRecord;
  /** The line printed every `logEvery` steps, after the first and after the stage's last. */
  progressLine(at: ProgressAt, env: Env): string;
  /** Which checkpoint a stopped run leaves to resume from, in words. */
  kept(s: RunState): string;
  /** What to change when the run diverged (how this kind of run lowers its LR). */
  readonly advice: string;
  /**
   * The refusal when no step has updated the weights yet and the run stops for it: its
   * starting weights are broken, whatever the LR (unset: the run diverged, like any other).
   */
  untrained?(message: string): PipelineError;
}

/** Where pre-training's advice sends a user: the config file's fields. */
export const PRETRAINING_ADVICE = "lower training.lr or raise warmup";

/**
 * Pre-training's voice: `train` records stamped with the run's global step, and a progress line
 * with the stage's measured peak beside the plan's prediction (`predicted`, one per stage).
 */
export function pretrainingVoice(predicted: readonly StagePrediction[]): RunVoice {
  return {
    stepRecord: ({ stage, k, state, outcome: o, lr }) => ({
      type: "train",
      node: stage.trainNodeId,
      stage: stage.index,
      step: k + 1,
      loss: o.loss,
      lr,
      gradNorm: o.gradNorm,
      tokens: state.progress.tokens,
      // The record's field keeps its first name (metrics.jsonl's readers know it by it): it is
      // the accounted model state at the step's peak, not a measured figure.
      memoryBytes: o.accounted.total,
      ...(o.skipped ? { skipped: true } : {}),
      ...((o.projectorUpdates ?? 0) > 0 ? { projectorUpdates: o.projectorUpdates } : {}),
      ...((o.svdFailures ?? 0) > 0 ? { svdFailures: o.svdFailures } : {}),
      globalStep: state.progress.globalStep,
    }),
    progressLine: (at, env) => {
      const { stage, state } = at;
      const pred = predicted[stage.index - 1];
      const peak = state.progress.stagePeak;
      const measured = peak === null ? 0 : enginePeakBytes(peak.measured);
      const process = env.processMemory.peakBytes();
      return `[stage ${stage.index} ${stage.trainNodeId} ${at.k + 1}/${stage.steps}] loss ${
        at.outcome.loss.toFixed(4)
      }  lr ${at.lr.toExponential(2)}  ${Math.round(at.tokensPerSecond)} tok/s  ETA ${
        formatDuration(at.etaMs)
      }  peak ${formatBytes(measured)} (predicted ${formatBytes(pred?.peakBytes ?? 0)})  state ${
        formatBytes(at.outcome.accounted.total)
      }${process === undefined ? "" : `  process ${formatBytes(process)}`}`;
    },
    kept: keptCheckpoint,
    advice: PRETRAINING_ADVICE,
  };
}
