/**
 * The interpreter: a fold over the stage graph's nodes that threads the
 * engine state and the run's progress through the effects in `Env`.
 *
 * Progress is plain data saved with every checkpoint; resuming re-enters the
 * graph at the recorded node and step, with the data stream at the recorded
 * position, so a resumed run repeats the uninterrupted one step for step.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as RTE from "fp-ts/lib/ReaderTaskEither.js";
import { TRAINING_DEFAULTS, type TrainingSettings } from "./config.ts";
import type { Env } from "./effects.ts";
import { ioFailed, type PipelineError } from "./errors.ts";
import { predictStages, predictStandard } from "./predict.ts";
import {
  checkpoint,
  evaluate,
  metric,
  type RunContext,
  type RunProgress,
  type StageRecord,
  value,
} from "./run_context.ts";
import { hashString } from "../data/prng.ts";
import { encodePipeline } from "./stage_graph.ts";
import { trainStage } from "./train_stage.ts";
import type { ValidGraph } from "./validate_graph.ts";

export type { RunProgress, StageRecord } from "./run_context.ts";

/** What a run returns. */
export interface RunResult {
  readonly stages: readonly StageRecord[];
  readonly finalValLoss: number;
  /** Validation loss after merging every adapter (should equal `finalValLoss`). */
  readonly mergedValLoss: number;
  readonly finalCheckpoint: string;
  readonly standardPredictedPeakBytes: number;
  readonly globalSteps: number;
  readonly tokens: number;
  readonly resumedFrom: number | undefined;
}

/** Options of {@link runPipeline}. */
export interface RunOptions {
  /** Continue from the run directory's checkpoint when there is one. */
  readonly resume: boolean;
}

/** Training settings of a graph, defaults applied. */
export function trainingSettings(g: ValidGraph): TrainingSettings {
  return { ...TRAINING_DEFAULTS, ...g.pipeline.training };
}

/** A short, stable fingerprint (FNV-1a) of the graph's JSON form. */
export function graphId(g: ValidGraph): string {
  return hashString(JSON.stringify(encodePipeline(g.pipeline))).toString(16).padStart(8, "0");
}

/** Why a checkpoint's progress record cannot be resumed, or undefined when it can. */
export function progressProblem(
  u: Readonly<Record<string, unknown>>,
  g: ValidGraph,
): string | undefined {
  const int = (k: string): boolean => Number.isInteger(u[k]) && (u[k] as number) >= 0;
  for (const k of ["nodeIndex", "stepInNode", "globalStep", "tokens", "metrics", "merges"]) {
    if (!int(k)) return `progress.${k} is ${JSON.stringify(u[k])}, expected a non-negative integer`;
  }
  if (typeof u.graphId !== "string") return "progress.graphId is missing";
  if ((u.nodeIndex as number) > g.pipeline.nodes.length) {
    return `progress.nodeIndex ${u.nodeIndex} is past the graph's ${g.pipeline.nodes.length} nodes`;
  }
  if (typeof u.data !== "object" || u.data === null) return "progress.data is missing";
  if (!Array.isArray(u.stages)) return "progress.stages is missing";
  return undefined;
}

/** Runs a validated graph to the end (or from its checkpoint, when resuming). */
export function runPipeline(
  g: ValidGraph,
  opts: RunOptions,
): RTE.ReaderTaskEither<Env, PipelineError, RunResult> {
  return (env) => () => run(env, g, opts);
}

