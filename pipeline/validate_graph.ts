/**
 * Validation of a stage graph before any tensor exists, and its summary as
 * stages. Every error names the node it is about.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  completeShape,
  type LlamaShape,
  type Projection,
  projectionDims,
  PROJECTIONS,
} from "../solvers/llama_shape.ts";
import type { Placement } from "./config.ts";
import { type GraphInvalid, graphInvalid } from "./errors.ts";
import type { Pipeline, StageNode } from "./stage_graph.ts";

/** ReLoRA settings of a stage, defaults applied. */
export interface StagePet {
  readonly nodeId: string;
  readonly rank: number;
  readonly alpha: number;
  readonly targets: readonly Projection[];
  readonly resetEvery: number;
  readonly restartWarmup: number;
  readonly pruneRatio: number;
}

/** One stage of a validated graph. */
export interface GraphStage {
  /** 1-based stage index. */
  readonly index: number;
  /** Id of the node that trains this stage (`train` or `continue`). */
  readonly trainNodeId: string;
  /** N_i: depth while this stage trains. */
  readonly layers: number;
  /** n_i: layers this stage adds. */
  readonly added: number;
  readonly steps: number;
  readonly scheduleSteps: number;
  /** Peak LR of this stage (each stage re-warms to it). */
  readonly lr: number | undefined;
  readonly warmup: number | undefined;
  /** Growth that opened this stage (none for stage 1). */
  readonly growth:
    | { readonly nodeId: string; readonly placement: Placement; readonly seed: number }
    | undefined;
  /** Adapters on the frozen layers (none for stage 1, or when the graph leaves them out). */
  readonly pet: StagePet | undefined;
  /** Whether embeddings, final norm and LM head train in this stage. */
  readonly trainEmbeddings: boolean;
}

/** A graph that passed validation, with its stages. */
export interface ValidGraph {
  readonly pipeline: Pipeline;
  readonly shape: LlamaShape;
  readonly stages: readonly GraphStage[];
}

/** ReLoRA defaults (spec §4–§5): reset every 5000 steps, 500 re-warm steps, 99% pruning, α = 32. */
export const PET_DEFAULTS = {
  alpha: 32,
  targets: PROJECTIONS,
  resetEvery: 5000,
  restartWarmup: 500,
  pruneRatio: 0.99,
} as const;

interface Open {
  index: number;
  added: number;
  depthBefore: number;
  growth: GraphStage["growth"];
  pet: StagePet | undefined;
  trainEmbeddings: boolean;
  petNodeId: string | undefined;
}

