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
  type ext,
  field,
  type FieldCodecs,
  fieldCodecs,
  FileName,
  LlamaShapeCodec,
  NonNegativeInt,
  optional,
  PlacementCodec,
  PositiveInt,
  PositiveNumber,
  required,
  type Section,
  section,
  strict,
  type StrictC,
  tagged,
} from "../base/mod.ts";
import {
  DataCodec,
  DataSourcesCodec,
  GALORE_FIELDS,
  GaloreCodec,
  PET_FIELDS,
  PetCodec,
  TrainingCodec,
} from "./config.ts";

/** A node's id: unique in its graph, named in every message and record about the node. */
const Id = t.string;

/** The field a {@link GaloreNodeCodec} must give. */
export const GALORE_NODE_REQUIRED = {
  /** Rank of the projected gradients (clamped to each matrix). */
  rank: GaloreCodec.fields.rank.codec,
};
/** The fields a {@link GaloreNodeCodec} may give: the `galore:` section's but `rank` and `lr`. */
export const GALORE_NODE_OPTIONAL: FieldCodecs<typeof GALORE_FIELDS, "rank" | "lr"> = fieldCodecs(
  GaloreCodec,
  ["rank", "lr"],
);
/**
 * GaLore (spec §5) on the stage's attention and MLP matrices: every `updateEvery` steps the SVD
 * of the gradient gives a rank-`rank` projector (clamped to each matrix), AdamW runs in the
 * projected space and the update is projected back, times `scale`.
 */
export const GaloreNodeCodec: StrictC<typeof GALORE_NODE_REQUIRED, typeof GALORE_NODE_OPTIONAL> =
  strict("galore", GALORE_NODE_REQUIRED, GALORE_NODE_OPTIONAL);
/** GaLore settings of a `train` node. */
export type GaloreNode = ext.TypeOf<typeof GaloreNodeCodec>;

/** The fields a {@link TrainNodeCodec} must give. */
export const TRAIN_NODE_REQUIRED = {
  /** The node's kind. */
  op: t.literal("train"),
  /** The node's id. */
  id: Id,
  /** Depth of the fresh model. */
  layers: PositiveInt,
  /** Optimizer steps of the stage. */
  steps: PositiveInt,
};
/** The fields a {@link TrainNodeCodec} may give (unset: the `training:` section's). */
export const TRAIN_NODE_OPTIONAL = {
  /** Length of this stage's warmup + cosine; longer than `steps` when growth cuts it short. */
  scheduleSteps: PositiveInt,
  /** The stage's peak learning rate. */
  lr: PositiveNumber,
  /** The stage's warmup steps. */
  warmup: NonNegativeInt,
  /** Train with GaLore instead of AdamW on the full matrices (the GaLore baseline). */
  galore: GaloreNodeCodec,
};
/** Stage 1: train a fresh model of `layers` layers. */
export const TrainNodeCodec: StrictC<typeof TRAIN_NODE_REQUIRED, typeof TRAIN_NODE_OPTIONAL> =
  strict("train", TRAIN_NODE_REQUIRED, TRAIN_NODE_OPTIONAL);

/** The fields a {@link GrowNodeCodec} must give. */
export const GROW_NODE_REQUIRED = {
  /** The node's kind. */
  op: t.literal("grow"),
  /** The node's id. */
  id: Id,
  /** Layers to insert. */
  add: PositiveInt,
};
/** The fields a {@link GrowNodeCodec} may give. */
export const GROW_NODE_OPTIONAL = {
  /** Where the new layers go (unset: `DEFAULT_PLACEMENT`). */
  placement: PlacementCodec,
  /** Seed of the `random` placement. */
  seed: NonNegativeInt,
};
/** Insert `add` layers (interpolation: each new layer is the mean of its neighbours). */
export const GrowNodeCodec: StrictC<typeof GROW_NODE_REQUIRED, typeof GROW_NODE_OPTIONAL> = strict(
  "grow",
  GROW_NODE_REQUIRED,
  GROW_NODE_OPTIONAL,
);

