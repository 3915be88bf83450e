/**
 * The interpreter: the stage graph is immutable data and a run is a fold over
 * its nodes. It starts from a fresh state or from the run's checkpoint (the
 * progress record decoded by its codec), chains each node's transition
 * (`run_nodes.ts`), then merges every adapter (on a snapshot, `checkpoint/surgery.ts`) and
 * writes the final model.
 *
 * Resuming re-enters the graph at the recorded node and step, with the data
 * stream at the recorded position, so a resumed run repeats the
 * uninterrupted one step for step.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ext, hashString, type PipelineError } from "../base/mod.ts";
import { mergedSnapshot } from "../checkpoint/mod.ts";
import type { EngineSnapshot, EngineState, Env } from "./effects.ts";
import { predictRun, predictStandardRun } from "./predict.ts";
import { runNode } from "./run_nodes.ts";
import {
  decodeProgress,
  initialProgress,
  keptCheckpoint,
  type RunState,
  type StageRecord,
} from "./run_state.ts";
import {
  loadModel,
  modelOf,
  refuseNonFinite,
  resumedState,
  run,
  type RunFacts,
  sequence,
} from "./run_steps.ts";
import { PRETRAINING_ADVICE, pretrainingVoice } from "./run_voice.ts";
import { runSeeds } from "./seeds.ts";
import { encodePipeline } from "./stage_graph.ts";
import type { ValidGraph } from "./validate_graph.ts";

export type { RunProgress, StageRecord } from "./run_state.ts";

/** What a run returns. */
export interface RunResult {
  /** What each stage measured, beside the plan's prediction. */
  readonly stages: readonly StageRecord[];
  /** Validation loss of the last stage's model, adapters unmerged. */
  readonly finalValLoss: number;
  /** Validation loss after merging every adapter (should equal `finalValLoss`). */
  readonly mergedValLoss: number;
  /** Path of the merged final model. */
  readonly finalCheckpoint: string;
  /** Standard pre-training of the final model with the same batches, on the same backend. */
  readonly standardPredicted: { readonly stateBytes: number; readonly peakBytes: number };
  /** Optimizer steps of the whole run. */
  readonly globalSteps: number;
  /** Tokens trained on. */
  readonly tokens: number;
  /** The global step this session resumed from; undefined for a fresh run. */
  readonly resumedFrom: number | undefined;
}

/** Options of {@link runPipeline}. */
export interface RunOptions {
  /** Continue from the run directory's checkpoint when there is one. */
  readonly resume: boolean;
}

/** A short, stable fingerprint (FNV-1a) of the graph's JSON form. */
export function graphId(g: ValidGraph): string {
  return hashString(JSON.stringify(encodePipeline(g.pipeline))).toString(16).padStart(8, "0");
}

