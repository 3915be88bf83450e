/**
 * The training loop, once for every kind of run: a stage's steps as a fold, each step a chain
 * of transitions (ReLoRA restart when due, one optimizer step on the data effect's next
 * batches, the progress line, periodic evaluation and checkpoint). Pre-training's stages and
 * fine-tuning (`finetune_run.ts`) both run here; what they write and print is their voice
 * (`run_voice.ts`). A step whose loss or gradient is not finite updates nothing and is
 * counted; `maxSkippedSteps` of them in a row stop the run with `TrainingDiverged`, and the
 * run's checkpoint stays as it was. A stage that fails frees its model: the run ends there.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown, ioFailed, type PipelineError, trainingDiverged } from "../base/mod.ts";
import type { Env, MicroBatch, StepOutcome } from "./effects.ts";
import {
  checkpointRun,
  countedMetric,
  evaluateModel,
  modelOf,
  recordMetric,
  run,
  type RunFacts,
  type Transition,
  transition,
  withHandle,
} from "./run_steps.ts";
import type { RunState } from "./run_state.ts";
import { cosineLr, isRestartStep, jaggedLr } from "./schedule.ts";
import { type StepHyper, stepHyper } from "./step_hyper.ts";
import type { GraphStage } from "./validate_graph.ts";

/** Tokens and clock reading since the last progress line (for tokens/s). */
interface ThroughputSpan {
  readonly start: number;
  readonly tokens: number;
}

/** Options of {@link trainStage}. */
export interface StageOptions {
  /**
   * Stop after this step of the stage (fine-tuning's `--stop-after`), with a checkpoint there;
   * unset: the stage's end.
   */
  readonly until?: number;
}

/** Trains `stage` from the progress's step to its end (or to `options.until`). */
export function trainStage(
  facts: RunFacts,
  stage: GraphStage,
  options: StageOptions = {},
): Transition {
  return transition(async (s0, env) => {
    const until = Math.min(stage.steps, options.until ?? stage.steps);
    let s = s0;
    let span: ThroughputSpan = { start: env.clock.now(), tokens: 0 };
    // The clock reading up to which the stage's time is in the progress: what a checkpoint
    // saves is the time of the work it keeps.
    let counted = span.start;
    for (let k = s.progress.stepInNode; k < until; k++) {
      const restarted = await restartIfDue(facts, stage, k)(s)(env)();
      if (E.isLeft(restarted)) return failed(s, stage, restarted, env);
      s = restarted.right;
      const stepped = await optimizerStep(facts, stage, k, s, env);
      if (E.isLeft(stepped)) return failed(s, stage, stepped, env);
      const now = env.clock.now();
      const step = { ...stepped.right, state: withStageTime(stepped.right.state, now - counted) };
      s = step.state;
      counted = now;
      const verdict = skipVerdict(facts, stage, step, env);
      if (E.isLeft(verdict)) return failed(s, stage, verdict, env);
      span = progressLine(facts, {
        ...step,
        stage,
        k,
        span: { ...span, tokens: span.tokens + step.tokens },
      }, env);
      const after = await periodic(facts, stage, { k, until })(s)(env)();
      if (E.isLeft(after)) return failed(s, stage, after, env);
      s = after.right;
    }
    return E.right(s);
  });
}

/** Frees the model of a stage that failed (no later transition runs) and passes its error on. */
function failed<A>(
  s: RunState,
  stage: GraphStage,
  e: E.Left<PipelineError>,
  env: Env,
): E.Either<PipelineError, A> {
  env.engine.dispose(modelOf(s, stage.trainNodeId));
  return e;
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
    peakLr: stage.lr ?? T.lr,
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
    accounted: so === null || o.accounted.total > so.accounted.total ? o.accounted : so.accounted,
    measured: {
      bufferBytes: Math.max(p?.bufferBytes ?? 0, m.bufferBytes),
      tensorCountBytes: Math.max(p?.tensorCountBytes ?? 0, m.tensorCountBytes),
      ...(heap === undefined ? {} : { heapBytes: heap }),
      ...(gpu === undefined ? {} : { gpuBytes: gpu }),
      ...(trainer === undefined ? {} : { processBytes: trainer }),
    },
  };
}

/** What a step did: the run after it, its outcome and LR, and its batches and their tokens. */
interface Stepped {
  readonly state: RunState;
  readonly outcome: StepOutcome;
  readonly lr: number;
  readonly batches: readonly MicroBatch[];
  /** Input tokens of the batches, padding not counted. */
  readonly tokens: number;
}

function hyperAt(facts: RunFacts, stage: GraphStage, k: number): StepHyper {
  const { cosine, restarts, offset } = schedules(facts, stage);
  const lr = restarts === undefined
    ? cosineLr(cosine, k + offset)
    : jaggedLr(cosine, restarts, k, offset);
  return stepHyper(facts.graph.training, lr);
}