/** The fields an {@link AttachPetNodeCodec} must give. */
export const ATTACH_PET_NODE_REQUIRED = {
  /** The node's kind. */
  op: t.literal("attachPET"),
  /** The node's id. */
  id: Id,
  /** The adapter: `relora`. */
  kind: PetCodec.fields.kind.codec,
  /** Rank r of each adapter. */
  rank: PetCodec.fields.rank.codec,
};
/** The fields an {@link AttachPetNodeCodec} may give: the `pet:` section's, and two switches. */
export const ATTACH_PET_NODE_OPTIONAL:
  & FieldCodecs<typeof PET_FIELDS, "kind" | "rank">
  & { readonly trainEmbeddings: ext.BooleanC; readonly trainNorms: ext.BooleanC } = {
    ...fieldCodecs(PetCodec, ["kind", "rank"]),
    /** Keep embeddings, final norm and LM head trainable (frozen by default, spec §6). */
    trainEmbeddings: t.boolean,
    /** Keep the frozen layers' RMSNorm weights trainable (ReLoRA's baseline does; STEP does not). */
    trainNorms: t.boolean,
  };

/**
 * Freeze the trained layers and attach ReLoRA adapters to them. After a `grow` it adapts the
 * layers growth froze (STEP); straight after a stage, every layer (the ReLoRA baseline after its
 * full-rank warm start).
 *
 * `attachPET` and the `pet:` section are the names configs are written with and stay so; in the
 * code the operation is "attach" (`attachedSnapshot` in `checkpoint/surgery.ts`) and its settings
 * are a stage's `pet` (`PetSettings`).
 */
export const AttachPetNodeCodec: StrictC<
  typeof ATTACH_PET_NODE_REQUIRED,
  typeof ATTACH_PET_NODE_OPTIONAL
> = strict("attachPET", ATTACH_PET_NODE_REQUIRED, ATTACH_PET_NODE_OPTIONAL);

/** The fields a {@link ContinueNodeCodec} must give. */
export const CONTINUE_NODE_REQUIRED = {
  /** The node's kind. */
  op: t.literal("continue"),
  /** The node's id. */
  id: Id,
  /** Optimizer steps of the stage. */
  steps: PositiveInt,
};
/** The fields a {@link ContinueNodeCodec} may give (unset: the `training:` section's). */
export const CONTINUE_NODE_OPTIONAL = {
  /** Length of this stage's warmup + cosine; longer than `steps` when growth cuts it short. */
  scheduleSteps: PositiveInt,
  /** The stage's peak learning rate. */
  lr: PositiveNumber,
  /** The stage's warmup steps. */
  warmup: NonNegativeInt,
  /**
   * Steps of this stage's schedule already spent by the stage before: the LR goes on along one
   * cosine instead of re-warming (ReLoRA's single jagged cosine; with adapters, the LR still
   * re-warms from 0 over `restartWarmup`, since attaching them resets the optimizer).
   */
  scheduleOffset: NonNegativeInt,
};
/** Train the new layers and the adapters. */
export const ContinueNodeCodec: StrictC<
  typeof CONTINUE_NODE_REQUIRED,
  typeof CONTINUE_NODE_OPTIONAL
> = strict("continue", CONTINUE_NODE_REQUIRED, CONTINUE_NODE_OPTIONAL);

/** The fields an {@link EvalNodeCodec} must give. */
export const EVAL_NODE_REQUIRED = {
  /** The node's kind. */
  op: t.literal("eval"),
  /** The node's id. */
  id: Id,
};
/** The fields an {@link EvalNodeCodec} may give. */
export const EVAL_NODE_OPTIONAL = {
  /** Micro-batches evaluated (unset: `training.evalBatches`). */
  batches: PositiveInt,
  /** Another corpus to evaluate on (unset: the run's validation set). */
  source: DataSourcesCodec,
  /** The name of `source` in the metric record (unset: the node's id). */
  label: t.string,
};
/**
 * Measure validation loss and perplexity: on the run's validation set, or with `source` on
 * another corpus (read with the run's tokenizer, e.g. WikiText beside the training corpus's own
 * held-out text; the metric record carries `set`, the node's `label` or its id).
 */
