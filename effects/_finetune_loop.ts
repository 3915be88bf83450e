/**
 * The fine-tuning loop: from the base (or the run's checkpoint) through the planned steps,
 * with progress lines, metrics, periodic checkpoints, the held-out response loss before and
 * after, and the final model. Every step's batch and learning rate come from the plan and the
 * step number, so the loop's only carried state is the engine's and the progress record.
 *
 * A broken model is never a result: a base whose loss is not finite before any update is refused
 * (no learning rate can help it), and a run that diverges stops with a message saying which
 * checkpoint is kept; neither a non-finite held-out loss nor a non-finite weight is ever saved.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ContentInvalid,
  contentInvalid,
  type LlamaShape,
  type PipelineError,
  trainingDiverged,
} from "../base/mod.ts";
import { CHECKPOINT_FILES, RUN_DIR } from "../checkpoint/mod.ts";
import type { SftSet } from "../data/mod.ts";
import {
  checkedSnapshot,
  type ClockEffect,
  type Engine,
  type EngineState,
  type FinetuneMetric,
  type FinetunePlan,
  formatDuration,
  padExamples,
  plannedStep,
  realTokens,
  type StepOutcome,
} from "../pipeline/mod.ts";
import {
  type FinetuneProgress,
  type FinetuneSettingsRecord,
  resumedProgress,
  startProgress,
} from "./_finetune_progress.ts";
import type { RunDir } from "./run_dir.ts";

/** What the loop needs; `fresh` builds the base's state when there is no checkpoint to resume. */
export interface LoopContext {
  readonly engine: Engine;
  readonly dir: RunDir;
  readonly plan: FinetunePlan;
  readonly set: SftSet;
  readonly shape: LlamaShape;
  readonly settings: FinetuneSettingsRecord;
  readonly limits: {
    readonly checkpointEvery: number;
    readonly logEvery: number;
    readonly maxSkippedSteps: number;
  };
  /** The id padding inputs get (their targets are -1). */
  readonly pad: number;
  readonly resume: boolean;
  readonly stopAfter: number | undefined;
  readonly clock: ClockEffect;
  readonly fresh: () => Promise<E.Either<PipelineError, EngineState>>;
}

/** Where the loop ended. */
export interface LoopResult {
  /** All planned steps done and the final model written. */
  readonly finished: boolean;
  readonly step: number;
  readonly steps: number;
  readonly progress: FinetuneProgress;
  readonly heldOutAfter: number | null;
  /** Path of the final model (empty when not finished). */
  readonly final: string;
  readonly resumedFrom: number | null;
}

interface Running {
  state: EngineState;
  progress: FinetuneProgress;
  /** The step of the checkpoint on disk, null before one is written. */
  savedAt: number | null;
}

/** Which checkpoint survives a failure (as pre-training words it). */
function keptCheckpoint(r: Running): string {
  return r.savedAt === null
    ? "no checkpoint was written yet"
    : `the checkpoint of global step ${r.savedAt} is kept`;
}

/** What can help a run whose updates overflowed (a broken base is refused before this). */
const LOWER_LR = "lower --lr or raise --warmup";

/**
 * The error for a base whose loss or gradient is not finite before any update: its weights are
 * finite (checked when loaded), so its own forward or backward pass overflows float32.
 */
function brokenBase(c: LoopContext, what: string): ContentInvalid {
  return contentInvalid(
    c.settings.base,
    `${what}, before any update: the base's weights are finite but its forward or backward ` +
      "pass overflows float32, so no learning rate can help",
  );
}

function metric(c: LoopContext, r: Running, record: FinetuneMetric): void {
  c.dir.log.metric(record);
  r.progress = { ...r.progress, metrics: r.progress.metrics + 1 };
}

/** Mean response loss on the held-out examples, or null without any. */
async function heldOutLoss(
  c: LoopContext,
  state: EngineState,
): Promise<E.Either<PipelineError, number | null>> {
  if (c.plan.heldOut.length === 0) return E.right(null);
  const xs = c.plan.heldOut.map((i) => c.set.examples[i]!);
  const batches = padExamples(xs, { microBatch: c.plan.microBatch, pad: c.pad });
  return await c.engine.evaluate(state, batches)();
}

/**
 * The held-out response loss, logged and recorded; one that is not finite is an error: before
 * fine-tuning the base is broken, after it the run diverged (and nothing is saved).
 */
async function evaluated(
  c: LoopContext,
  r: Running,
  when: "before" | "after",
): Promise<E.Either<PipelineError, number | null>> {
  const loss = await heldOutLoss(c, r.state);
  if (E.isLeft(loss) || loss.right === null) return loss;
  if (!Number.isFinite(loss.right)) {
    const what = `the held-out response loss ${when} fine-tuning is ${loss.right}`;
    return E.left(
      when === "before" ? brokenBase(c, what) : trainingDiverged(
        "finetune",
        r.progress.step,
        `${what}; the final model is not saved (${keptCheckpoint(r)}) — ${LOWER_LR}`,
      ),
    );
  }
  const n = c.plan.heldOut.length;
  metric(c, r, { type: "eval", set: "held-out", when, step: r.progress.step, loss: loss.right });
  c.dir.log.line(
    `Held-out response loss ${when} fine-tuning: ${loss.right.toFixed(4)} nats/token ` +
      `(${n} examples, ${
        c.plan.heldOut.reduce((s, i) => s + c.set.examples[i]!.responseTokens, 0)
      } response tokens)`,
  );
  return loss;
}