/** Validates a pipeline and returns its stages, or the first problem found. */
export function validateGraph(p: Pipeline): E.Either<GraphInvalid, ValidGraph> {
  const shape = completeShape(p.model);
  const target = shape.layers;
  const stages: GraphStage[] = [];
  const ids = new Set<string>();
  let depth = 0;
  let open: Open | undefined;
  let nodeIndex = 0;
  for (const n of p.nodes) {
    nodeIndex++;
    const where = n.id === "" ? `#${nodeIndex}` : n.id;
    if (n.id === "") return E.left(graphInvalid(where, "node has an empty id"));
    if (ids.has(n.id)) return E.left(graphInvalid(where, `id "${n.id}" is used twice`));
    ids.add(n.id);
    const fail = (msg: string): E.Either<GraphInvalid, ValidGraph> =>
      E.left(graphInvalid(where, msg));
    switch (n.op) {
      case "train": {
        if (depth > 0) return fail("`train` starts a model; use grow + continue to go on");
        if (n.layers > target) {
          return fail(`trains ${n.layers} layers, the target depth is ${target}`);
        }
        const sched = scheduleProblem(n);
        if (sched !== undefined) return fail(sched);
        depth = n.layers;
        stages.push(stageOf(n, {
          index: 1,
          added: n.layers,
          depthBefore: 0,
          growth: undefined,
          pet: undefined,
          trainEmbeddings: true,
          petNodeId: undefined,
        }));
        break;
      }
      case "grow": {
        if (depth === 0) return fail("cannot grow before a `train` node has made a model");
        if (open !== undefined) {
          return fail(
            `the layers added by "${open.growth?.nodeId}" are never trained: add a \`continue\` before growing again`,
          );
        }
        if (depth + n.add > target) {
          return fail(
            `growing ${depth} layers by ${n.add} gives ${
              depth + n.add
            }, the target depth is ${target}`,
          );
        }
        open = {
          index: stages.length + 1,
          added: n.add,
          depthBefore: depth,
          growth: { nodeId: n.id, placement: n.placement ?? "upper", seed: n.seed ?? 0 },
          pet: undefined,
          trainEmbeddings: false,
          petNodeId: undefined,
        };
        depth += n.add;
        break;
      }
      case "attachPET": {
        if (open === undefined) {
          return fail("`attachPET` must follow a `grow` (it adapts the layers frozen by growth)");
        }
        if (open.petNodeId !== undefined) {
          return fail(`adapters were already attached by "${open.petNodeId}"`);
        }
        const targets = n.targets ?? PET_DEFAULTS.targets;
        if (targets.length === 0) return fail("`targets` is empty: name at least one projection");
        const smallest = Math.min(
          ...targets.map((p) =>
            Math.min(projectionDims(shape, p).in, projectionDims(shape, p).out)
          ),
        );
        if (n.rank > smallest) {
          return fail(`rank ${n.rank} exceeds the smallest targeted dimension ${smallest}`);
        }
        open.pet = {
          nodeId: n.id,
          rank: n.rank,
          alpha: n.alpha ?? PET_DEFAULTS.alpha,
          targets,
          resetEvery: n.resetEvery ?? PET_DEFAULTS.resetEvery,
          restartWarmup: n.restartWarmup ?? PET_DEFAULTS.restartWarmup,
          pruneRatio: n.pruneRatio ?? PET_DEFAULTS.pruneRatio,
        };
        open.trainEmbeddings = n.trainEmbeddings ?? false;
        open.petNodeId = n.id;
        break;
      }
      case "continue": {
        if (open === undefined) {
          return fail(
            depth === 0
              ? "`continue` before any `train` node"
              : "`continue` must follow a `grow`: nothing new to train",
          );
        }
        const sched = scheduleProblem(n);
        if (sched !== undefined) return fail(sched);
        if (open.pet !== undefined && open.pet.restartWarmup >= open.pet.resetEvery) {
          return fail(
            `ReLoRA restartWarmup (${open.pet.restartWarmup}) must be shorter than resetEvery (${open.pet.resetEvery})`,
          );
        }
        stages.push(stageOf(n, open));
        open = undefined;
        break;
      }
      case "eval":
      case "checkpoint":
        if (depth === 0) {
          return fail(`\`${n.op}\` before any \`train\` node: there is no model yet`);
        }
        break;
      default:
        return absurd(n);
    }
  }
  const lastId = p.nodes[p.nodes.length - 1]?.id ?? "(graph)";
  if (stages.length === 0) return E.left(graphInvalid("(graph)", "the graph has no `train` node"));
  if (open !== undefined) {
    return E.left(
      graphInvalid(
        open.growth?.nodeId ?? lastId,
        "the graph ends after a growth: add a `continue` to train the new layers",
      ),
    );
  }
  if (depth !== target) {
    return E.left(
      graphInvalid(lastId, `the graph reaches ${depth} layers, the target depth is ${target}`),
    );
  }
  return E.right({ pipeline: p, shape, stages });
}

function scheduleProblem(
  n: { steps: number; scheduleSteps?: number; warmup?: number },
): string | undefined {
  const length = n.scheduleSteps ?? n.steps;
  if (length < n.steps) return `runs ${n.steps} steps but its schedule is only ${length} long`;
  if (n.warmup !== undefined && n.warmup >= length) {
    return `warmup (${n.warmup}) must be shorter than the schedule (${length} steps)`;
  }
  return undefined;
}

function stageOf(
  n: { id: string; steps: number; scheduleSteps?: number; lr?: number; warmup?: number },
  o: Open,
): GraphStage {
  return {
    index: o.index,
    trainNodeId: n.id,
    layers: o.depthBefore + o.added,
    added: o.added,
    steps: n.steps,
    scheduleSteps: n.scheduleSteps ?? n.steps,
    lr: n.lr,
    warmup: n.warmup,
    growth: o.growth,
    pet: o.pet,
    trainEmbeddings: o.trainEmbeddings,
  };
}

function absurd(n: never): never {
  throw new Error(`unhandled node ${JSON.stringify(n)}`);
}

/** The layer split n_1..n_K of a validated graph. */
export function graphSplit(g: ValidGraph): number[] {
  return g.stages.map((s) => s.added);
}

/** Node kinds, for exhaustive handling elsewhere. */
export type NodeOp = StageNode["op"];
