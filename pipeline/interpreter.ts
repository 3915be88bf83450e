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
import type * as TE from "fp-ts/lib/TaskEither.js";
import { formatBytes } from "../solvers/units.ts";
import { TRAINING_DEFAULTS, type TrainingSettings } from "./config.ts";
import type { DataPosition, EngineState, Env, MemoryByRole, StepHyper } from "./effects.ts";
import { describeUnknown, ioFailed, type PipelineError, trainingDiverged } from "./errors.ts";
import { predictStages, predictStandard } from "./predict.ts";
import { cosineLr, isRestartStep, jaggedLr } from "./schedule.ts";
import { encodePipeline } from "./stage_graph.ts";
import type { GraphStage, ValidGraph } from "./validate_graph.ts";

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
  const text = JSON.stringify(encodePipeline(g.pipeline));
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
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

async function value<A>(te: TE.TaskEither<PipelineError, A>): Promise<E.Either<PipelineError, A>> {
  return await te();
}

function maxMemory(a: MemoryByRole | null, b: MemoryByRole): MemoryByRole {
  return a === null || b.total > a.total ? b : a;
}

function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  const s = Math.round(ms / 1000);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}

async function run(
  env: Env,
  g: ValidGraph,
  opts: RunOptions,
): Promise<E.Either<PipelineError, RunResult>> {
  const { engine, data, store, log, clock } = env;
  const T = trainingSettings(g);
  const accum = T.batchTokens / (T.microBatch * T.seqLen);
  const predicted = predictStages(g);
  const id = graphId(g);
  const totalSteps = g.stages.reduce((a, s) => a + s.steps, 0);
  const stageByNode = new Map(g.stages.map((s) => [s.trainNodeId, s]));
  const validation = data.validation(T.evalBatches);

  let state: EngineState | undefined;
  let p: RunProgress = {
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
      const restored = await value(engine.restore(g.shape, ckpt.snapshot));
      if (E.isLeft(restored)) return restored;
      state = restored.right;
      p = saved;
      resumedFrom = p.globalStep;
      const truncated = await value(log.truncate(p.metrics));
      if (E.isLeft(truncated)) return truncated;
      log.line(
        `Resumed at node "${
          g.pipeline.nodes[p.nodeIndex]?.id ?? "end"
        }", step ${p.stepInNode} (global step ${p.globalStep})`,
      );
    }
  }

  const metric = (record: Record<string, unknown>): void => {
    log.metric({ ...record, globalStep: p.globalStep });
    p = { ...p, metrics: p.metrics + 1 };
  };
  const checkpoint = async (): Promise<E.Either<PipelineError, void>> => {
    if (state === undefined) return E.right(undefined);
    const snap = await value(engine.snapshot(state));
    if (E.isLeft(snap)) return snap;
    return await value(store.saveCheckpoint({
      snapshot: snap.right,
      progress: p as unknown as Record<string, unknown>,
    }));
  };
  const evaluate = async (
    s: EngineState,
    node: string,
  ): Promise<E.Either<PipelineError, number>> => {
    const r = await value(engine.evaluate(s, validation));
    if (E.isRight(r)) {
      metric({ type: "eval", node, valLoss: r.right, perplexity: Math.exp(r.right) });
      log.line(
        `  eval @ ${p.globalStep}: val loss ${r.right.toFixed(4)}, perplexity ${
          Math.exp(r.right).toFixed(2)
        }`,
      );
    }
    return r;
  };

  const sessionStart = clock.now();
  const sessionStep0 = p.globalStep;

  const trainStage = async (
    stage: GraphStage,
    s0: EngineState,
  ): Promise<E.Either<PipelineError, EngineState>> => {
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
    for (let k = p.stepInNode; k < stage.steps; k++) {
      if (restarts !== undefined && stage.pet !== undefined && isRestartStep(restarts, k)) {
        const reset = await value(
          engine.reset(s, {
            pruneRatio: stage.pet.pruneRatio,
            seed: T.seed + 7919 * stage.index + k,
          }),
        );
        if (E.isLeft(reset)) return reset;
        s = reset.right.state;
        p = { ...p, merges: p.merges + 1 };
        metric({
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
        drawn = data.next(p.data, accum);
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
      p = {
        ...p,
        stepInNode: k + 1,
        globalStep: p.globalStep + 1,
        tokens: p.tokens + T.batchTokens,
        data: next,
        stagePeak: maxMemory(p.stagePeak, out.right.peak),
      };
      windowTokens += T.batchTokens;
      metric({
        type: "train",
        node: stage.trainNodeId,
        stage: stage.index,
        step: k + 1,
        loss: out.right.loss,
        lr,
        gradNorm: out.right.gradNorm,
        tokens: p.tokens,
        memoryBytes: out.right.peak.total,
      });
      const last = k + 1 === stage.steps;
      if ((k + 1) % T.logEvery === 0 || last) {
        const now = clock.now();
        const tps = windowTokens / Math.max(1e-9, (now - windowStart) / 1000);
        const perStep = (now - sessionStart) / Math.max(1, p.globalStep - sessionStep0);
        const eta = perStep * (totalSteps - p.globalStep);
        const pred = predicted[stage.index - 1]?.bytes ?? 0;
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
      if (p.globalStep % T.evalEvery === 0 && !last) {
        const ev = await evaluate(s, stage.trainNodeId);
        if (E.isLeft(ev)) return ev;
      }
      if (p.globalStep % T.checkpointEvery === 0 && !last) {
        state = s;
        const saved = await checkpoint();
        if (E.isLeft(saved)) return saved;
      }
    }
    return E.right(s);
  };

  for (
    ;
    p.nodeIndex < g.pipeline.nodes.length;
    p = { ...p, nodeIndex: p.nodeIndex + 1, stepInNode: 0 }
  ) {
    const node = g.pipeline.nodes[p.nodeIndex];
    if (node === undefined) break;
    switch (node.op) {
      case "train":
      case "continue": {
        const stage = stageByNode.get(node.id);
        if (stage === undefined) throw new Error(`node ${node.id} has no stage`);
        if (node.op === "train" && state === undefined) {
          const init = await value(engine.init(g.shape, node.layers, T.seed));
          if (E.isLeft(init)) return init;
          state = init.right;
        }
        if (state === undefined) throw new Error(`no model before ${node.id}`);
        if (p.stepInNode === 0) {
          const st = engine.stats(state);
          log.line(
            `Stage ${stage.index} (${node.id}): ${st.layers} layers, trainable ${st.trainableParams}, frozen ${st.frozenParams}, adapters ${st.adapterParams}; ${stage.steps} steps`,
          );
        }
        const trained = await trainStage(stage, state);
        if (E.isLeft(trained)) return trained;
        state = trained.right;
        const ev = await evaluate(state, node.id);
        if (E.isLeft(ev)) return ev;
        const st = engine.stats(state);
        const peak = p.stagePeak ?? engine.memory(state);
        const record: StageRecord = {
          stage: stage.index,
          node: node.id,
          layers: st.layers,
          trainableParams: st.trainableParams,
          frozenParams: st.frozenParams,
          adapterParams: st.adapterParams,
          steps: stage.steps,
          valLoss: ev.right,
          merges: p.merges,
          measuredPeakBytes: peak.total,
          measuredPeak: peak,
          predictedPeakBytes: predicted[stage.index - 1]?.bytes ?? 0,
        };
        metric({ type: "stage", ...record });
        p = {
          ...p,
          stages: [...p.stages, record],
          stagePeak: null,
          merges: 0,
          nodeIndex: p.nodeIndex + 1,
          stepInNode: 0,
        };
        const saved = await checkpoint();
        if (E.isLeft(saved)) return saved;
        p = { ...p, nodeIndex: p.nodeIndex - 1 }; // the loop's increment moves past this node
        break;
      }
      case "grow": {
        if (state === undefined) throw new Error(`no model before ${node.id}`);
        const grown = await value(
          engine.grow(state, {
            add: node.add,
            placement: node.placement ?? "upper",
            seed: node.seed ?? T.seed,
          }),
        );
        if (E.isLeft(grown)) return grown;
        state = grown.right;
        log.line(
          `Grow (${node.id}): +${node.add} layers (${node.placement ?? "upper"}), now ${
            engine.stats(state).layers
          }`,
        );
        metric({ type: "grow", node: node.id, add: node.add, layers: engine.stats(state).layers });
        break;
      }
      case "attachPET": {
        if (state === undefined) throw new Error(`no model before ${node.id}`);
        const stage = g.stages.find((s) => s.pet?.nodeId === node.id);
        const pet = stage?.pet;
        if (stage === undefined || pet === undefined) {
          throw new Error(`node ${node.id} has no stage`);
        }
        const attached = await value(engine.attach(state, {
          rank: pet.rank,
          alpha: pet.alpha,
          targets: pet.targets,
          seed: T.seed + 104729 * stage.index,
          trainEmbeddings: stage.trainEmbeddings,
        }));
        if (E.isLeft(attached)) return attached;
        state = attached.right;
        const st = engine.stats(state);
        log.line(
          `Attach ReLoRA (${node.id}): r=${pet.rank}, α=${pet.alpha}, ${st.adapterParams} adapter parameters on ${
            st.layers - stage.added
          } frozen layers`,
        );
        break;
      }
      case "eval": {
        if (state === undefined) throw new Error(`no model before ${node.id}`);
        const ev = await evaluate(state, node.id);
        if (E.isLeft(ev)) return ev;
        break;
      }
      case "checkpoint": {
        const saved = await checkpoint();
        if (E.isLeft(saved)) return saved;
        log.line(`Checkpoint (${node.id}) at global step ${p.globalStep}`);
        break;
      }
    }
  }
  if (state === undefined) throw new Error("the graph made no model");
  const finalLoss = p.stages[p.stages.length - 1]?.valLoss ?? NaN;
  const merged = await value(engine.mergeAll(state));
  if (E.isLeft(merged)) return merged;
  state = merged.right;
  const mergedLoss = await value(engine.evaluate(state, validation));
  if (E.isLeft(mergedLoss)) return mergedLoss;
  const snap = await value(engine.snapshot(state));
  if (E.isLeft(snap)) return snap;
  const path = await value(store.saveFinal(snap.right, g.shape));
  if (E.isLeft(path)) return path;
  log.line(
    `Merged every adapter: val loss ${mergedLoss.right.toFixed(4)} (adapted model ${
      finalLoss.toFixed(4)
    }); final model at ${path.right}`,
  );
  engine.dispose(state);
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
