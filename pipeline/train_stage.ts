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
import {
  describeUnknown,
  ioFailed,
  type KernelFailed,
  kernelFailed,
  type PipelineError,
  trainingDiverged,
} from "../base/mod.ts";
import type {
  DataPosition,
  Engine,
  EngineState,
  Env,
  MicroBatch,
  StepInFlight,
  StepOutcome,
  StepReport,
} from "./effects.ts";
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

/**
 * Steps in flight at most on an engine that sends steps ahead ({@link Engine.stepAhead}): enough
 * to keep its trainer busy through this process's pauses (a metrics write, a collection), few
 * enough that a run stopped for divergence wastes little work past the step that stopped it.
 */
export const STEPS_AHEAD = 8;

/** A step sent to the engine whose report has not been taken yet. */
interface Sent {
  readonly k: number;
  readonly hyper: StepHyper;
  readonly batches: readonly MicroBatch[];
  readonly next: DataPosition;
  readonly report: Promise<E.Either<KernelFailed, StepReport>>;
}

/**
 * Trains `stage` from the progress's step to its end (or to `options.until`).
 *
 * On an engine that sends steps ahead, up to {@link STEPS_AHEAD} steps are in flight: a step's
 * batches and LR depend on its number only, so step k + 1 is sent before step k's report is
 * back. Reports are taken in step order, and each one's record, skip verdict and progress line
 * are written then, so metrics.jsonl and the log are those of a loop that waits for every step.
 * The loop waits for every step sent before a ReLoRA restart, an evaluation, a checkpoint and
 * the stage's end; a run stopped by a skip verdict or a failed step has sent at most
 * {@link STEPS_AHEAD} − 1 steps past it, which never reach the run's state.
 */
export function trainStage(
  facts: RunFacts,
  stage: GraphStage,
  options: StageOptions = {},
): Transition {
  return transition(async (s0, env) => {
    const until = Math.min(stage.steps, options.until ?? stage.steps);
    const window = env.engine.stepAhead === undefined ? 1 : STEPS_AHEAD;
    // `s` holds the progress through the last step whose report was taken, and the handle
    // after the last step sent; `position` is the data position after the last step sent.
    let s = s0;
    let position = s0.progress.data;
    const inFlight: Sent[] = [];
    let span: ThroughputSpan = { start: env.clock.now(), tokens: 0 };
    // The clock reading up to which the stage's time is in the progress: what a checkpoint
    // saves is the time of the work it keeps.
    let counted = span.start;
    /** Takes the oldest step's report: its record, skip verdict and progress line. */
    const settle = async (): Promise<E.Either<PipelineError, void>> => {
      const sent = inFlight.shift()!;
      const report = await sent.report;
      if (E.isLeft(report)) return E.left(atStep(report.left, stage, sent.k));
      const stepped = recordStep(
        facts,
        stage,
        sent,
        { state: modelOf(s, stage.trainNodeId), ...report.right },
        s,
        env,
      );
      const now = env.clock.now();
      const step = { ...stepped, state: withStageTime(stepped.state, now - counted) };
      s = step.state;
      counted = now;
      const verdict = skipVerdict(facts, stage, step, env);
      if (E.isLeft(verdict)) return verdict;
      span = progressLine(facts, {
        ...step,
        stage,
        k: sent.k,
        span: { ...span, tokens: span.tokens + step.tokens },
      }, env);
      return E.right(undefined);
    };
    /** Takes reports until at most `left` steps are in flight. */
    const settleTo = async (left: number): Promise<E.Either<PipelineError, void>> => {
      while (inFlight.length > left) {
        const r = await settle();
        if (E.isLeft(r)) return r;
      }
      return E.right(undefined);
    };
    /** Stops the stage with `e`, after the reports of the steps sent before it (theirs first). */
    const stop = async (e: PipelineError): Promise<E.Either<PipelineError, RunState>> => {
      const earlier = await settleTo(0);
      return failed(s, stage, E.isLeft(earlier) ? earlier.left : e, env);
    };
    for (let k = s.progress.stepInNode; k < until; k++) {
      if (restartDue(facts, stage, k)) {
        const settled = await settleTo(0);
        if (E.isLeft(settled)) return failed(s, stage, settled.left, env);
        const restarted = await restartIfDue(facts, stage, k)(s)(env)();
        if (E.isLeft(restarted)) return failed(s, stage, restarted.left, env);
        s = restarted.right;
      }
      const hyper = hyperAt(facts, stage, k);
      let drawn: ReturnType<typeof env.data.next>;
      try {
        drawn = env.data.next(position, facts.graph.accumulation);
      } catch (e) {
        return await stop(
          ioFailed("checkpoint/state.json", `bad data position: ${describeUnknown(e)}`),
        );
      }
      const sent = await sendStep(env.engine, modelOf(s, stage.trainNodeId), drawn.batches, hyper);
      if (E.isLeft(sent)) return await stop(atStep(sent.left, stage, k));
      s = withHandle(s, sent.right.state, stage.trainNodeId);
      position = drawn.next;
      inFlight.push({ k, hyper, batches: drawn.batches, next: drawn.next, ...sent.right });
      // The global step after k: the steps whose reports are in `s`, and those in flight.
      const global = s.progress.globalStep + inFlight.length;
      const periodicDue = dueAfter(facts, stage, { k, until, globalStep: global });
      const settled = await settleTo(periodicDue ? 0 : window - 1);
      if (E.isLeft(settled)) return failed(s, stage, settled.left, env);
      if (!periodicDue) continue;
      const after = await periodic(facts, stage, { k, until })(s)(env)();
      if (E.isLeft(after)) return failed(s, stage, after.left, env);
      s = after.right;
    }
    const settled = await settleTo(0);
    if (E.isLeft(settled)) return failed(s, stage, settled.left, env);
    return E.right(s);
  });
}

