/**
 * The training loop of one stage: ReLoRA restarts, the stage's (jagged)
 * cosine, one optimizer step per iteration, progress lines, periodic
 * evaluation and checkpoints. Stops with `TrainingDiverged` on a non-finite
 * loss, before anything is saved, so the last good checkpoint stays.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { formatBytes } from "../solvers/units.ts";
import type { EngineState, MemoryByRole, StepHyper } from "./effects.ts";
import { describeUnknown, ioFailed, type PipelineError, trainingDiverged } from "./errors.ts";
import { checkpoint, evaluate, metric, type RunContext, value } from "./run_context.ts";
import { cosineLr, isRestartStep, jaggedLr } from "./schedule.ts";
import type { GraphStage } from "./validate_graph.ts";

function maxMemory(a: MemoryByRole | null, b: MemoryByRole): MemoryByRole {
  return a === null || b.total > a.total ? b : a;
}

/** 1h02m, 3m05s, 42s. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  const s = Math.round(ms / 1000);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}

/** Trains `stage` from the progress's step to its end; returns the trained state. */
export async function trainStage(
  ctx: RunContext,
  stage: GraphStage,
  s0: EngineState,
): Promise<E.Either<PipelineError, EngineState>> {
  const { engine, data, log, clock } = ctx.env;
  const T = ctx.settings;
  let s = s0;
  const schedule = {
    peak: stage.lr ?? T.lr,
    warmup: Math.min(stage.warmup ?? T.warmup, stage.scheduleSteps - 1),
    length: stage.scheduleSteps,
    minRatio: T.minLrRatio,
  };
  const restarts = stage.pet === undefined
    ? undefined
    : { every: stage.pet.resetEvery, warmup: stage.pet.restartWarmup };
  let windowStart = clock.now();
  let windowTokens = 0;
  for (let k = ctx.progress.stepInNode; k < stage.steps; k++) {
    if (restarts !== undefined && stage.pet !== undefined && isRestartStep(restarts, k)) {
      const reset = await value(
        engine.reset(s, {
          pruneRatio: stage.pet.pruneRatio,
          seed: T.seed + 7919 * stage.index + k,
        }),
      );
      if (E.isLeft(reset)) return reset;
      s = reset.right.state;
      ctx.progress = { ...ctx.progress, merges: ctx.progress.merges + 1 };
      metric(ctx, {
        type: "merge",
        node: stage.trainNodeId,
        step: k,
        merged: reset.right.merged,
        prunedFraction: reset.right.prunedFraction,
      });
      log.line(
        `  ReLoRA merge @ step ${k}: ${reset.right.merged} adapters merged and re-initialised, ${
          (reset.right.prunedFraction * 100).toFixed(1)
        }% of their Adam moments pruned, LR re-warms over ${restarts.warmup} steps`,
      );
    }
    const lr = restarts === undefined ? cosineLr(schedule, k) : jaggedLr(schedule, restarts, k);
    const hyper: StepHyper = {
      lr,
      beta1: T.beta1,
      beta2: T.beta2,
      eps: T.eps,
      weightDecay: T.weightDecay,
      clip: T.clip,
    };
    let drawn: ReturnType<typeof data.next>;
    try {
      drawn = data.next(ctx.progress.data, ctx.accum);
    } catch (e) {
      return E.left(
        ioFailed("checkpoint/state.json", `bad data position: ${describeUnknown(e)}`),
      );
    }
    const { batches, next } = drawn;
    const out = await value(engine.step(s, batches, hyper));
    if (E.isLeft(out)) return out;
    s = out.right.state;
    if (!Number.isFinite(out.right.loss)) {
      return E.left(trainingDiverged(
        stage.trainNodeId,
        k,
        `loss is ${out.right.loss} (LR ${
          lr.toExponential(2)
        }); the last good checkpoint is kept — lower training.lr or raise warmup`,
      ));
    }
    const p = ctx.progress;
    ctx.progress = {
      ...p,
      stepInNode: k + 1,
      globalStep: p.globalStep + 1,
      tokens: p.tokens + T.batchTokens,
      data: next,
      stagePeak: maxMemory(p.stagePeak, out.right.peak),
    };
    windowTokens += T.batchTokens;
    metric(ctx, {
      type: "train",
      node: stage.trainNodeId,
      stage: stage.index,
      step: k + 1,
      loss: out.right.loss,
      lr,
      gradNorm: out.right.gradNorm,
      tokens: ctx.progress.tokens,
      memoryBytes: out.right.peak.total,
    });
    const last = k + 1 === stage.steps;
    if ((k + 1) % T.logEvery === 0 || last) {
      const now = clock.now();
      const tps = windowTokens / Math.max(1e-9, (now - windowStart) / 1000);
      const perStep = (now - ctx.sessionStart) /
        Math.max(1, ctx.progress.globalStep - ctx.sessionStep0);
      const eta = perStep * (ctx.totalSteps - ctx.progress.globalStep);
      const pred = ctx.predicted[stage.index - 1]?.bytes ?? 0;
      log.line(
        `[stage ${stage.index} ${stage.trainNodeId} ${k + 1}/${stage.steps}] loss ${
          out.right.loss.toFixed(4)
        }  lr ${lr.toExponential(2)}  ${Math.round(tps)} tok/s  ETA ${
          formatDuration(eta)
        }  model state ${formatBytes(out.right.peak.total)} (predicted ${formatBytes(pred)})`,
      );
      windowStart = now;
      windowTokens = 0;
    }
    if (ctx.progress.globalStep % T.evalEvery === 0 && !last) {
      const ev = await evaluate(ctx, s, stage.trainNodeId);
      if (E.isLeft(ev)) return ev;
    }
    if (ctx.progress.globalStep % T.checkpointEvery === 0 && !last) {
      ctx.state = s;
      const saved = await checkpoint(ctx);
      if (E.isLeft(saved)) return saved;
    }
  }
  return E.right(s);
}
