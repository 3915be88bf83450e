/**
 * What is predicted for a stage graph in the engine's own regime: the model
 * state per stage (fp32 Adam: 4 + 4 + 8 B per trained parameter, 4 B per
 * frozen one, embeddings, final norm and LM head counted), and the whole
 * peak of a training step — model state, activations and the engine's
 * workspace — replayed buffer by buffer (`solvers/engine_memory.ts`).
 *
 * @module
 */
import {
  engineStepMemory,
  type FusibleOp,
  galoreStateElements,
  type MemoryAssumptions,
  type MemoryProblem,
  stageMemories,
  type StageMemory,
} from "../solvers/mod.ts";
import {
  DEFAULT_PLACEMENT,
  firstStageRoles,
  formatBytes,
  formatCount,
  type LlamaShape,
  type Projection,
  projectionDims,
  type StageRoles,
} from "../base/mod.ts";
import { BACKEND_FUSED, type BackendName } from "./config.ts";
import { runFlops } from "./run_flops.ts";
import type { ValidGraph } from "./validate_graph.ts";

/**
 * The engine's regime: fp32 Adam, embeddings held and counted, activations outside model state.
 * `trainEmbeddings` says whether the embedding, final norm and LM head train after stage 1.
 */
export function engineAssumptions(trainEmbeddings: boolean): MemoryAssumptions {
  return {
    precision: "fp32",
    embeddings: true,
    trainEmbeddingsAfterStage1: trainEmbeddings,
    activations: undefined,
  };
}

/** The memory problem of stage `index` (1-based) under the engine's regime. */
export function engineProblem(g: ValidGraph, index: number): MemoryProblem {
  const stage = g.stages[index - 1];
  const pet = stage?.pet;
  return {
    shape: g.shape,
    adapter: pet === undefined
      ? { rank: 0, targets: [] }
      : { rank: pet.rank, targets: pet.targets },
    assumptions: engineAssumptions(stage?.trainEmbeddings ?? false),
  };
}

// Standard pre-training has one stage: whether embeddings train later does not matter.
const FROZEN_AFTER_STAGE_1 = false;

/** Predicted model state of standard pre-training of `shape` on the engine (16 B per parameter). */
export function standardModelState(shape: LlamaShape): number {
  const problem = {
    shape,
    adapter: { rank: 0, targets: [] },
    assumptions: engineAssumptions(FROZEN_AFTER_STAGE_1),
  };
  return stageMemories(problem, [shape.layers])[0]?.bytes ?? 0;
}

/**
 * Bytes GaLore saves on one stage against AdamW (fp32): per targeted matrix, Adam's 2·m·n moments
 * become a projector and two projected moments (`galoreStateElements`, rank clamped to the
 * matrix).
 */
export function galoreSavingBytes(
  shape: LlamaShape,
  layers: number,
  galore: { readonly rank: number; readonly targets: readonly Projection[] },
): number {
  const perLayer = galore.targets.reduce((sum, p) => {
    const d = projectionDims(shape, p);
    return sum + 4 * (2 * d.in * d.out - galoreStateElements(d.in, d.out, galore.rank));
  }, 0);
  return layers * perLayer;
}

/** Predicted fp32 model-state memory of every stage of a graph. */
export function predictStages(g: ValidGraph): StageMemory[] {
  const split = g.stages.map((s) => s.added);
  return g.stages.map((s) => {
    const m = stageMemories(engineProblem(g, s.index), split)[s.index - 1];
    if (m === undefined) throw new Error(`no memory for stage ${s.index}`);
    if (s.galore === undefined) return m;
    const saving = galoreSavingBytes(g.shape, s.layers, s.galore);
    return {
      ...m,
      bytes: m.bytes - saving,
      terms: { ...m.terms, newLayers: m.terms.newLayers - saving },
    };
  });
}

/** Predicted fp32 model-state memory of standard pre-training of the same final model. */
export function predictStandard(g: ValidGraph): number {
  return standardModelState(g.shape);
}

/** What one stage of a run is predicted to hold. */
export interface StagePrediction {
  /** The stage's number, from 1. */
  readonly stage: number;
  /** Model state per the plan (engine regime). */
  readonly stateBytes: number;
  /** The whole peak of a training step: model state, activations, workspace. */
  readonly peakBytes: number;
  /** Where in the step the peak falls, e.g. `backward head cross-entropy`. */
  readonly peakAt: string;
}

