/**
 * A fine-tuning run through the interpreter's machinery: its graph's one stage
 * (`finetune_graph.ts`) trained by the same fold as pre-training's stages (`train_stage.ts`),
 * on the data effect's instruction batches, between two evaluations of the held-out response
 * loss (before the first step and after the last), then the final model. It starts from the
 * base's weights or, resuming, from the run's checkpoint, whose progress names what fixes the
 * run's steps (`finetune_settings.ts`): a resumed command must repeat it.
 *
 * A broken model is never a result: a base whose loss is not finite before any update is refused
 * as broken input (no learning rate can help it), a run that diverges stops saying which
 * checkpoint is kept, and neither a non-finite held-out loss nor a non-finite weight is saved.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ContentInvalid,
  contentInvalid,
  type ext,
  hashString,
  type PipelineError,
  reportErrors,
  trainingDiverged,
} from "../base/mod.ts";
import type { EngineSnapshot, Env, MicroBatch } from "./effects.ts";
import { FINETUNE_NODE, finetuneVoice } from "./finetune_graph.ts";
import { countedTargets, type FinetunePlan } from "./finetune_plan.ts";
import { type FinetuneRecord, resumeProblem } from "./finetune_settings.ts";
import { initialProgress, type RunProgress, RunProgressCodec, type RunState } from "./run_state.ts";
import {
  countedMetric,
  finiteSnapshot,
  loadModel,
  modelOf,
  resumedState,
  run,
  type RunFacts,
  type Transition,
  transition,
} from "./run_steps.ts";
import type { RunVoice } from "./run_voice.ts";
import { runSeeds } from "./seeds.ts";
import { trainStage } from "./train_stage.ts";
import type { ValidGraph } from "./validate_graph.ts";

/** What a fine-tuning run is: its graph and plan, what fixes its steps, and its base. */
export interface FinetuneJob {
  /** One `train` node over the base's layers (`finetuneGraph`). */
  readonly graph: ValidGraph;
  /** Which examples each step trains on. */
  readonly plan: FinetunePlan;
  /** What a resumed command must repeat. */
  readonly record: FinetuneRecord;
  /** The base's weights, every one trainable, fresh moments (read only when not resuming). */
  readonly base: () => Promise<ext.Either<PipelineError, EngineSnapshot>>;
}

/** Options of {@link runFinetune}. */
export interface FinetuneRunOptions {
  /** Continue from the run directory's checkpoint when there is one. */
  readonly resume: boolean;
  /** Stop after this many steps of this session, with a checkpoint to resume from. */
  readonly stopAfter?: number;
}

/** Where a fine-tuning run ended: the final model written, or stopped early by `stopAfter`. */
export type FinetuneOutcome =
  | { readonly finished: true; readonly final: string; readonly resumedFrom: number | null }
  | { readonly finished: false; readonly step: number; readonly steps: number };

/**
 * Runs `job` on `env` (its data effect serving the plan's instruction batches) from the base or
 * from the checkpoint to the end of the plan, or for `stopAfter` steps. Every model it loads is
 * disposed before it returns.
 */
export function runFinetune(
  job: FinetuneJob,
  options: FinetuneRunOptions,
): ext.ReaderTaskEither<Env, PipelineError, FinetuneOutcome> {
  return (env) => async () => {
    const voice = finetuneVoice(job.plan, (message) => brokenBase(job, message));
    const validation = env.data.validation(job.graph.training.evalBatches);
    const started = await start(job, { ...options, voice, validation }, env);
    if (E.isLeft(started)) return started;
    const { state, resumedFrom } = started.right;
    const facts: RunFacts = {
      graph: job.graph,
      graphId: state.progress.graphId,
      seeds: runSeeds(job.graph.training.seed),
      predicted: [],
      validation,
      sessionStart: env.clock.now(),
      sessionStep0: state.progress.globalStep,
      voice,
    };
    const stage = job.graph.stages[0]!;
    const until = state.progress.stepInNode + (options.stopAfter ?? stage.steps);
    // The fold frees the model of a stage that fails.
    const trained = await trainStage(facts, stage, { until })(state)(env)();
    if (E.isLeft(trained)) return trained;
    const s = trained.right;
    try {
      if (s.progress.stepInNode < stage.steps) {
        env.log.line(
          `Stopped after step ${s.progress.stepInNode} of ${stage.steps}: continue with --resume`,
        );
        return E.right({ finished: false, step: s.progress.stepInNode, steps: stage.steps });
      }
      return await finish(job, s, { voice, validation, resumedFrom }, env);
    } finally {
      env.engine.dispose(modelOf(s, FINETUNE_NODE));
    }
  };
}

/**
 * The refusal of a base whose loss or gradient is not finite before any update: its weights are
 * finite (checked when loaded), so its own forward or backward pass overflows float32.
 */
function brokenBase(job: FinetuneJob, what: string): ContentInvalid {
  return contentInvalid(
    job.record.base,
    `${what}, before any update: the base's weights are finite but its forward or backward ` +
      "pass overflows float32, so no learning rate can help",
  );
}