/**
 * Runs a validated graph to the end (or from its checkpoint, when resuming).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { runPipeline } from "./interpreter.ts";
 * import { decodePipeline } from "./stage_graph.ts";
 * import { validateGraph } from "./validate_graph.ts";
 * import { wireRun } from "../effects/mod.ts";
 * const graph = E.flatMap(decodePipeline({
 *   version: 1,
 *   model: { hidden: 16, intermediate: 32, heads: 2, layers: 1, vocab: 257, maxSeqLen: 16 },
 *   training: { backend: "cpu", seqLen: 16, microBatch: 2, batchTokens: 32, evalBatches: 1 },
 *   data: { source: "builtin", builtinBytes: 5000 },
 *   nodes: [{ op: "train", id: "t", layers: 1, steps: 2 }],
 * }, "example"), validateGraph);
 * const out = await Deno.makeTempDir();
 * if (E.isRight(graph)) {
 *   const wired = await wireRun(graph.right, { out, mode: "replace", print: () => {} })();
 *   if (E.isRight(wired)) {
 *     const result = await runPipeline(graph.right, { resume: false })(wired.right.env)();
 *     await wired.right.release();
 *     assert(E.isRight(result) && result.right.globalSteps === 2);
 *   }
 * }
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export function runPipeline(
  g: ValidGraph,
  opts: RunOptions,
): ext.ReaderTaskEither<Env, PipelineError, RunResult> {
  return (env) => async () => {
    const start = await startState(g, opts, env);
    if (E.isLeft(start)) return start;
    const { state, resumedFrom } = start.right;
    const predicted = predictRun(g, env.engine.backend.fusedOps, env.engine.backend.kernelThreads);
    const facts: RunFacts = {
      graph: g,
      graphId: graphId(g),
      seeds: runSeeds(g.training.seed),
      predicted,
      validation: env.data.validation(g.training.evalBatches),
      sessionStart: env.clock.now(),
      sessionStep0: state.progress.globalStep,
      voice: pretrainingVoice(predicted),
    };
    const rest = g.pipeline.nodes.slice(state.progress.nodeIndex).map((n) => runNode(facts, n));
    const ran = await sequence(...rest)(state)(env)();
    if (E.isLeft(ran)) return ran;
    return await finish(facts, ran.right, resumedFrom, env);
  };
}

interface Start {
  readonly state: RunState;
  readonly resumedFrom: number | undefined;
}

async function startState(
  g: ValidGraph,
  opts: RunOptions,
  env: Env,
): Promise<ext.Either<PipelineError, Start>> {
  const id = graphId(g);
  const fresh: Start = {
    state: { progress: initialProgress(id, env.data.start), model: undefined, savedAt: undefined },
    resumedFrom: undefined,
  };
  if (!opts.resume) return E.right(fresh);
  const nodes = g.pipeline.nodes;
  const resumed = await resumedState(
    env,
    g.shape,
    (u) => decodeProgress(u, { graphId: id, nodes: nodes.length }),
  );
  if (E.isLeft(resumed)) return resumed;
  const state = resumed.right;
  if (state === undefined) return E.map(() => fresh)(await run(env.log.truncate(0)));
  const p = state.progress;
  env.log.line(
    `Resumed at node "${
      nodes[p.nodeIndex]?.id ?? "end"
    }", step ${p.stepInNode} (global step ${p.globalStep})`,
  );
  return E.right({ state, resumedFrom: p.globalStep });
}

/** Merges every adapter, evaluates the plain model and writes it as the run's final model. */
async function finish(
  facts: RunFacts,
  s: RunState,
  resumedFrom: number | undefined,
  env: Env,
): Promise<ext.Either<PipelineError, RunResult>> {
  const p = s.progress;
  const finalLoss = p.stages[p.stages.length - 1]?.valLoss ?? NaN;
  const written = await exportFinal(facts, s, env);
  if (E.isLeft(written)) return written;
  const { mergedLoss, path } = written.right;
  env.log.line(
    `Merged every adapter: val loss ${mergedLoss.toFixed(4)} (adapted model ${
      finalLoss.toFixed(4)
    }); final model at ${path}`,
  );
  return E.right({
    stages: p.stages,
    finalValLoss: finalLoss,
    mergedValLoss: mergedLoss,
    finalCheckpoint: path,
    standardPredicted: predictStandardRun(
      facts.graph,
      env.engine.backend.fusedOps,
      env.engine.backend.kernelThreads,
    ),
    globalSteps: p.globalStep,
    tokens: p.tokens,
    resumedFrom,
  });
}

/** Where the final model's errors are said to happen. */
const EXPORT = "the export";

/**
 * The model with its adapters merged (on a snapshot), evaluated and written, refused when a
 * weight is not finite; the engine's model is disposed whatever happens.
 */
async function exportFinal(
  facts: RunFacts,
  s: RunState,
  env: Env,
): Promise<ext.Either<PipelineError, { readonly mergedLoss: number; readonly path: string }>> {
  const adapted = modelOf(s, EXPORT);
  const snap = await run(env.engine.snapshot(adapted));
  if (E.isLeft(snap)) {
    env.engine.dispose(adapted);
    return snap;
  }
  const merged = mergedSnapshot(snap.right);
  if (merged === snap.right) return await evaluateAndSave(facts, s, env, adapted, merged);
  // The merged model replaces the adapted one: the engine never holds both.
  env.engine.dispose(adapted);
  const plain = await loadModel(env, facts.graph.shape, merged);
  if (E.isLeft(plain)) return plain;
  return await evaluateAndSave(facts, s, env, plain.right.handle, merged);
}

/** Evaluates the plain model, disposes it, and writes its snapshot unless a weight is not finite. */
async function evaluateAndSave(
  facts: RunFacts,
  s: RunState,
  env: Env,
  plain: EngineState,
  merged: EngineSnapshot,
): Promise<ext.Either<PipelineError, { readonly mergedLoss: number; readonly path: string }>> {
  const mergedLoss = await run(env.engine.evaluate(plain, facts.validation));
  env.engine.dispose(plain);
  if (E.isLeft(mergedLoss)) return mergedLoss;
  const finite = refuseNonFinite(merged, {
    node: EXPORT,
    step: s.progress.globalStep,
    advice: `(${keptCheckpoint(s)}) — ${PRETRAINING_ADVICE}`,
  });
  if (E.isLeft(finite)) return finite;
  const path = await run(env.store.saveFinal(merged, facts.graph.shape));
  return E.map((at: string) => ({ mergedLoss: mergedLoss.right, path: at }))(path);
}
