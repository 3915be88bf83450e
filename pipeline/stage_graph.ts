/**
 * The stage graph: STEP training written as plain, immutable data —
 * `train → grow → attachPET → continue`, repeatable — plus `eval` and
 * `checkpoint` nodes. One codec serves YAML files, `plan --emit` output and
 * graphs built in TypeScript with the builders below.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import {
  ByteSize,
  type ConfigInvalid,
  configInvalid,
  decodeWith,
  field,
  fieldCodecs,
  FileName,
  LlamaShapeCodec,
  NonNegativeInt,
  optional,
  PlacementCodec,
  PositiveInt,
  PositiveNumber,
  required,
  section,
  strict,
  tagged,
} from "../base/mod.ts";
import { DataCodec, DataSourcesCodec, GaloreCodec, PetCodec, TrainingCodec } from "./config.ts";

const Id = t.string;

/**
 * GaLore (spec §5) on the stage's attention and MLP matrices: every `updateEvery` steps the SVD
 * of the gradient gives a rank-`rank` projector (clamped to each matrix), AdamW runs in the
 * projected space and the update is projected back, times `scale`.
 */
export const GaloreNodeCodec = strict(
  "galore",
  { rank: GaloreCodec.fields.rank.codec },
  fieldCodecs(GaloreCodec, ["rank", "lr"]),
);
/** GaLore settings of a `train` node. */
export type GaloreNode = t.TypeOf<typeof GaloreNodeCodec>;

/** Stage 1: train a fresh model of `layers` layers. */
export const TrainNodeCodec = strict("train", {
  op: t.literal("train"),
  id: Id,
  layers: PositiveInt,
  steps: PositiveInt,
}, {
  /** Length of this stage's warmup + cosine; longer than `steps` when growth cuts it short. */
  scheduleSteps: PositiveInt,
  lr: PositiveNumber,
  warmup: NonNegativeInt,
  /** Train with GaLore instead of AdamW on the full matrices (the GaLore baseline). */
  galore: GaloreNodeCodec,
});

/** Insert `add` layers (interpolation: each new layer is the mean of its neighbours). */
export const GrowNodeCodec = strict("grow", {
  op: t.literal("grow"),
  id: Id,
  add: PositiveInt,
}, {
  placement: PlacementCodec,
  /** Seed of the `random` placement. */
  seed: NonNegativeInt,
});

/**
 * Freeze the trained layers and attach ReLoRA adapters to them. After a `grow` it adapts the
 * layers growth froze (STEP); straight after a stage, every layer (the ReLoRA baseline after its
 * full-rank warm start).
 *
 * `attachPET` and the `pet:` section are the names configs are written with and stay so; in the
 * code the operation is "attach" (`attachedSnapshot` in `checkpoint/surgery.ts`) and its settings
 * are a stage's `pet` (`PetSettings`).
 */
export const AttachPetNodeCodec = strict("attachPET", {
  op: t.literal("attachPET"),
  id: Id,
  kind: PetCodec.fields.kind.codec,
  rank: PetCodec.fields.rank.codec,
}, {
  ...fieldCodecs(PetCodec, ["kind", "rank"]),
  /** Keep embeddings, final norm and LM head trainable (frozen by default, spec §6). */
  trainEmbeddings: t.boolean,
  /** Keep the frozen layers' RMSNorm weights trainable (ReLoRA's baseline does; STEP does not). */
  trainNorms: t.boolean,
});

/** Train the new layers and the adapters. */
export const ContinueNodeCodec = strict("continue", {
  op: t.literal("continue"),
  id: Id,
  steps: PositiveInt,
}, {
  scheduleSteps: PositiveInt,
  lr: PositiveNumber,
  warmup: NonNegativeInt,
  /**
   * Steps of this stage's schedule already spent by the stage before: the LR goes on along one
   * cosine instead of re-warming (ReLoRA's single jagged cosine; with adapters, the LR still
   * re-warms from 0 over `restartWarmup`, since attaching them resets the optimizer).
   */
  scheduleOffset: NonNegativeInt,
});

/**
 * Measure validation loss and perplexity: on the run's validation set, or with `source` on
 * another corpus (read with the run's tokenizer, e.g. WikiText beside the training corpus's own
 * held-out text; the metric record carries `set`, the node's `label` or its id).
 */
export const EvalNodeCodec = strict("eval", { op: t.literal("eval"), id: Id }, {
  batches: PositiveInt,
  source: DataSourcesCodec,
  label: t.string,
});

/** Write a checkpoint now (runs also checkpoint periodically). */
export const CheckpointNodeCodec = strict(
  "checkpoint",
  { op: t.literal("checkpoint"), id: Id },
  {},
);

/** A `train` node. */
export type TrainNode = t.TypeOf<typeof TrainNodeCodec>;
/** A `grow` node. */
export type GrowNode = t.TypeOf<typeof GrowNodeCodec>;
/** An `attachPET` node. */
export type AttachPetNode = t.TypeOf<typeof AttachPetNodeCodec>;
/** A `continue` node. */
export type ContinueNode = t.TypeOf<typeof ContinueNodeCodec>;
/** An `eval` node. */
export type EvalNode = t.TypeOf<typeof EvalNodeCodec>;
/** A `checkpoint` node. */
export type CheckpointNode = t.TypeOf<typeof CheckpointNodeCodec>;
/** Any node of the graph, discriminated by `op`. */
export type StageNode =
  | TrainNode
  | GrowNode
  | AttachPetNode
  | ContinueNode
  | EvalNode
  | CheckpointNode;

