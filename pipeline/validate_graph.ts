/**
 * Validation of a stage graph before any tensor exists, and its summary as
 * stages. Every error names the node (or the training field) it is about.
 * What a run needs from the graph is settled here, once: settings with their
 * defaults, each stage's roles (what trains, what is frozen, what carries
 * adapters) and seeds, so the interpreter never re-derives them.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import {
  completeShape,
  type ConfigInvalid,
  configInvalid,
  DEFAULT_PLACEMENT,
  describeUnknown,
  type ext,
  firstStageRoles,
  type GraphInvalid,
  graphInvalid,
  grownStageRoles,
  type LlamaShape,
  type Placement,
  projectionDims,
  projectionWeight,
  shapeProblem,
  type StageRoles,
  withDefaults,
} from "../base/mod.ts";
import {
  type DataSettings,
  GaloreCodec,
  type GaloreSettings,
  PetCodec,
  type PetSettings,
  trainingProblem,
  type TrainingSettings,
} from "./config.ts";
import { graphFlops } from "./graph_flops.ts";
import { decodePipeline, type Pipeline, type StageNode } from "./stage_graph.ts";

/** ReLoRA settings of a stage: its `attachPET` node's, defaults applied. */
export type StagePet = PetSettings & { readonly nodeId: string };

/** GaLore settings of a stage, defaults applied (the rank is clamped per matrix by the engine). */
export type StageGalore = Omit<GaloreSettings, "lr">;

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
  /** Optimizer steps the stage runs. */
  readonly steps: number;
  /** Length of the stage's warmup + cosine (longer than `steps` when growth cuts it short). */
  readonly scheduleSteps: number;
  /** Steps of the schedule the stage before already spent (ReLoRA's one cosine); 0 for STEP. */
  readonly scheduleOffset: number;
  /** Peak LR of this stage (each stage re-warms to it). */
  readonly lr: number | undefined;
  /** Warmup steps of this stage's schedule (unset: `training.warmup`). */
  readonly warmup: number | undefined;
  /** Growth that opened this stage (none for stage 1); `seed` is the node's, else training.seed. */
  readonly growth:
    | { readonly nodeId: string; readonly placement: Placement; readonly seed: number }
    | undefined;
  /** Adapters on the frozen layers (none for stage 1, or when the graph leaves them out). */
  readonly pet: StagePet | undefined;
  /** GaLore instead of AdamW on the full matrices (a `train` node's `galore:`). */
  readonly galore: StageGalore | undefined;
  /** Whether embeddings, final norm and LM head train in this stage. */
  readonly trainEmbeddings: boolean;
  /** What trains, what is frozen and what carries adapters (`base/stage_roles.ts`). */
  readonly roles: StageRoles;
}

/** A graph that passed validation, with its stages and its settings, defaults applied. */
export interface ValidGraph {
  /** The graph as decoded. */
  readonly pipeline: Pipeline;
  /** The model the graph grows into, completed. */
  readonly shape: LlamaShape;
  /** The stages, in order: what each trains, freezes and adapts. */
  readonly stages: readonly GraphStage[];
  /** The training settings, defaults applied. */
  readonly training: TrainingSettings;
  /** The data settings, defaults applied. */
  readonly data: DataSettings;
  /** Optimizer steps of the whole graph. */
  readonly totalSteps: number;
  /** Micro-batches per optimizer step (`batchTokens / (microBatch · seqLen)`, a whole number). */
  readonly accumulation: number;
}

/** Why a graph cannot run: a node, or a training field it depends on. */
export type GraphProblem = GraphInvalid | ConfigInvalid;

interface Open {
  index: number;
  added: number;
  depthBefore: number;
  growth: GraphStage["growth"];
  pet: StagePet | undefined;
  trainEmbeddings: boolean;
  trainNorms: boolean;
  petNodeId: string | undefined;
  galore: StageGalore | undefined;
}

/**
 * Validates a pipeline and returns its stages, or the first problem found: the model, the
 * batch arithmetic, the nodes in order, then the declared FLOPs.
 */