/** What the run's own evaluations need. */
interface Evaluations {
  readonly voice: RunVoice;
  /** The held-out examples' micro-batches (none without held-out examples). */
  readonly validation: readonly MicroBatch[];
}

/**
 * The held-out response loss, recorded and printed; one that is not finite is an error: before
 * fine-tuning the base is broken, after it the run diverged (and nothing is saved).
 */
function heldOutLoss(job: FinetuneJob, when: "before" | "after", ev: Evaluations): Transition {
  return transition(async (s, env) => {
    if (job.plan.heldOut.length === 0) return E.right(s);
    const loss = await run(env.engine.evaluate(modelOf(s, FINETUNE_NODE), ev.validation));
    if (E.isLeft(loss)) return loss;
    const step = s.progress.globalStep;
    const what = `the held-out response loss ${when} fine-tuning is ${loss.right}`;
    if (!Number.isFinite(loss.right)) {
      return E.left(
        when === "before" ? brokenBase(job, what) : trainingDiverged(
          FINETUNE_NODE,
          step,
          `${what}; the final model is not saved (${ev.voice.kept(s)}) — ${ev.voice.advice}`,
        ),
      );
    }
    const recorded = countedMetric(s, env, {
      type: "eval",
      set: "held-out",
      when,
      step,
      loss: loss.right,
    });
    env.log.line(
      `Held-out response loss ${when} fine-tuning: ${loss.right.toFixed(4)} nats/token ` +
        `(${job.plan.heldOut.length} examples, ${countedTargets(ev.validation)} response tokens)`,
    );
    return E.right(recorded);
  });
}

/**
 * The run's checkpoint's progress, refused when it is not a fine-tuning run's or its record
 * differs from this command's (naming the flag and both values).
 */
function decodeFinetuneProgress(
  u: unknown,
  record: FinetuneRecord,
  where: string,
): ext.Either<PipelineError, RunProgress> {
  const decoded = RunProgressCodec.decode(u);
  const was = E.isRight(decoded) ? decoded.right.finetune : undefined;
  if (E.isLeft(decoded) || was === undefined) {
    const why = E.isLeft(decoded)
      ? `progress.${reportErrors(decoded.left).join("; progress.")}`
      : "its progress holds no fine-tuning record";
    return E.left(contentInvalid(where, `not a fine-tuning checkpoint: ${why}`));
  }
  const changed = resumeProblem(was, record);
  return changed === undefined ? E.right(decoded.right) : E.left(changed);
}

/** The starting state: the checkpoint's when resuming from one, else the base, measured. */
async function start(
  job: FinetuneJob,
  o: FinetuneRunOptions & Evaluations,
  env: Env,
): Promise<ext.Either<PipelineError, { state: RunState; resumedFrom: number | null }>> {
  if (o.resume) {
    const resumed = await resumedState(
      env,
      job.graph.shape,
      (u, where) => decodeFinetuneProgress(u, job.record, where),
    );
    if (E.isLeft(resumed)) return resumed;
    if (resumed.right !== undefined) {
      const step = resumed.right.progress.globalStep;
      env.log.line(`Resumed at step ${step} of ${job.plan.steps}`);
      return E.right({ state: resumed.right, resumedFrom: step });
    }
  }
  const cut = await run(env.log.truncate(0));
  if (E.isLeft(cut)) return cut;
  const base = await job.base();
  if (E.isLeft(base)) return base;
  const model = await loadModel(env, job.graph.shape, base.right);
  if (E.isLeft(model)) return model;
  const progress: RunProgress = {
    ...initialProgress(hashString(JSON.stringify(job.record)).toString(16), env.data.start),
    finetune: job.record,
  };
  const fresh: RunState = { progress, model: model.right, savedAt: undefined };
  const measured = await heldOutLoss(job, "before", o)(fresh)(env)();
  if (E.isLeft(measured)) env.engine.dispose(model.right.handle);
  return E.map((state: RunState) => ({ state, resumedFrom: null }))(measured);
}

/**
 * The end of the plan: the weights checked (a non-finite one is named, rather than the loss it
 * makes), the held-out loss after, and the final model written.
 */
async function finish(
  job: FinetuneJob,
  s: RunState,
  o: Evaluations & { readonly resumedFrom: number | null },
  env: Env,
): Promise<ext.Either<PipelineError, FinetuneOutcome>> {
  const { skippedInARow, globalStep } = s.progress;
  if (skippedInARow === globalStep) {
    // Every step was skipped (fewer in a row than stop the run): the "fine-tuned" model would
    // be the base itself.
    return E.left(
      brokenBase(job, `the loss or gradient was not finite on all ${globalStep} steps`),
    );
  }
  const snap = await finiteSnapshot(s, env, { node: FINETUNE_NODE, voice: o.voice });
  if (E.isLeft(snap)) return snap;
  const after = await heldOutLoss(job, "after", o)(s)(env)();
  if (E.isLeft(after)) return after;
  const final = await run(env.store.saveFinal(snap.right, job.graph.shape));
  if (E.isLeft(final)) return final;
  env.log.line(`Final model: ${final.right}`);
  return E.right({ finished: true, final: final.right, resumedFrom: o.resumedFrom });
}