async function start(
  c: LoopContext,
): Promise<E.Either<PipelineError, Running & { resumedFrom: number | null }>> {
  if (c.resume) {
    const ckpt = await c.dir.store.loadCheckpoint()();
    if (E.isLeft(ckpt)) return ckpt;
    if (ckpt.right !== undefined) {
      const where = `${c.dir.dir}/${RUN_DIR.checkpoint}/${CHECKPOINT_FILES.state}`;
      const progress = resumedProgress(ckpt.right.progress, c.settings, where);
      if (E.isLeft(progress)) return progress;
      const state = await c.engine.load(c.shape, ckpt.right.snapshot)();
      if (E.isLeft(state)) return state;
      const cut = await c.dir.log.truncate(progress.right.metrics)();
      if (E.isLeft(cut)) {
        c.engine.dispose(state.right);
        return cut;
      }
      c.dir.log.line(`Resumed at step ${progress.right.step} of ${c.plan.steps}`);
      return E.right({
        state: state.right,
        progress: progress.right,
        savedAt: progress.right.step,
        resumedFrom: progress.right.step,
      });
    }
    c.dir.log.line("No checkpoint to resume from: starting from the beginning");
  }
  const cut = await c.dir.log.truncate(0)();
  if (E.isLeft(cut)) return cut;
  const state = await c.fresh();
  if (E.isLeft(state)) return state;
  const r: Running = {
    state: state.right,
    progress: startProgress(c.settings, null),
    savedAt: null,
  };
  const before = await evaluated(c, r, "before");
  if (E.isLeft(before)) {
    c.engine.dispose(r.state);
    return before;
  }
  r.progress = { ...r.progress, heldOutBefore: before.right };
  return E.right({ ...r, resumedFrom: null });
}

/** The model's weights, refused when any is not finite (a diverged model is never saved). */
function snapshot(c: LoopContext, r: Running, advice: string) {
  return checkedSnapshot(c.engine, r.state, { node: "finetune", step: r.progress.step, advice });
}

async function saveCheckpoint(c: LoopContext, r: Running): Promise<E.Either<PipelineError, void>> {
  const snap = await snapshot(c, r, `(${keptCheckpoint(r)}) — ${LOWER_LR}`);
  if (E.isLeft(snap)) return snap;
  const saved = await c.dir.store.saveCheckpoint({ snapshot: snap.right, progress: r.progress })();
  if (E.isRight(saved)) r.savedAt = r.progress.step;
  return saved;
}

/** Tokens and clock reading since the last progress line. */
interface Window {
  readonly start: number;
  readonly tokens: number;
}

/** Clock reading and step when this process began training (for the ETA). */
interface Session {
  readonly start: number;
  readonly step0: number;
}

/** What a step did: input tokens (padding not counted), its epoch and learning rate. */
interface StepDone {
  readonly tokens: number;
  readonly epoch: number;
  readonly lr: number;
}

/** One planned step on the engine: the state and the progress move on, a record is written. */
async function step(
  c: LoopContext,
  r: Running,
  k: number,
): Promise<E.Either<PipelineError, StepDone>> {
  const planned = plannedStep(c.plan, k);
  const xs = planned.examples.map((i) => c.set.examples[i]!);
  const S = c.settings;
  const out = await c.engine.step(
    r.state,
    padExamples(xs, { microBatch: S.microBatch, pad: c.pad }),
    {
      lr: planned.lr,
      beta1: S.beta1,
      beta2: S.beta2,
      eps: S.eps,
      weightDecay: S.weightDecay,
      clip: S.clip,
      recompute: "none",
    },
  )();
  if (E.isLeft(out)) return out;
  const o: StepOutcome = out.right;
  r.state = o.state;
  const tokens = xs.reduce((n, x) => n + x.responseTokens, 0);
  const p = r.progress;
  const epochs = [...p.epochs];
  if (!o.skipped) {
    const e = epochs[planned.epoch] ?? { lossSum: 0, tokens: 0 };
    epochs[planned.epoch] = { lossSum: e.lossSum + o.loss * tokens, tokens: e.tokens + tokens };
  }
  r.progress = {
    ...p,
    step: k + 1,
    responseTokens: p.responseTokens + (o.skipped ? 0 : tokens),
    skippedInARow: o.skipped ? p.skippedInARow + 1 : 0,
    firstLoss: p.firstLoss ?? (o.skipped ? null : o.loss),
    lastLoss: o.skipped ? p.lastLoss : o.loss,
    epochs,
  };
  metric(c, r, {
    type: "train",
    step: k + 1,
    epoch: planned.epoch,
    loss: o.loss,
    lr: planned.lr,
    gradNorm: o.gradNorm,
    responseTokens: tokens,
    ...(o.skipped ? { skipped: true } : {}),
  });
  if (o.skipped) {
    const inARow = r.progress.skippedInARow;
    c.dir.log.line(
      `  step ${k + 1} skipped: loss ${o.loss}, gradient norm ${o.gradNorm}; weights unchanged ` +
        `(${inARow} in a row, ${c.limits.maxSkippedSteps} stop the run)`,
    );
    if (inARow >= c.limits.maxSkippedSteps) {
      const last = `last: loss ${o.loss}, gradient norm ${o.gradNorm}`;
      // No step has updated the weights yet: they are the base's, whatever the learning rate.
      if (r.progress.firstLoss === null) {
        return E.left(brokenBase(
          c,
          `the loss or gradient was not finite on each of the first ${inARow} steps (${last})`,
        ));
      }
      return E.left(trainingDiverged(
        "finetune",
        k,
        `${inARow} steps in a row had a non-finite loss or gradient (${last}, LR ${
          planned.lr.toExponential(2)
        }); ${keptCheckpoint(r)} — ${LOWER_LR}`,
      ));
    }
  }
  return E.right({ tokens: realTokens(xs), epoch: planned.epoch, lr: planned.lr });
}