export function validateGraph(p: Pipeline): ext.Either<GraphProblem, ValidGraph> {
  const shape = completeShape(p.model);
  const badShape = shapeProblem(shape);
  if (badShape !== undefined) return E.left(configInvalid("model", badShape));
  const training = p.training;
  const batch = trainingProblem(training, shape, "");
  if (batch !== undefined) return E.left(batch);
  const nodes = validateNodes(p, shape, training.seed);
  if (E.isLeft(nodes)) return nodes;
  const g: ValidGraph = {
    pipeline: p,
    shape,
    stages: nodes.right,
    training,
    data: p.data,
    totalSteps: nodes.right.reduce((a, s) => a + s.steps, 0),
    accumulation: training.batchTokens / (training.microBatch * training.seqLen),
  };
  const flops = flopsProblem(g);
  return flops === undefined ? E.right(g) : E.left(flops);
}

function flopsProblem(g: ValidGraph): GraphInvalid | undefined {
  const declared = g.pipeline.flops;
  if (declared === undefined) return undefined;
  const counted = graphFlops({
    shape: g.shape,
    stages: g.stages,
    batchTokens: g.training.batchTokens,
  });
  // Steps are whole numbers: each stage may be off by up to one step from its FLOPs share.
  if (Math.abs(counted.total - declared) <= counted.oneStepPerStage) return undefined;
  return graphInvalid(
    "(graph)",
    `the nodes add up to ${counted.total.toExponential(4)} FLOPs (6·N_trained + 2·N_frozen per ` +
      `token), the graph declares flops: ${declared.toExponential(4)}; change the steps or the ` +
      "declared figure (or remove it)",
  );
}

function validateNodes(
  p: Pipeline,
  shape: LlamaShape,
  trainingSeed: number,
): ext.Either<GraphInvalid, GraphStage[]> {
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
    const fail = (msg: string): ext.Either<GraphInvalid, GraphStage[]> =>
      E.left(graphInvalid(where, msg));
    switch (n.op) {
      case "train": {
        if (depth > 0) return fail("`train` starts a model; use grow + continue to go on");
        if (n.layers > target) {
          return fail(`trains ${n.layers} layers, the target depth is ${target}`);
        }
        const sched = scheduleProblem(n);
        if (sched !== undefined) return fail(sched);
        const galore = n.galore === undefined ? undefined : withDefaults(GaloreCodec, n.galore);
        if (galore !== undefined && galore.targets.length === 0) {
          return fail("`galore.targets` is empty: name at least one projection");
        }
        depth = n.layers;
        stages.push(stageOf(n, {
          index: 1,
          added: n.layers,
          depthBefore: 0,
          growth: undefined,
          pet: undefined,
          trainEmbeddings: true,
          trainNorms: false,
          petNodeId: undefined,
          galore,
        }));
        break;
      }
      case "grow": {
        if (depth === 0) return fail("cannot grow before a `train` node has made a model");
        if (open !== undefined) {
          return fail(
            open.growth === undefined
              ? `the adapters of "${open.petNodeId}" are never trained: add a \`continue\` before growing`
              : `the layers added by "${open.growth.nodeId}" are never trained: add a \`continue\` before growing again`,
          );
        }
        if (stages.some((st) => st.galore !== undefined)) {
          return fail(
            "GaLore trains one stage of the full depth: growing after a `train` with `galore:` is not supported",
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
          growth: {
            nodeId: n.id,
            placement: n.placement ?? DEFAULT_PLACEMENT,
            seed: n.seed ?? trainingSeed,
          },
          pet: undefined,
          trainEmbeddings: false,
          trainNorms: false,
          petNodeId: undefined,
          galore: undefined,
        };
        depth += n.add;
        break;
      }
      case "attachPET": {
        if (depth === 0) {
          return fail("`attachPET` before any `train` node: there are no layers to adapt");
        }
        if (stages.some((st) => st.galore !== undefined)) {
          return fail("adapters after a GaLore stage are not supported");
        }
        // Straight after a stage: every layer is frozen and adapted (ReLoRA after its warm start).
        open ??= {
          index: stages.length + 1,
          added: 0,
          depthBefore: depth,
          growth: undefined,
          pet: undefined,
          trainEmbeddings: false,
          trainNorms: false,
          petNodeId: undefined,
          galore: undefined,
        };
        if (open.petNodeId !== undefined) {
          return fail(`adapters were already attached by "${open.petNodeId}"`);
        }
        const pet = withDefaults(PetCodec, n);
        const targets = pet.targets;
        if (targets.length === 0) return fail("`targets` is empty: name at least one projection");
        const smallest = Math.min(
          ...targets.map((p) =>
            Math.min(projectionDims(shape, p).in, projectionDims(shape, p).out)
          ),
        );
        if (n.rank > smallest) {
          return fail(`rank ${n.rank} exceeds the smallest targeted dimension ${smallest}`);
        }
        open.pet = { nodeId: n.id, ...pet };
        open.trainEmbeddings = n.trainEmbeddings ?? false;
        open.trainNorms = n.trainNorms ?? false;
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
        open.growth?.nodeId ?? open.petNodeId ?? lastId,
        open.growth === undefined
          ? "the graph ends after `attachPET`: add a `continue` to train the adapters"
          : "the graph ends after a growth: add a `continue` to train the new layers",
      ),
    );
  }
  if (depth !== target) {
    return E.left(
      graphInvalid(lastId, `the graph reaches ${depth} layers, the target depth is ${target}`),
    );
  }
  return E.right(stages);
}

