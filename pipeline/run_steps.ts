/**
 * The small transitions every node is built from: a transition is a function
 * from the run's state to `ReaderTaskEither<Env, PipelineError, RunState>`,
 * so nodes are chains of them and nothing is shared or mutated. Here: the
 * run's fixed facts, metrics records, evaluation and checkpoints (which never
 * write a model with a non-finite weight).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as RTE from "fp-ts/lib/ReaderTaskEither.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import {
  kernelFailed,
  type LlamaShape,
  nonFiniteIndex,
  type PipelineError,
  trainingDiverged,
} from "../base/mod.ts";
import { snapshotBytes } from "../checkpoint/mod.ts";
import type { EngineSnapshot, EngineState, Env, GaloreEngineSpec, MicroBatch } from "./effects.ts";
import type { MetricRecord, RunMetricBody } from "./metrics_records.ts";
import { accountModel, type ModelAccount } from "./model_account.ts";
import { keptCheckpoint, type RunModel, type RunProgress, type RunState } from "./run_state.ts";
import type { StagePrediction } from "./predict.ts";
import { PRETRAINING_ADVICE, type RunVoice } from "./run_voice.ts";
import type { RunSeeds } from "./seeds.ts";
import type { ValidGraph } from "./validate_graph.ts";

/** What stays fixed while a graph runs in this process. */
export interface RunFacts {
  readonly graph: ValidGraph;
  readonly graphId: string;
  readonly seeds: RunSeeds;
  /** Predicted model state and peak per stage, on the engine's backend. */
  readonly predicted: readonly StagePrediction[];
  /** The fixed validation micro-batches (`training.evalBatches` of them). */
  readonly validation: readonly MicroBatch[];
  /** Clock reading and global step when this process started (for the ETA). */
  readonly sessionStart: number;
  readonly sessionStep0: number;
  /** What the run's steps write and print (pre-training's or fine-tuning's). */
  readonly voice: RunVoice;
}

/** One step of a run: a new state from the old, through the effects. */
export type Transition = (s: RunState) => RTE.ReaderTaskEither<Env, PipelineError, RunState>;

/** A transition written as an async function of the state and the effects. */
export function transition(
  f: (s: RunState, env: Env) => Promise<E.Either<PipelineError, RunState>>,
): Transition {
  return (s) => (env) => () => f(s, env);
}

/** The transitions one after the other (a fold over a short, fixed list). */
export function sequence(...steps: readonly Transition[]): Transition {
  return transition(async (s0, env) => {
    let s = s0;
    for (const step of steps) {
      const next = await step(s)(env)();
      if (E.isLeft(next)) return next;
      s = next.right;
    }
    return E.right(s);
  });
}

/** Runs an effect's TaskEither, widening its error. */
export async function run<A>(
  te: TE.TaskEither<PipelineError, A>,
): Promise<E.Either<PipelineError, A>> {
  return await te();
}

/** The model of a state that has one (validation guarantees it past the first `train`). */
function runModel(s: RunState, node: string): RunModel {
  if (s.model === undefined) throw new Error(`no model before node "${node}"`);
  return s.model;
}

/** The engine's handle on the state's model. */
export function modelOf(s: RunState, node: string): EngineState {
  return runModel(s, node).handle;
}

/** The counts by role of the state's model. */
export function accountOf(s: RunState, node: string): ModelAccount {
  return runModel(s, node).account;
}

/** The state with the handle an engine's step or reset returned (the same model, so the same counts). */
export function withHandle(s: RunState, handle: EngineState, node: string): RunState {
  return { ...s, model: { ...runModel(s, node), handle } };
}

/** The model of `snapshot` on the engine, with its counts. */
export async function loadModel(
  env: Env,
  shape: LlamaShape,
  snapshot: EngineSnapshot,
  options: { readonly galore?: GaloreEngineSpec } = {},
): Promise<E.Either<PipelineError, RunModel>> {
  const handle = await run(env.engine.load(shape, snapshot, options));
  return E.map((h: EngineState): RunModel => ({
    handle: h,
    account: accountModel(snapshot.params, snapshot.meta.trainable),
  }))(handle);
}

/**
 * The run's checkpoint as the state to go on from: its progress decoded by `decode` (given
 * where it is read from), its model loaded, the metrics log cut back to the records the
 * checkpoint counted. Undefined, after saying so, when there is no checkpoint.
 */
export async function resumedState(
  env: Env,
  shape: LlamaShape,
  decode: (u: unknown, where: string) => E.Either<PipelineError, RunProgress>,
): Promise<E.Either<PipelineError, RunState | undefined>> {
  const loaded = await run(env.store.loadCheckpoint());
  if (E.isLeft(loaded)) return loaded;
  const ckpt = loaded.right;
  if (ckpt === undefined) {
    env.log.line("No checkpoint to resume from: starting from the beginning");
    return E.right(undefined);
  }
  const progress = decode(ckpt.progress, "checkpoint/state.json");
  if (E.isLeft(progress)) return progress;
  const model = await loadModel(env, shape, ckpt.snapshot);
  if (E.isLeft(model)) return model;
  const cut = await run(env.log.truncate(progress.right.metrics));
  if (E.isLeft(cut)) {
    env.engine.dispose(model.right.handle);
    return cut;
  }
  return E.right({
    progress: progress.right,
    model: model.right,
    savedAt: progress.right.globalStep,
  });
}

/** What carrying the model through host memory at a stage boundary cost. */
export interface BoundaryCost {
  /** Bytes of the host copy (weights, adapters, Adam's moments). */
  readonly bytes: number;
  readonly ms: number;
}

/**
 * A stage boundary: the model copied out, `transform` applied to the copy, the result loaded.
 * The old state is disposed before the new one loads, so the engine never holds both.
 */