function progressLine(
  c: LoopContext,
  r: Running,
  at: { readonly k: number; readonly done: StepDone },
  w: Window,
  session: Session,
): Window {
  const { k, done: { epoch, lr } } = at;
  const steps = c.plan.steps;
  if ((k + 1) % c.limits.logEvery !== 0 && k !== 0 && k + 1 !== steps) return w;
  const now = c.clock.now();
  const tps = w.tokens / Math.max(1e-9, (now - w.start) / 1000);
  const done = k + 1 - session.step0;
  const eta = ((now - session.start) / Math.max(1, done)) * (steps - k - 1);
  c.dir.log.line(
    `[finetune ${k + 1}/${steps} epoch ${epoch + 1}/${c.plan.settings.epochs}] loss ${
      (r.progress.lastLoss ?? NaN).toFixed(4)
    }  lr ${lr.toExponential(2)}  ${Math.round(tps)} tok/s  ETA ${formatDuration(eta)}`,
  );
  return { start: now, tokens: 0 };
}

/**
 * Runs the plan from the checkpoint's step (or the start) to its end, or for `stopAfter` steps.
 * Consumes `ctx.fresh`'s state; every engine state it makes is disposed before it returns.
 */
export async function trainLoop(c: LoopContext): Promise<E.Either<PipelineError, LoopResult>> {
  const started = await start(c);
  if (E.isLeft(started)) return started;
  const r: Running = {
    state: started.right.state,
    progress: started.right.progress,
    savedAt: started.right.savedAt,
  };
  const resumedFrom = started.right.resumedFrom;
  try {
    const first = r.progress.step;
    const end = Math.min(c.plan.steps, first + (c.stopAfter ?? Infinity));
    const session: Session = { start: c.clock.now(), step0: first };
    let window: Window = { start: session.start, tokens: 0 };
    for (let k = first; k < end; k++) {
      const done = await step(c, r, k);
      if (E.isLeft(done)) return done;
      window = progressLine(
        c,
        r,
        { k, done: done.right },
        { ...window, tokens: window.tokens + done.right.tokens },
        session,
      );
      // The last planned step writes final/ instead: one snapshot, not two.
      const due = ((k + 1) % c.limits.checkpointEvery === 0 || k + 1 === end) &&
        k + 1 !== c.plan.steps;
      if (due) {
        const saved = await saveCheckpoint(c, r);
        if (E.isLeft(saved)) return saved;
      }
    }
    const base = { step: r.progress.step, steps: c.plan.steps, resumedFrom };
    if (r.progress.step < c.plan.steps) {
      c.dir.log.line(
        `Stopped after step ${r.progress.step} of ${c.plan.steps}: continue with --resume`,
      );
      return E.right({
        ...base,
        finished: false,
        progress: r.progress,
        heldOutAfter: null,
        final: "",
      });
    }
    if (r.progress.firstLoss === null) {
      // Every step was skipped (fewer in a row than stop the run): the "fine-tuned" model would
      // be the base itself.
      return E.left(brokenBase(
        c,
        `the loss or gradient was not finite on all ${r.progress.step} steps`,
      ));
    }
    // The weights first: a non-finite one is named, rather than the loss it makes.
    const snap = await snapshot(c, r, `(${keptCheckpoint(r)}) — ${LOWER_LR}`);
    if (E.isLeft(snap)) return snap;
    const after = await evaluated(c, r, "after");
    if (E.isLeft(after)) return after;
    const final = await c.dir.store.saveFinal(snap.right, c.shape)();
    if (E.isLeft(final)) return final;
    c.dir.log.line(`Final model: ${final.right}`);
    return E.right({
      ...base,
      finished: true,
      progress: r.progress,
      heldOutAfter: after.right,
      final: final.right,
    });
  } finally {
    c.engine.dispose(r.state);
  }
}