function scheduleProblem(
  n: { steps: number; scheduleSteps?: number; warmup?: number; scheduleOffset?: number },
): string | undefined {
  const offset = n.scheduleOffset ?? 0;
  const length = n.scheduleSteps ?? n.steps + offset;
  if (length < n.steps + offset) {
    return offset === 0
      ? `runs ${n.steps} steps but its schedule is only ${length} long`
      : `runs ${n.steps} steps from step ${offset} of its schedule, which is only ${length} long`;
  }
  if (n.warmup !== undefined && n.warmup >= length) {
    return `warmup (${n.warmup}) must be shorter than the schedule (${length} steps)`;
  }
  return undefined;
}

function stageOf(
  n: {
    id: string;
    steps: number;
    scheduleSteps?: number;
    scheduleOffset?: number;
    lr?: number;
    warmup?: number;
  },
  o: Open,
): GraphStage {
  // A stage opened by `attachPET` alone adds no layer: its placement does not matter.
  const roles = o.index === 1 ? firstStageRoles(o.added) : grownStageRoles(
    o.index,
    o.depthBefore,
    o.added,
    {
      placement: o.growth?.placement ?? DEFAULT_PLACEMENT,
      seed: o.growth?.seed ?? 0,
      targets: o.pet?.targets ?? [],
      trainEmbeddings: o.trainEmbeddings,
      trainNorms: o.trainNorms,
    },
  );
  const offset = n.scheduleOffset ?? 0;
  return {
    roles,
    index: o.index,
    trainNodeId: n.id,
    layers: o.depthBefore + o.added,
    added: o.added,
    steps: n.steps,
    scheduleSteps: n.scheduleSteps ?? n.steps + offset,
    scheduleOffset: offset,
    lr: n.lr,
    warmup: n.warmup,
    growth: o.growth,
    pet: o.pet,
    galore: o.galore,
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

/** The GaLore-projected weight names of a stage: every targeted projection of every layer. */
export function galoreWeights(stage: GraphStage): string[] {
  const g = stage.galore;
  if (g === undefined) return [];
  return Array.from(
    { length: stage.layers },
    (_, l) => g.targets.map((p) => projectionWeight(l, p)),
  )
    .flat();
}

/**
 * What a graph trains, in words: `GaLore`, `ReLoRA` (adapters on every layer after a full-rank
 * stage), `STEP` (growth), or `standard pre-training`.
 */
export function methodLabel(g: ValidGraph): string {
  if (g.stages.some((s) => s.galore !== undefined)) return "GaLore";
  if (g.stages.some((s) => s.added === 0 && s.pet !== undefined)) return "ReLoRA";
  return g.stages.length > 1 ? "STEP" : "standard pre-training";
}

/**
 * A stage graph from YAML text (a run's `pipeline.yaml`, a comparison's `graphs/<run>.yaml`),
 * decoded and validated, or a sentence saying why not, for readers that report a file's state
 * rather than fail on it (the dashboard, a comparison's resume check).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { graphFromYaml } from "./validate_graph.ts";
 * const r = graphFromYaml("nodes: [", "p.yaml");
 * assert(r._tag === "Left" && r.left.startsWith("not valid YAML"));
 * ```
 */
export function graphFromYaml(text: string, file: string): ext.Either<string, ValidGraph> {
  let doc: unknown;
  try {
    doc = YAML.parse(text, { uniqueKeys: true });
  } catch (e) {
    return E.left(`not valid YAML: ${describeUnknown(e).split("\n")[0]}`);
  }
  const g = E.flatMap(decodePipeline(doc, file), validateGraph);
  return E.isLeft(g) ? E.left(`not a valid stage graph: ${g.left.message}`) : g;
}
