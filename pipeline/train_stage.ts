/**
 * The training loop of one stage, as a fold over its steps: each step is a
 * chain of transitions (ReLoRA restart when due, one optimizer step, the
 * progress line, periodic evaluation and checkpoint). A step whose loss or
 * gradient is not finite updates nothing and is counted; `maxSkippedSteps`
 * of them in a row stop the run with `TrainingDiverged`, and the run's
 * checkpoint stays as it was.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  describeUnknown,
  formatBytes,
  ioFailed,
  type PipelineError,
  trainingDiverged,
} from "../base/mod.ts";
import { enginePeakBytes, type Env, type StepOutcome } from "./effects.ts";
import {
  evaluateModel,
  modelOf,
  recordMetric,
  run,
  type RunFacts,
  saveCheckpoint,
  type Transition,
  transition,
  withHandle,
} from "./run_steps.ts";
import { keptCheckpoint, type RunState } from "./run_state.ts";
import { cosineLr, isRestartStep, jaggedLr } from "./schedule.ts";
import { type StepHyper, stepHyper } from "./step_hyper.ts";
import type { GraphStage } from "./validate_graph.ts";

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

/** Tokens and clock reading since the last progress line (for tokens/s). */
interface Window {
  readonly start: number;
  readonly tokens: number;
}

/** Trains `stage` from the progress's step to its end. */
export function trainStage(facts: RunFacts, stage: GraphStage): Transition {
  return transition(async (s0, env) => {
    let s = s0;
    let window: Window = { start: env.clock.now(), tokens: 0 };
    // The clock reading up to which the stage's time is in the progress: what a checkpoint
    // saves is the time of the work it keeps.
    let counted = window.start;
    for (let k = s.progress.stepInNode; k < stage.steps; k++) {
      const restarted = await restartIfDue(facts, stage, k)(s)(env)();
      if (E.isLeft(restarted)) return restarted;
      const stepped = await optimizerStep(facts, stage, k, restarted.right, env);
      if (E.isLeft(stepped)) return stepped;
      const { outcome, lr } = stepped.right;
      const now = env.clock.now();
      const state = withStageTime(stepped.right.state, now - counted);
      counted = now;
      window = { ...window, tokens: window.tokens + facts.graph.training.batchTokens };
      window = progressLine(facts, stage, { k, state, outcome, lr, window }, env);
      const after = await periodic(facts, stage, k)(state)(env)();
      if (E.isLeft(after)) return after;
      s = after.right;
    }
    return E.right(s);
  });
}

/** The state with `ms` more of the running stage's time. */
function withStageTime(s: RunState, ms: number): RunState {
  return {
    ...s,
    progress: { ...s.progress, stageSeconds: (s.progress.stageSeconds ?? 0) + ms / 1000 },
  };
}

function schedules(facts: RunFacts, stage: GraphStage) {
  const T = facts.graph.training;
  const cosine = {
    peak: stage.lr ?? T.lr,
    warmup: Math.min(stage.warmup ?? T.warmup, stage.scheduleSteps - 1),
    length: stage.scheduleSteps,
    minRatio: T.minLrRatio,
  };
  const restarts = stage.pet === undefined ? undefined : {
    every: stage.pet.resetEvery,
    warmup: stage.pet.restartWarmup,
    atStart: stage.scheduleOffset > 0,
  };
  return { cosine, restarts, offset: stage.scheduleOffset };
}