export const EvalNodeCodec: StrictC<typeof EVAL_NODE_REQUIRED, typeof EVAL_NODE_OPTIONAL> = strict(
  "eval",
  EVAL_NODE_REQUIRED,
  EVAL_NODE_OPTIONAL,
);

/** The fields of a {@link CheckpointNodeCodec}. */
export const CHECKPOINT_NODE_FIELDS = {
  /** The node's kind. */
  op: t.literal("checkpoint"),
  /** The node's id. */
  id: Id,
};
/** Write a checkpoint now (runs also checkpoint periodically); it has no optional field. */
export const CheckpointNodeCodec: StrictC<typeof CHECKPOINT_NODE_FIELDS, Record<never, never>> =
  strict("checkpoint", CHECKPOINT_NODE_FIELDS, {});

/** A `train` node. */
export type TrainNode = ext.TypeOf<typeof TrainNodeCodec>;
/** A `grow` node. */
export type GrowNode = ext.TypeOf<typeof GrowNodeCodec>;
/** An `attachPET` node. */
export type AttachPetNode = ext.TypeOf<typeof AttachPetNodeCodec>;
/** A `continue` node. */
export type ContinueNode = ext.TypeOf<typeof ContinueNodeCodec>;
/** An `eval` node. */
export type EvalNode = ext.TypeOf<typeof EvalNodeCodec>;
/** A `checkpoint` node. */
export type CheckpointNode = ext.TypeOf<typeof CheckpointNodeCodec>;
/** Any node of the graph, discriminated by `op`. */
export type StageNode =
  | TrainNode
  | GrowNode
  | AttachPetNode
  | ContinueNode
  | EvalNode
  | CheckpointNode;

/** Decodes a node by its `op` tag, so errors name one node type instead of all of them. */
export const StageNodeCodec: ext.Type<StageNode, unknown, unknown> = tagged("StageNode", "op", {
  train: TrainNodeCodec,
  grow: GrowNodeCodec,
  attachPET: AttachPetNodeCodec,
  continue: ContinueNodeCodec,
  eval: EvalNodeCodec,
  checkpoint: CheckpointNodeCodec,
});

/** The fields of {@link PipelineCodec}: the sections of a pipeline file. */
export const PIPELINE_FIELDS = {
  /** The file's format. */
  version: required(t.literal(1)),
  /** The run's name, its folder under `runs/` (unset: the file's name). */
  name: optional(FileName),
  /** The model the graph grows into. */
  model: required(LlamaShapeCodec),
  /** The training settings every node's own fields override. */
  training: field(TrainingCodec, {}),
  /** The corpus and its tokenizer. */
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
  /** The nodes, run in order. */
  nodes: required(t.array(StageNodeCodec)),
};
/** Codec of a whole pipeline file: its settings sections decode with their defaults applied. */
export const PipelineCodec: Section<typeof PIPELINE_FIELDS> = section("pipeline", PIPELINE_FIELDS);

/** A pipeline: target model, settings, and the nodes to run in order. */
export type Pipeline = ext.TypeOf<typeof PipelineCodec>;

/** Decodes an already-parsed document (YAML/JSON) as a pipeline. */
export function decodePipeline(doc: unknown, file: string): ext.Either<ConfigInvalid, Pipeline> {
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
/**
 * What a builder takes for node type `N`: its fields with plain numbers, without `op` (the
 * builder's) and with an optional `id` (unset: a stage-numbered one, see {@link pipeline}).
 */
export type NodeInput<N extends StageNode> = Omit<Unbrand<N>, "op" | "id"> & {
  readonly id?: string;
};

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
export type PipelineHeader = Unbrand<Omit<ext.OutputOf<typeof PipelineCodec>, "nodes" | "version">>;

/**
 * Assembles a pipeline from a header and nodes, giving stage-numbered ids
 * (`s2.grow`, `s2.continue`, …) to nodes built without one, then decodes it so
 * a TypeScript pipeline is checked exactly like a YAML one.
 */
export function pipeline(
  header: PipelineHeader,
  nodes: readonly StageNode[],
): ext.Either<ConfigInvalid, Pipeline> {
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