/** Input tokens of `batches`, the positions that only pad a micro-batch out not counted. */
export function inputTokens(batches: readonly MicroBatch[]): number {
  return batches.reduce((n, b) => n + b.batch * b.seq - (b.padding ?? 0), 0);
}

/**
 * One optimizer step on the data effect's next batches: the progress moves on and the voice's
 * `train` record is written (a skipped step too: its verdict is {@link skipVerdict}'s).
 */
async function optimizerStep(
  facts: RunFacts,
  stage: GraphStage,
  k: number,
  s: RunState,
  env: Env,
): Promise<E.Either<PipelineError, Stepped>> {
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
  const tokens = inputTokens(drawn.batches);
  const progress = {
    ...p,
    stepInNode: k + 1,
    globalStep: p.globalStep + 1,
    tokens: p.tokens + tokens,
    data: drawn.next,
    stagePeak: widerPeak(p.stagePeak, o),
    skippedInARow: o.skipped ? p.skippedInARow + 1 : 0,
  };
  const stepped = { outcome: o, lr: hyper.lr, batches: drawn.batches, tokens };
  const moved = { ...withHandle(s, o.state, stage.trainNodeId), progress };
  const state = countedMetric(
    moved,
    env,
    facts.voice.stepRecord({ ...stepped, stage, k, state: moved }),
  );
  if ((o.svdFailures ?? 0) > 0) {
    env.log.line(
      `  step ${k + 1}: ${o.svdFailures} GaLore decomposition(s) failed; those matrices kept ` +
        "their previous projector (or were not updated before their first one)",
    );
  }
  return E.right({ ...stepped, state });
}

/**
 * A skipped step is logged; `maxSkippedSteps` of them in a row stop the run: diverged, or, when
 * no step has updated the weights yet, refused as the voice says a broken start is.
 */
function skipVerdict(
  facts: RunFacts,
  stage: GraphStage,
  stepped: Stepped,
  env: Env,
): E.Either<PipelineError, void> {
  const { state, outcome: o, lr } = stepped;
  if (!o.skipped) return E.right(undefined);
  const { skippedInARow: inARow, stepInNode, globalStep } = state.progress;
  const limit = facts.graph.training.maxSkippedSteps;
  env.log.line(
    `  step ${stepInNode} skipped: loss ${o.loss}, gradient norm ${o.gradNorm} ` +
      `(LR ${lr.toExponential(2)}); weights unchanged (${inARow} in a row, ${limit} stop the run)`,
  );
  if (inARow < limit) return E.right(undefined);
  const last = `last: loss ${o.loss}, gradient norm ${o.gradNorm}`;
  const voice = facts.voice;
  if (inARow === globalStep && voice.untrained !== undefined) {
    return E.left(voice.untrained(
      `the loss or gradient was not finite on each of the first ${inARow} steps (${last})`,
    ));
  }
  return E.left(trainingDiverged(
    stage.trainNodeId,
    stepInNode - 1,
    `${inARow} steps in a row had a non-finite loss or gradient (${last}, LR ${
      lr.toExponential(2)
    }); ${voice.kept(state)} — ${voice.advice}`,
  ));
}

/**
 * The voice's progress line after the first step, every `logEvery` steps and after the stage's
 * last: tokens/s since the last line, and the time to the run's end at this session's pace.
 */
function progressLine(
  facts: RunFacts,
  at: Stepped & { readonly stage: GraphStage; readonly k: number; readonly span: ThroughputSpan },
  env: Env,
): ThroughputSpan {
  const { stage, k, span } = at;
  const due = (k + 1) % facts.graph.training.logEvery === 0 || k === 0 || k + 1 === stage.steps;
  if (!due) return span;
  const p = at.state.progress;
  const now = env.clock.now();
  const perStep = (now - facts.sessionStart) / Math.max(1, p.globalStep - facts.sessionStep0);
  env.log.line(facts.voice.progressLine({
    ...at,
    tokensPerSecond: span.tokens / Math.max(1e-9, (now - span.start) / 1000),
    etaMs: perStep * (facts.graph.totalSteps - p.globalStep),
  }, env));
  return { start: now, tokens: 0 };
}

/**
 * Evaluation and checkpoint on their periods, and a checkpoint where the session stops early
 * (`until`); none at the stage's last step, whose node does both (or writes the final model).
 */
function periodic(
  facts: RunFacts,
  stage: GraphStage,
  at: { readonly k: number; readonly until: number },
): Transition {
  return transition(async (s, env) => {
    const T = facts.graph.training;
    if (at.k + 1 === stage.steps) return E.right(s);
    let state = s;
    if (state.progress.globalStep % T.evalEvery === 0) {
      const ev = await evaluateModel(state, env, {
        node: stage.trainNodeId,
        batches: facts.validation,
      });
      if (E.isLeft(ev)) return ev;
      state = ev.right.state;
    }
    const due = state.progress.globalStep % T.checkpointEvery === 0 || at.k + 1 === at.until;
    if (!due) return E.right(state);
    return await checkpointRun(stage.trainNodeId, facts.voice)(state)(env)();
  });
}