/** Decodes a node by its `op` tag, so errors name one node type instead of all of them. */
export const StageNodeCodec: t.Type<StageNode, unknown, unknown> = tagged("StageNode", "op", {
  train: TrainNodeCodec,
  grow: GrowNodeCodec,
  attachPET: AttachPetNodeCodec,
  continue: ContinueNodeCodec,
  eval: EvalNodeCodec,
  checkpoint: CheckpointNodeCodec,
});

/** Codec of a whole pipeline file: its settings sections decode with their defaults applied. */
export const PipelineCodec = section("pipeline", {
  version: required(t.literal(1)),
  name: optional(FileName),
  model: required(LlamaShapeCodec),
  training: field(TrainingCodec, {}),
  data: field(DataCodec, {}),
  /**
   * Declared total FLOPs of the graph (`plan --emit` writes the plan's budget); validation checks
   * that the nodes add up to it within one step per stage (`graph_flops.ts`).
   */
  flops: optional(PositiveNumber),
  /**
   * The memory budget the graph was planned for (`plan --budget --emit` writes it): the run
   * warns before a stage predicted over it and reports each stage's measured peak against it.
   */
  memoryBudget: optional(ByteSize),
  nodes: required(t.array(StageNodeCodec)),
});

/** A pipeline: target model, settings, and the nodes to run in order. */
export type Pipeline = t.TypeOf<typeof PipelineCodec>;

/** Decodes an already-parsed document (YAML/JSON) as a pipeline. */
export function decodePipeline(doc: unknown, file: string): E.Either<ConfigInvalid, Pipeline> {
  return E.mapLeft((lines: string[]) => configInvalid(file, lines.join("; ")))(
    decodeWith(PipelineCodec, doc),
  );
}

/** Plain JSON-compatible form of a pipeline (what YAML files hold). */
export function encodePipeline(p: Pipeline): unknown {
  return PipelineCodec.encode(p);
}

// ---- builders: typed, positional-free constructors for TypeScript pipelines ----

/** A type with its numeric brands removed, so builders accept plain numbers; decode re-checks them. */
export type Unbrand<T> = T extends number ? number
  : T extends string | boolean ? T
  : T extends readonly (infer U)[] ? readonly Unbrand<U>[]
  : T extends object ? { [K in keyof T]: Unbrand<T[K]> }
  : T;
type NodeInput<N extends StageNode> = Omit<Unbrand<N>, "op" | "id"> & { readonly id?: string };

function node<N extends StageNode>(op: N["op"], fallbackId: string, input: object): N {
  const { id, ...rest } = input as { id?: string };
  return { op, id: id ?? fallbackId, ...rest } as unknown as N;
}

/** A `train` node (stage 1). */
export function train(input: NodeInput<TrainNode>): TrainNode {
  return node<TrainNode>("train", "s1.train", input);
}

/** A `grow` node. */
export function grow(input: NodeInput<GrowNode>): GrowNode {
  return node<GrowNode>("grow", "grow", input);
}

/** An `attachPET` node (ReLoRA). */
export function attachPET(input: NodeInput<AttachPetNode>): AttachPetNode {
  return node<AttachPetNode>("attachPET", "attachPET", input);
}

/** A `continue` node (`continue` is a keyword, hence the name). */
export function continueTraining(input: NodeInput<ContinueNode>): ContinueNode {
  return node<ContinueNode>("continue", "continue", input);
}

/** An `eval` node. */
export function evaluate(input: NodeInput<EvalNode> = {}): EvalNode {
  return node<EvalNode>("eval", "eval", input);
}

/** A `checkpoint` node. */
export function checkpoint(input: NodeInput<CheckpointNode> = {}): CheckpointNode {
  return node<CheckpointNode>("checkpoint", "checkpoint", input);
}

/** Everything of a pipeline file except its nodes and version, as a document writes it. */
export type PipelineHeader = Unbrand<Omit<t.OutputOf<typeof PipelineCodec>, "nodes" | "version">>;

/**
 * Assembles a pipeline from a header and nodes, giving stage-numbered ids
 * (`s2.grow`, `s2.continue`, …) to nodes built without one, then decodes it so
 * a TypeScript pipeline is checked exactly like a YAML one.
 */
export function pipeline(
  header: PipelineHeader,
  nodes: readonly StageNode[],
): E.Either<ConfigInvalid, Pipeline> {
  let stage = 1;
  const named = nodes.map((n, i) => {
    // A stage opens at a growth, or at adapters attached without one (ReLoRA's LoRA phase).
    if (n.op === "grow" || (n.op === "attachPET" && nodes[i - 1]?.op !== "grow")) stage++;
    const defaultId = n.id === n.op || (n.op === "train" && n.id === "s1.train");
    return defaultId ? { ...n, id: `s${stage}.${n.op}` } : n;
  });
  const seen = new Map<string, number>();
  const unique = named.map((n) => {
    const count = seen.get(n.id) ?? 0;
    seen.set(n.id, count + 1);
    return count === 0 ? n : { ...n, id: `${n.id}.${count + 1}` };
  });
  return decodePipeline({ version: 1, ...header, nodes: unique }, "pipeline (TypeScript)");
}