function restartIfDue(facts: RunFacts, stage: GraphStage, k: number): Transition {
  return transition(async (s, env) => {
    const { restarts } = schedules(facts, stage);
    const pet = stage.pet;
    if (restarts === undefined || pet === undefined || !isRestartStep(restarts, k)) {
      return E.right(s);
    }
    const reset = await run(env.engine.reset(modelOf(s, stage.trainNodeId), {
      pruneRatio: pet.pruneRatio,
      seed: facts.seeds.restart(stage.index, k),
    }));
    if (E.isLeft(reset)) return reset;
    const r = reset.right;
    const merged = {
      ...withHandle(s, r.state, stage.trainNodeId),
      progress: { ...s.progress, merges: s.progress.merges + 1 },
    };
    env.log.line(
      `  ReLoRA merge @ step ${k}: ${r.merged} adapters merged and re-initialised, ${
        (r.prunedFraction * 100).toFixed(1)
      }% of their Adam moments pruned, LR re-warms over ${restarts.warmup} steps`,
    );
    return E.right(recordMetric(merged, env, {
      type: "merge",
      node: stage.trainNodeId,
      step: k,
      merged: r.merged,
      prunedFraction: r.prunedFraction,
    }));
  });
}

type StagePeak = NonNullable<RunState["progress"]["stagePeak"]>;