/** The buffer replay of one step of `roles` with the graph's batches and training modes. */
function replayStep(
  g: ValidGraph,
  fused: readonly FusibleOp[],
  roles: StageRoles,
  rank: number,
  kernelThreads: number,
): ReturnType<typeof engineStepMemory> {
  const T = g.training;
  return engineStepMemory({
    shape: g.shape,
    roles,
    rank,
    microBatch: T.microBatch,
    seqLen: T.seqLen,
    accumulation: g.accumulation,
    fused,
    recompute: T.recompute,
    ...(T.lossChunk === undefined ? {} : { lossChunk: T.lossChunk }),
    kernelThreads,
  });
}

/**
 * Predicted model state and peak of every stage, on a backend that fuses `fused` and cuts its
 * fused kernels over `kernelThreads` threads (default 1: fused attention's scratch is per thread).
 */
export function predictRun(
  g: ValidGraph,
  fused: readonly FusibleOp[],
  kernelThreads = 1,
): StagePrediction[] {
  const states = predictStages(g);
  return g.stages.map((s, i) => {
    const step = replayStep(g, fused, s.roles, s.pet?.rank ?? 0, kernelThreads);
    // GaLore's smaller moments are alive through the whole step, so every moment drops by them.
    const saving = s.galore === undefined ? 0 : galoreSavingBytes(g.shape, s.layers, s.galore);
    return {
      stage: s.index,
      stateBytes: states[i]?.bytes ?? 0,
      peakBytes: step.peakBytes - saving,
      peakAt: step.peakAt,
    };
  });
}

/** The same prediction for standard pre-training of the final model with the same batches. */
export function predictStandardRun(
  g: ValidGraph,
  fused: readonly FusibleOp[],
  kernelThreads = 1,
): Omit<StagePrediction, "stage"> {
  const step = replayStep(g, fused, firstStageRoles(g.shape.layers), 0, kernelThreads);
  return { stateBytes: predictStandard(g), peakBytes: step.peakBytes, peakAt: step.peakAt };
}

/** The graph and each node's predicted memory, as `--dry-run` prints it. */
export function describeGraph(g: ValidGraph, backend: BackendName = g.training.backend): string {
  const predicted = predictStages(g);
  const fused = BACKEND_FUSED[backend];
  const peaks = predictRun(g, fused);
  const byNode = new Map(g.stages.map((s) => [s.trainNodeId, s]));
  const lines = [
    `Stage graph "${g.pipeline.name ?? "pipeline"}": target ${g.shape.layers} layers, split [${
      g.stages.map((s) => s.added).join(", ")
    }]`,
    "Predicted per stage: model state (fp32 Adam, embeddings counted) and the whole peak of a " +
    `step (state, activations, workspace; with the ${backend} backend's kernels):`,
  ];
  for (const n of g.pipeline.nodes) {
    const stage = byNode.get(n.id);
    const detail = n.op === "train" || n.op === "continue"
      ? `${n.steps} steps (schedule ${n.scheduleSteps ?? n.steps})`
      : n.op === "grow"
      ? `+${n.add} layers, ${n.placement ?? DEFAULT_PLACEMENT}`
      : n.op === "attachPET"
      ? `${n.kind} r=${n.rank}`
      : "";
    const mem = stage === undefined ? "" : (() => {
      const m = predicted[stage.index - 1];
      return m === undefined
        ? ""
        : `stage ${stage.index}: ${m.layers} layers, trained ${
          formatCount(m.params.trainable)
        }, frozen ${formatCount(m.params.frozen)}, adapters ${formatCount(m.params.adapters)} → ${
          formatBytes(m.bytes)
        }, peak ${formatBytes(peaks[stage.index - 1]?.peakBytes ?? 0)}`;
    })();
    lines.push(`  ${n.id.padEnd(16)} ${n.op.padEnd(10)} ${detail.padEnd(28)} ${mem}`);
  }
  const budget = g.pipeline.memoryBudget;
  if (budget !== undefined) {
    const over = peaks.flatMap((p, i) => p.peakBytes > budget ? [i + 1] : []);
    lines.push(
      `Memory budget ${formatBytes(budget)}: ${
        over.length === 0
          ? "every stage's predicted peak within it"
          : `stage ${over.join(", ")} predicted over it`
      }`,
    );
  }
  lines.push(
    `Standard pre-training of the final model: ${formatBytes(predictStandard(g))}, peak ${
      formatBytes(predictStandardRun(g, fused).peakBytes)
    }`,
  );
  const flops = runFlops(g, "paper");
  lines.push(
    `Compute: ${flops.paper.toExponential(3)} FLOPs (6·N_trained + 2·N_frozen per token, ` +
      `non-embedding); executed by the engine: ${flops.executed.toExponential(3)} ` +
      `(its matmuls: input gradients below frozen layers, attention, LM head)${
        g.pipeline.flops === undefined
          ? ""
          : `; declared ${g.pipeline.flops.toExponential(3)} (within one step per stage)`
      }`,
  );
  return lines.join("\n");
}
