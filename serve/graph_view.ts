/**
 * A run's stage graph as the dashboard draws it: its nodes in order, and per stage what the
 * plan gives it (layers, trained, frozen and adapter parameters, predicted model state and
 * peak), where it starts and ends in optimizer steps, and the run's compute in both
 * accountings. Read from a graph YAML with the project's own decoder and validator.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { DEFAULT_PLACEMENT, describeUnknown } from "../base/mod.ts";
import {
  BACKEND_FUSED,
  graphFromYaml,
  methodLabel,
  predictRun,
  predictStages,
  runFlops,
  type ValidGraph,
} from "../pipeline/mod.ts";
import type { RunCompute } from "./metrics_tail.ts";

/** One node of the graph, in words. */
export interface NodeView {
  readonly id: string;
  readonly op: string;
  /** What it does, e.g. `+1 layers, upper` or `relora r=8`. */
  readonly detail: string;
}

/** One stage as planned. */
export interface PlannedStage {
  readonly stage: number;
  /** The `train` or `continue` node that trains it. */
  readonly node: string;
  readonly layers: number;
  /** Layers the stage adds (the split). */
  readonly added: number;
  readonly trainableParams: number;
  readonly frozenParams: number;
  readonly adapterParams: number;
  /** What the adapters are and their rank, e.g. `relora r=8`; null without adapters. */
  readonly adapters: string | null;
  /** Whether GaLore projects the stage's gradients. */
  readonly galore: boolean;
  /** Global step the stage starts after and the one it ends at. */
  readonly fromStep: number;
  readonly toStep: number;
  readonly predictedStateBytes: number;
  /** The plan's whole peak of a step; null when the replay could not be made. */
  readonly predictedPeakBytes: number | null;
}

/** The graph as the page shows it. */
export interface GraphView {
  readonly name: string;
  /** STEP, ReLoRA, GaLore or standard pre-training. */
  readonly method: string;
  /** The file it was read from. */
  readonly file: string;
  readonly nodes: readonly NodeView[];
  readonly stages: readonly PlannedStage[];
  /** The graph's memory budget in bytes; null without one. */
  readonly memoryBudgetBytes: number | null;
  /** Tokens per optimizer step. */
  readonly batchTokens: number;
  readonly totalSteps: number;
  /** FLOPs of the whole run: the paper's rule and the executed matmuls. */
  readonly flopsPaper: number;
  readonly flopsExecuted: number;
}

/** A graph file read: what the page shows, and the compute that places records on FLOPs axes. */
export interface ReadGraph {
  readonly view: GraphView;
  readonly compute: RunCompute;
}

function nodeDetail(n: ValidGraph["pipeline"]["nodes"][number]): string {
  switch (n.op) {
    case "train":
    case "continue":
      return `${n.steps} steps`;
    case "grow":
      return `+${n.add} layers, ${n.placement ?? DEFAULT_PLACEMENT}`;
    case "attachPET":
      return `${n.kind} r=${n.rank}`;
    default:
      return "";
  }
}

/** The view of a validated graph read from `file`. */
export function graphView(g: ValidGraph, file: string): GraphView {
  const planned = predictStages(g);
  // The replay of a step is the prediction a run prints; a graph it cannot replay still draws.
  let peaks: (number | null)[];
  try {
    peaks = predictRun(g, BACKEND_FUSED[g.training.backend]).map((p) => p.peakBytes);
  } catch {
    peaks = g.stages.map(() => null);
  }
  let step = 0;
  const stages = g.stages.map((s, i): PlannedStage => {
    const m = planned[i];
    const fromStep = step;
    step += s.steps;
    return {
      stage: s.index,
      node: s.trainNodeId,
      layers: s.layers,
      added: s.added,
      trainableParams: m?.params.trainable ?? 0,
      frozenParams: m?.params.frozen ?? 0,
      adapterParams: m?.params.adapters ?? 0,
      adapters: s.pet === undefined ? null : `${s.pet.kind} r=${s.pet.rank}`,
      galore: s.galore !== undefined,
      fromStep,
      toStep: step,
      predictedStateBytes: m?.bytes ?? 0,
      predictedPeakBytes: peaks[i] ?? null,
    };
  });
  const paper = runFlops(g, "paper");
  const executed = runFlops(g, "executed");
  return {
    name: g.pipeline.name ?? "pipeline",
    method: methodLabel(g),
    file,
    nodes: g.pipeline.nodes.map((n) => ({ id: n.id, op: n.op, detail: nodeDetail(n) })),
    stages,
    memoryBudgetBytes: g.pipeline.memoryBudget ?? null,
    batchTokens: g.training.batchTokens,
    totalSteps: g.totalSteps,
    flopsPaper: paper.paper,
    flopsExecuted: executed.executed,
  };
}

/**
 * Reads a graph YAML (a run's `pipeline.yaml`, a comparison's `graphs/<run>.yaml`): undefined
 * when the file does not exist, a sentence when it cannot be read, parsed or validated.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readGraph } from "./graph_view.ts";
 * assert.equal(await readGraph("/no/such/pipeline.yaml"), undefined);
 * ```
 */
export async function readGraph(file: string): Promise<E.Either<string, ReadGraph> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    return E.left(`cannot read it: ${describeUnknown(e)}`);
  }
  const g = graphFromYaml(text, file);
  if (E.isLeft(g)) return g;
  return E.right({
    view: graphView(g.right, file),
    compute: { paper: runFlops(g.right, "paper"), executed: runFlops(g.right, "executed") },
  });
}