async function run(
  env: Env,
  g: ValidGraph,
  opts: RunOptions,
): Promise<E.Either<PipelineError, RunResult>> {
  const { engine, data, store, log, clock } = env;
  const T = trainingSettings(g);
  const id = graphId(g);
  const stageByNode = new Map(g.stages.map((s) => [s.trainNodeId, s]));
  let progress: RunProgress = {
    version: 1,
    graphId: id,
    nodeIndex: 0,
    stepInNode: 0,
    globalStep: 0,
    tokens: 0,
    data: data.start,
    metrics: 0,
    stages: [],
    stagePeak: null,
    merges: 0,
  };
  let restored: RunContext["state"];
  let resumedFrom: number | undefined;
  if (opts.resume) {
    const loaded = await value(store.loadCheckpoint());
    if (E.isLeft(loaded)) return loaded;
    const ckpt = loaded.right;
    if (ckpt === undefined) {
      log.line("No checkpoint to resume from: starting from the beginning");
    } else {
      const problem = progressProblem(ckpt.progress, g);
      if (problem !== undefined) return E.left(ioFailed("checkpoint/state.json", problem));
      const saved = ckpt.progress as unknown as RunProgress;
      if (saved.graphId !== id) {
        return E.left(ioFailed(
          "checkpoint",
          `it was written by a different stage graph (${saved.graphId}, this one is ${id}); use another --out directory`,
        ));
      }
      const back = await value(engine.restore(g.shape, ckpt.snapshot));
      if (E.isLeft(back)) return back;
      restored = back.right;
      progress = saved;
      resumedFrom = saved.globalStep;
      const truncated = await value(log.truncate(saved.metrics));
      if (E.isLeft(truncated)) return truncated;
      log.line(
        `Resumed at node "${
          g.pipeline.nodes[saved.nodeIndex]?.id ?? "end"
        }", step ${saved.stepInNode} (global step ${saved.globalStep})`,
      );
    }
  }
  const ctx: RunContext = {
    env,
    settings: T,
    predicted: predictStages(g),
    validation: data.validation(T.evalBatches),
    totalSteps: g.stages.reduce((a, s) => a + s.steps, 0),
    accum: T.batchTokens / (T.microBatch * T.seqLen),
    sessionStart: clock.now(),
    sessionStep0: progress.globalStep,
    progress,
    state: restored,
  };
  const model = (node: string): RunContext["state"] & object => {
    if (ctx.state === undefined) throw new Error(`no model before ${node}`);
    return ctx.state;
  };

  while (ctx.progress.nodeIndex < g.pipeline.nodes.length) {
    const node = g.pipeline.nodes[ctx.progress.nodeIndex];
    if (node === undefined) break;
    switch (node.op) {
      case "train":
      case "continue": {
        const stage = stageByNode.get(node.id);
        if (stage === undefined) throw new Error(`node ${node.id} has no stage`);
        if (node.op === "train" && ctx.state === undefined) {
          const init = await value(engine.init(g.shape, node.layers, T.seed));
          if (E.isLeft(init)) return init;
          ctx.state = init.right;
        }
        if (ctx.progress.stepInNode === 0) {
          const st = engine.stats(model(node.id));
          log.line(
            `Stage ${stage.index} (${node.id}): ${st.layers} layers, trainable ${st.trainableParams}, frozen ${st.frozenParams}, adapters ${st.adapterParams}; ${stage.steps} steps`,
          );
        }
        const trained = await trainStage(ctx, stage, model(node.id));
        if (E.isLeft(trained)) return trained;
        ctx.state = trained.right;
        const ev = await evaluate(ctx, ctx.state, node.id);
        if (E.isLeft(ev)) return ev;
        const st = engine.stats(ctx.state);
        const peak = ctx.progress.stagePeak ?? engine.memory(ctx.state);
        const record: StageRecord = {
          stage: stage.index,
          node: node.id,
          layers: st.layers,
          trainableParams: st.trainableParams,
          frozenParams: st.frozenParams,
          adapterParams: st.adapterParams,
          steps: stage.steps,
          valLoss: ev.right,
          merges: ctx.progress.merges,
          measuredPeakBytes: peak.total,
          measuredPeak: peak,
          predictedPeakBytes: ctx.predicted[stage.index - 1]?.bytes ?? 0,
        };
        metric(ctx, { type: "stage", ...record });
        // The checkpoint at a stage's end points at the next node: resuming never retrains it.
        ctx.progress = {
          ...ctx.progress,
          stages: [...ctx.progress.stages, record],
          stagePeak: null,
          merges: 0,
          nodeIndex: ctx.progress.nodeIndex + 1,
          stepInNode: 0,
        };
        const saved = await checkpoint(ctx);
        if (E.isLeft(saved)) return saved;
        continue;
      }
      case "grow": {
        const grown = await value(engine.grow(model(node.id), {
          add: node.add,
          placement: node.placement ?? "upper",
          seed: node.seed ?? T.seed,
        }));
        if (E.isLeft(grown)) return grown;
        ctx.state = grown.right;
        const layers = engine.stats(ctx.state).layers;
        log.line(
          `Grow (${node.id}): +${node.add} layers (${node.placement ?? "upper"}), now ${layers}`,
        );
        metric(ctx, { type: "grow", node: node.id, add: node.add, layers });
        break;
      }
      case "attachPET": {
        const stage = g.stages.find((s) => s.pet?.nodeId === node.id);
        const pet = stage?.pet;
        if (stage === undefined || pet === undefined) {
          throw new Error(`node ${node.id} has no stage`);
        }
        const attached = await value(engine.attach(model(node.id), {
          rank: pet.rank,
          alpha: pet.alpha,
          targets: pet.targets,
          seed: T.seed + 104729 * stage.index,
          trainEmbeddings: stage.trainEmbeddings,
        }));
        if (E.isLeft(attached)) return attached;
        ctx.state = attached.right;
        const st = engine.stats(ctx.state);
        log.line(
          `Attach ReLoRA (${node.id}): r=${pet.rank}, α=${pet.alpha}, ${st.adapterParams} adapter parameters on ${
            st.layers - stage.added
          } frozen layers`,
        );
        break;
      }
      case "eval": {
        const ev = await evaluate(ctx, model(node.id), node.id);
        if (E.isLeft(ev)) return ev;
        break;
      }
      case "checkpoint": {
        const saved = await checkpoint(ctx);
        if (E.isLeft(saved)) return saved;
        log.line(`Checkpoint (${node.id}) at global step ${ctx.progress.globalStep}`);
        break;
      }
    }
    ctx.progress = { ...ctx.progress, nodeIndex: ctx.progress.nodeIndex + 1, stepInNode: 0 };
  }
  const p = ctx.progress;
  const finalLoss = p.stages[p.stages.length - 1]?.valLoss ?? NaN;
  const merged = await value(engine.mergeAll(model("the export")));
  if (E.isLeft(merged)) return merged;
  const plain = merged.right;
  const mergedLoss = await value(engine.evaluate(plain, ctx.validation));
  if (E.isLeft(mergedLoss)) return mergedLoss;
  const snap = await value(engine.snapshot(plain));
  if (E.isLeft(snap)) return snap;
  const path = await value(store.saveFinal(snap.right, g.shape));
  if (E.isLeft(path)) return path;
  log.line(
    `Merged every adapter: val loss ${mergedLoss.right.toFixed(4)} (adapted model ${
      finalLoss.toFixed(4)
    }); final model at ${path.right}`,
  );
  engine.dispose(plain);
  return E.right({
    stages: p.stages,
    finalValLoss: finalLoss,
    mergedValLoss: mergedLoss.right,
    finalCheckpoint: path.right,
    standardPredictedPeakBytes: predictStandard(g),
    globalSteps: p.globalStep,
    tokens: p.tokens,
    resumedFrom,
  });
}