export async function transformModel(
  s: RunState,
  env: Env,
  at: { readonly node: string; readonly what: string; readonly shape: LlamaShape },
  transform: (snap: EngineSnapshot) => E.Either<string, EngineSnapshot>,
): Promise<E.Either<PipelineError, { readonly state: RunState; readonly cost: BoundaryCost }>> {
  const t0 = env.clock.now();
  const handle = modelOf(s, at.node);
  const snap = await run(env.engine.snapshot(handle));
  if (E.isLeft(snap)) return snap;
  env.engine.dispose(handle);
  const next = transform(snap.right);
  if (E.isLeft(next)) return E.left(kernelFailed(`${at.what} failed: ${next.left}`));
  const model = await loadModel(env, at.shape, next.right);
  if (E.isLeft(model)) return model;
  return E.right({
    state: { ...s, model: model.right },
    cost: { bytes: snapshotBytes(snap.right), ms: env.clock.now() - t0 },
  });
}

/** Appends a metrics record and counts it in the progress (a resumed run keeps that many). */
export function countedMetric(s: RunState, env: Env, record: MetricRecord): RunState {
  env.log.metric(record);
  return { ...s, progress: { ...s.progress, metrics: s.progress.metrics + 1 } };
}

/** Appends a pre-training record stamped with the global step, and counts it. */
export function recordMetric(s: RunState, env: Env, record: RunMetricBody): RunState {
  return countedMetric(s, env, { ...record, globalStep: s.progress.globalStep });
}

/** Validation loss of the state's model on `batches`, logged and recorded. */
export async function evaluateModel(
  s: RunState,
  env: Env,
  at: { readonly node: string; readonly batches: readonly MicroBatch[]; readonly set?: string },
): Promise<E.Either<PipelineError, { readonly state: RunState; readonly loss: number }>> {
  const r = await run(env.engine.evaluate(modelOf(s, at.node), at.batches));
  if (E.isLeft(r)) return r;
  const loss = r.right;
  // A loss that is not a number is never a result: not in metrics.jsonl, the report or a chart.
  if (!Number.isFinite(loss)) {
    return E.left(trainingDiverged(
      at.node,
      s.progress.globalStep,
      `the ${at.set === undefined ? "validation" : at.set} loss is ${loss}: the model's ` +
        `outputs overflow float32; nothing from this evaluation is recorded (${
          keptCheckpoint(s)
        }) — ${PRETRAINING_ADVICE}`,
    ));
  }
  const state = recordMetric(s, env, {
    type: "eval",
    node: at.node,
    ...(at.set === undefined ? {} : { set: at.set }),
    valLoss: loss,
    perplexity: Math.exp(loss),
  });
  env.log.line(
    `  eval${at.set === undefined ? "" : ` on ${at.set}`} @ ${s.progress.globalStep}: ${
      at.set === undefined ? "val " : ""
    }loss ${loss.toFixed(4)}, perplexity ${Math.exp(loss).toFixed(2)}`,
  );
  return E.right({ state, loss });
}

/** The first parameter holding a NaN or an infinity, with the offending element and value. */
export function firstNonFinite(
  snapshot: EngineSnapshot,
): { readonly name: string; readonly index: number; readonly value: number } | undefined {
  for (const p of snapshot.params) {
    const index = nonFiniteIndex(p.data);
    if (index >= 0) return { name: p.name, index, value: p.data[index]! };
  }
  return undefined;
}

/** Where a snapshot is taken, and what the refusal of a non-finite one says. */
export interface SnapshotAt {
  readonly node: string;
  readonly step: number;
  /** Ends the message (what was kept, what to change). */
  readonly advice: string;
}

/** The snapshot, refused when any weight is not finite (a diverged model is never saved). */
export function refuseNonFinite(
  snapshot: EngineSnapshot,
  at: SnapshotAt,
): E.Either<PipelineError, EngineSnapshot> {
  const bad = firstNonFinite(snapshot);
  if (bad === undefined) return E.right(snapshot);
  return E.left(trainingDiverged(
    at.node,
    at.step,
    `weight "${bad.name}" holds ${bad.value} at element ${bad.index}; this model is not saved ${at.advice}`,
  ));
}

/** A snapshot of `state`, refused when any weight is not finite. */
async function checkedSnapshot(
  engine: Env["engine"],
  state: EngineState,
  at: SnapshotAt,
): Promise<E.Either<PipelineError, EngineSnapshot>> {
  const snap = await run(engine.snapshot(state));
  return E.isLeft(snap) ? snap : refuseNonFinite(snap.right, at);
}

/** A snapshot of the model, refused (in `voice`'s words) when any weight is not finite. */
export function finiteSnapshot(
  s: RunState,
  env: Env,
  at: { readonly node: string; readonly voice: RunVoice },
): Promise<E.Either<PipelineError, EngineSnapshot>> {
  return checkedSnapshot(env.engine, modelOf(s, at.node), {
    node: at.node,
    step: s.progress.globalStep,
    advice: `(${at.voice.kept(s)}) — ${at.voice.advice}`,
  });
}

/** Saves the model and the progress as the run's checkpoint (nothing to save before a model). */
export function checkpointRun(node: string, voice: RunVoice): Transition {
  return transition(async (s, env) => {
    if (s.model === undefined) return E.right(s);
    const snap = await finiteSnapshot(s, env, { node, voice });
    if (E.isLeft(snap)) return snap;
    const saved = await run(
      env.store.saveCheckpoint({ snapshot: snap.right, progress: s.progress }),
    );
    return E.map((): RunState => ({ ...s, savedAt: s.progress.globalStep }))(saved);
  });
}