/** A step sent ahead where the engine can, else taken here and handed over as done. */
async function sendStep(
  engine: Engine,
  state: EngineState,
  batches: readonly MicroBatch[],
  hyper: StepHyper,
): Promise<E.Either<PipelineError, StepInFlight>> {
  if (engine.stepAhead !== undefined) return await run(engine.stepAhead(state, batches, hyper));
  const done = await run(engine.step(state, batches, hyper));
  if (E.isLeft(done)) return done;
  const { state: next, ...report } = done.right;
  return E.right({ state: next, report: Promise.resolve(E.right(report)) });
}

/** An engine's failure in step `k`, saying which step it was (the loop may be steps ahead). */
function atStep(e: PipelineError, stage: GraphStage, k: number): PipelineError {
  return e._tag === "KernelFailed"
    ? kernelFailed(`step ${k + 1} of "${stage.trainNodeId}": ${e.message}`)
    : e;
}

/** Frees the model of a stage that failed (no later transition runs) and passes its error on. */
function failed<A>(
  s: RunState,
  stage: GraphStage,
  e: PipelineError,
  env: Env,
): E.Either<PipelineError, A> {
  env.engine.dispose(modelOf(s, stage.trainNodeId));
  return E.left(e);
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

/** Whether ReLoRA restarts the adapters before step `k`. */
function restartDue(facts: RunFacts, stage: GraphStage, k: number): boolean {
  const { restarts } = schedules(facts, stage);
  return restarts !== undefined && stage.pet !== undefined && isRestartStep(restarts, k);
}

function restartIfDue(facts: RunFacts, stage: GraphStage, k: number): Transition {
  return transition(async (s, env) => {
    const { restarts } = schedules(facts, stage);
    const pet = stage.pet;
    if (restarts === undefined || pet === undefined || !restartDue(facts, stage, k)) {
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
 * The progress after step `sent.k` and the voice's `train` record of it (a skipped step too:
 * its verdict is {@link skipVerdict}'s); `s` holds the progress through the step before.
 */
function recordStep(
  facts: RunFacts,
  stage: GraphStage,
  sent: Sent,
  o: StepOutcome,
  s: RunState,
  env: Env,
): Stepped {
  const p = s.progress;
  const tokens = inputTokens(sent.batches);
  const progress = {
    ...p,
    stepInNode: sent.k + 1,
    globalStep: p.globalStep + 1,
    tokens: p.tokens + tokens,
    data: sent.next,
    stagePeak: widerPeak(p.stagePeak, o),
    skippedInARow: o.skipped ? p.skippedInARow + 1 : 0,
  };
  const stepped = { outcome: o, lr: sent.hyper.lr, batches: sent.batches, tokens };
  const moved = { ...s, progress };
  const state = countedMetric(
    moved,
    env,
    facts.voice.stepRecord({ ...stepped, stage, k: sent.k, state: moved }),
  );
  if ((o.svdFailures ?? 0) > 0) {
    env.log.line(
      `  step ${
        sent.k + 1
      }: ${o.svdFailures} GaLore decomposition(s) failed; those matrices kept ` +
        "their previous projector (or were not updated before their first one)",
    );
  }
  return { ...stepped, state };
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

/** Whether an evaluation or a checkpoint follows step `k`, `globalStep` being the run's after it. */
function dueAfter(
  facts: RunFacts,
  stage: GraphStage,
  at: { readonly k: number; readonly until: number; readonly globalStep: number },
): boolean {
  const T = facts.graph.training;
  if (at.k + 1 === stage.steps) return false;
  return at.globalStep % T.evalEvery === 0 || at.globalStep % T.checkpointEvery === 0 ||
    at.k + 1 === at.until;
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
    if (!dueAfter(facts, stage, { ...at, globalStep: s.progress.globalStep })) return E.right(s);
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
