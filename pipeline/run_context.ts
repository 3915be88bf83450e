/**
 * What the interpreter and the training loop share while a graph runs: the
 * effects, the graph's fixed facts, and the mutable cursor (progress and
 * engine state) that checkpoints save.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import type { StageMemory } from "../solvers/memory_model.ts";
import type { TrainingSettings } from "./config.ts";
import type { DataPosition, EngineState, Env, MemoryByRole, MicroBatch } from "./effects.ts";
import type { PipelineError } from "./errors.ts";

/** What one finished stage measured. */
export interface StageRecord {
  readonly stage: number;
  readonly node: string;
  readonly layers: number;
  readonly trainableParams: number;
  readonly frozenParams: number;
  readonly adapterParams: number;
  readonly steps: number;
  readonly valLoss: number;
  readonly merges: number;
  readonly measuredPeakBytes: number;
  readonly measuredPeak: MemoryByRole;
  readonly predictedPeakBytes: number;
}

/** The interpreter's progress: saved with every checkpoint. */
export interface RunProgress {
  readonly version: 1;
  /** Fingerprint of the graph; a checkpoint only resumes the graph that wrote it. */
  readonly graphId: string;
  readonly nodeIndex: number;
  readonly stepInNode: number;
  readonly globalStep: number;
  readonly tokens: number;
  readonly data: DataPosition;
  /** Metrics records written so far (a resumed run truncates the log to this). */
  readonly metrics: number;
  readonly stages: readonly StageRecord[];
  /** Largest model state measured so far in the running stage. */
  readonly stagePeak: MemoryByRole | null;
  readonly merges: number;
}

/** The state of one run of a graph. Only `progress` and `state` change. */
export interface RunContext {
  readonly env: Env;
  readonly settings: TrainingSettings;
  /** Predicted model state per stage (engine regime). */
  readonly predicted: readonly StageMemory[];
  /** The fixed validation micro-batches. */
  readonly validation: readonly MicroBatch[];
  /** Optimizer steps in the whole graph (for the ETA). */
  readonly totalSteps: number;
  /** Micro-batches per optimizer step. */
  readonly accum: number;
  /** Clock reading and global step when this process started (for the ETA). */
  readonly sessionStart: number;
  readonly sessionStep0: number;
  progress: RunProgress;
  state: EngineState | undefined;
}

/** Runs a TaskEither. */
export async function value<A>(
  te: TE.TaskEither<PipelineError, A>,
): Promise<E.Either<PipelineError, A>> {
  return await te();
}

/** Appends a metrics record, stamped with the global step, and counts it in the progress. */
export function metric(ctx: RunContext, record: Record<string, unknown>): void {
  ctx.env.log.metric({ ...record, globalStep: ctx.progress.globalStep });
  ctx.progress = { ...ctx.progress, metrics: ctx.progress.metrics + 1 };
}

/** Saves the engine state and the progress as the run's checkpoint. */
export async function checkpoint(ctx: RunContext): Promise<E.Either<PipelineError, void>> {
  if (ctx.state === undefined) return E.right(undefined);
  const snap = await value(ctx.env.engine.snapshot(ctx.state));
  if (E.isLeft(snap)) return snap;
  return await value(ctx.env.store.saveCheckpoint({
    snapshot: snap.right,
    progress: ctx.progress as unknown as Record<string, unknown>,
  }));
}

/** Validation loss of `s`, logged and recorded. */
export async function evaluate(
  ctx: RunContext,
  s: EngineState,
  node: string,
): Promise<E.Either<PipelineError, number>> {
  const r = await value(ctx.env.engine.evaluate(s, ctx.validation));
  if (E.isRight(r)) {
    metric(ctx, { type: "eval", node, valLoss: r.right, perplexity: Math.exp(r.right) });
    ctx.env.log.line(
      `  eval @ ${ctx.progress.globalStep}: val loss ${r.right.toFixed(4)}, perplexity ${
        Math.exp(r.right).toFixed(2)
      }`,
    );
  }
  return r;
}