function most(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

/** The stage's peaks so far, widened by one step's. */
function widerPeak(so: StagePeak | null, o: StepOutcome): StagePeak {
  const m = o.measured;
  const p = so?.measured;
  const heap = most(p?.heapBytes, m.heapBytes);
  const gpu = most(p?.gpuBytes, m.gpuBytes);
  const trainer = most(p?.processBytes, m.processBytes);
  return {
    accounted: so === null || o.peak.total > so.accounted.total ? o.peak : so.accounted,
    measured: {
      bufferBytes: Math.max(p?.bufferBytes ?? 0, m.bufferBytes),
      tensorCountBytes: Math.max(p?.tensorCountBytes ?? 0, m.tensorCountBytes),
      ...(heap === undefined ? {} : { heapBytes: heap }),
      ...(gpu === undefined ? {} : { gpuBytes: gpu }),
      ...(trainer === undefined ? {} : { processBytes: trainer }),
    },
  };
}

interface Stepped {
  readonly state: RunState;
  readonly outcome: StepOutcome;
  readonly lr: number;
}

function hyperAt(facts: RunFacts, stage: GraphStage, k: number): StepHyper {
  const { cosine, restarts, offset } = schedules(facts, stage);
  const lr = restarts === undefined
    ? cosineLr(cosine, k + offset)
    : jaggedLr(cosine, restarts, k, offset);
  return stepHyper(facts.graph.training, lr);
}

/** One optimizer step on the next batches: the progress moves on and a `train` record is written. */
async function optimizerStep(
  facts: RunFacts,
  stage: GraphStage,
  k: number,
  s: RunState,
  env: Env,
): Promise<E.Either<PipelineError, Stepped>> {
  const T = facts.graph.training;
  const hyper = hyperAt(facts, stage, k);
  let drawn: ReturnType<typeof env.data.next>;
  try {
    drawn = env.data.next(s.progress.data, facts.graph.accumulation);
  } catch (e) {
    return E.left(ioFailed("checkpoint/state.json", `bad data position: ${describeUnknown(e)}`));
  }
  const out = await run(env.engine.step(modelOf(s, stage.trainNodeId), drawn.batches, hyper));
  if (E.isLeft(out)) return out;
  const o = out.right;
  const p = s.progress;
  const progress = {
    ...p,
    stepInNode: k + 1,
    globalStep: p.globalStep + 1,
    tokens: p.tokens + T.batchTokens,
    data: drawn.next,
    stagePeak: widerPeak(p.stagePeak, o),
    skippedInARow: o.skipped ? p.skippedInARow + 1 : 0,
  };
  const state = recordMetric({ ...withHandle(s, o.state, stage.trainNodeId), progress }, env, {
    type: "train",
    node: stage.trainNodeId,
    stage: stage.index,
    step: k + 1,
    loss: o.loss,
    lr: hyper.lr,
    gradNorm: o.gradNorm,
    tokens: progress.tokens,
    memoryBytes: o.peak.total,
    ...(o.skipped ? { skipped: true } : {}),
    ...((o.projectorUpdates ?? 0) > 0 ? { projectorUpdates: o.projectorUpdates } : {}),
    ...((o.svdFailures ?? 0) > 0 ? { svdFailures: o.svdFailures } : {}),
  });
  if ((o.svdFailures ?? 0) > 0) {
    env.log.line(
      `  step ${k + 1}: ${o.svdFailures} GaLore decomposition(s) failed; those matrices kept ` +
        "their previous projector (or were not updated before their first one)",
    );
  }
  return skipVerdict(facts, stage, { state, outcome: o, lr: hyper.lr }, env);
}

/** A skipped step is logged; `maxSkippedSteps` of them in a row stop the run. */
function skipVerdict(
  facts: RunFacts,
  stage: GraphStage,
  stepped: Stepped,
  env: Env,
): E.Either<PipelineError, Stepped> {
  const { state, outcome: o, lr } = stepped;
  if (!o.skipped) return E.right(stepped);
  const inARow = state.progress.skippedInARow;
  const limit = facts.graph.training.maxSkippedSteps;
  env.log.line(
    `  step ${state.progress.stepInNode} skipped: loss ${o.loss}, gradient norm ${o.gradNorm} ` +
      `(LR ${lr.toExponential(2)}); weights unchanged (${inARow} in a row, ${limit} stop the run)`,
  );
  if (inARow < limit) return E.right(stepped);
  return E.left(trainingDiverged(
    stage.trainNodeId,
    state.progress.stepInNode - 1,
    `${inARow} steps in a row had a non-finite loss or gradient (last: loss ${o.loss}, ` +
      `LR ${lr.toExponential(2)}); ${keptCheckpoint(state)} — lower training.lr or raise warmup`,
  ));
}

function progressLine(
  facts: RunFacts,
  stage: GraphStage,
  at: {
    readonly k: number;
    readonly state: RunState;
    readonly outcome: StepOutcome;
    readonly lr: number;
    readonly window: Window;
  },
  env: Env,
): Window {
  const T = facts.graph.training;
  const last = at.k + 1 === stage.steps;
  if ((at.k + 1) % T.logEvery !== 0 && !last) return at.window;
  const p = at.state.progress;
  const now = env.clock.now();
  const tps = at.window.tokens / Math.max(1e-9, (now - at.window.start) / 1000);
  const perStep = (now - facts.sessionStart) / Math.max(1, p.globalStep - facts.sessionStep0);
  const eta = perStep * (facts.graph.totalSteps - p.globalStep);
  const pred = facts.predicted[stage.index - 1];
  const measured = p.stagePeak === null ? 0 : enginePeakBytes(p.stagePeak.measured);
  const process = env.memory.peakBytes();
  env.log.line(
    `[stage ${stage.index} ${stage.trainNodeId} ${at.k + 1}/${stage.steps}] loss ${
      at.outcome.loss.toFixed(4)
    }  lr ${at.lr.toExponential(2)}  ${Math.round(tps)} tok/s  ETA ${formatDuration(eta)}  peak ${
      formatBytes(measured)
    } (predicted ${formatBytes(pred?.peakBytes ?? 0)})  state ${
      formatBytes(at.outcome.peak.total)
    }${process === undefined ? "" : `  process ${formatBytes(process)}`}`,
  );
  return { start: now, tokens: 0 };
}

/** Evaluation and checkpoint on their periods, except at the stage's last step (the node does both). */
function periodic(facts: RunFacts, stage: GraphStage, k: number): Transition {
  return transition(async (s, env) => {
    const T = facts.graph.training;
    if (k + 1 === stage.steps) return E.right(s);
    let state = s;
    if (state.progress.globalStep % T.evalEvery === 0) {
      const ev = await evaluateModel(state, env, {
        node: stage.trainNodeId,
        batches: facts.validation,
      });
      if (E.isLeft(ev)) return ev;
      state = ev.right.state;
    }
    if (state.progress.globalStep % T.checkpointEvery !== 0) return E.right(state);
    return await saveCheckpoint(stage.trainNodeId)(state)(env)();
  });
}
