/**
 * The run directory that `deno task run` writes, the one place its names and
 * its checkpoint's `state.json` are defined (the run's store, the engine's
 * snapshot and `deno task ckpt` all read them from here):
 *
 * ```
 * DIR/.lock                  held by the one process writing DIR
 * DIR/metrics.jsonl          one JSON record per line (train, eval, merge, grow, stage)
 * DIR/checkpoint/            replaced atomically: model.safetensors, moments.safetensors, state.json
 * DIR/final/                 the merged model: model.safetensors + config.json (our shape)
 * DIR/report.json, *.svg     written at the end
 * DIR/pipeline.yaml          the graph that ran
 * DIR/tensorboard/           TensorBoard event files, one per session (unless turned off)
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import {
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
  ioFailed,
  type LlamaShape,
  reportErrors,
} from "../base/mod.ts";
import { LOCK_FILE } from "../store/mod.ts";

/** Names inside a run directory. */
export const RUN_DIR = {
  lock: LOCK_FILE,
  metrics: "metrics.jsonl",
  checkpoint: "checkpoint",
  final: "final",
  report: "report.json",
  lossChart: "loss.svg",
  memoryChart: "memory.svg",
  pipeline: "pipeline.yaml",
  /** The torch engine's token files and exchange directories. */
  torch: "torch",
  /** TensorBoard's event files: the scalars of `metrics.jsonl`, one file per session. */
  tensorboard: "tensorboard",
} as const;

/** What a run directory holds once a run has written into it (the lock aside). */
export const RUN_OUTPUTS: readonly string[] = [
  RUN_DIR.metrics,
  RUN_DIR.checkpoint,
  RUN_DIR.final,
  RUN_DIR.report,
  RUN_DIR.lossChart,
  RUN_DIR.memoryChart,
  RUN_DIR.pipeline,
  RUN_DIR.torch,
  RUN_DIR.tensorboard,
];

/** Files of a run's `checkpoint/` directory. */
export const CHECKPOINT_FILES = {
  model: "model.safetensors",
  moments: "moments.safetensors",
  state: "state.json",
} as const;

/** Files of a run's `final/` directory (and of `ckpt import`'s output). */
export const FINAL_FILES = { model: "model.safetensors", config: "config.json" } as const;

/** Metadata of our `model.safetensors`. */
export const STEP_METADATA: Readonly<Record<string, string>> = {
  format: "step-llama",
  layout: "linear weights are [in, out]",
};

/** The fields of {@link GaloreMetaCodec}. */
export const GALORE_META_FIELDS = {
  /** Rank r of the projected gradients. */
  rank: t.number,
  /** Optimizer steps between refreshes of each projector. */
  updateEvery: t.number,
  /** Factor applied to the update projected back to the weight's shape. */
  scale: t.number,
  /** Names of the weights GaLore optimises. */
  targets: t.readonlyArray(t.string),
};

/**
 * GaLore's part of a snapshot: its hyper-parameters and the weights it optimises (each one's
 * side follows from its shape). A target's projector, once computed, is `galore/<name>` in `moments.safetensors`, and
 * its moments there have the projected shape.
 */
export const GaloreMetaCodec: ext.ReadonlyC<ext.TypeC<typeof GALORE_META_FIELDS>> = t.readonly(
  t.type(GALORE_META_FIELDS),
);
/** GaLore's part of a snapshot (see {@link GaloreMetaCodec}). */
export type GaloreMeta = ext.TypeOf<typeof GaloreMetaCodec>;

/** The fields every {@link SnapshotMetaCodec} record has. */
export const SNAPSHOT_META_REQUIRED = {
  /** Names of the parameters that train (weights and adapters); the rest are frozen. */
  trainable: t.readonlyArray(t.string),
  /** The LoRA scale α / r the adapters' output is multiplied by. */
  loraScale: t.number,
  /** AdamW's step count, which its bias correction continues from. */
  adamStep: t.number,
};
/** The field a {@link SnapshotMetaCodec} record has when GaLore runs. */
export const SNAPSHOT_META_OPTIONAL = {
  /** GaLore's settings and targets. */
  galore: GaloreMetaCodec,
};

/**
 * The engine's state beside the weights: which names train, the LoRA scale α / r and AdamW's
 * step count, and GaLore's settings when it runs (checkpoints from before GaLore have none).
 * Adam's moments of a trainable `name` are `m/name` and `v/name` in `moments.safetensors`.
 */
export const SnapshotMetaCodec: ext.ReadonlyC<
  ext.IntersectionC<[
    ext.TypeC<typeof SNAPSHOT_META_REQUIRED>,
    ext.PartialC<typeof SNAPSHOT_META_OPTIONAL>,
  ]>
> = t.readonly(t.intersection([t.type(SNAPSHOT_META_REQUIRED), t.partial(SNAPSHOT_META_OPTIONAL)]));
/** The engine's state beside the weights. */
export type SnapshotMeta = ext.TypeOf<typeof SnapshotMetaCodec>;

/** The fields of {@link CheckpointStateCodec}. */
export const CHECKPOINT_STATE_FIELDS = {
  /** The interpreter's progress (node, steps, tokens, data position), read when a run resumes. */
  progress: t.UnknownRecord,
  /** The engine's state beside the weights. */
  meta: SnapshotMetaCodec,
};

/** `checkpoint/state.json`: the interpreter's progress (decoded by the interpreter) and the meta. */
export const CheckpointStateCodec: ext.ReadonlyC<ext.TypeC<typeof CHECKPOINT_STATE_FIELDS>> = t
  .readonly(t.type(CHECKPOINT_STATE_FIELDS));
/** `checkpoint/state.json`. */
export type CheckpointState = ext.TypeOf<typeof CheckpointStateCodec>;

/** The name of Adam's first (`m`) or second (`v`) moment of a parameter in `moments.safetensors`. */
export function momentName(kind: "m" | "v", param: string): string {
  return `${kind}/${param}`;
}

/** The name of GaLore's projector of a parameter in `moments.safetensors`. */
export function projectorName(param: string): string {
  return `galore/${param}`;
}

/**
 * Reads and decodes a checkpoint directory's `state.json`: an unreadable file is `IoFailed`, a
 * damaged one `ContentInvalid`, both naming the file.
 *
 * @example
 * ```ts
 * import { readCheckpointState } from "./run_layout.ts";
 * const r = await readCheckpointState("/no/such/checkpoint")();
 * console.assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function readCheckpointState(dir: string): ext.TaskEither<FileError, CheckpointState> {
  return async () => {
    const path = `${dir}/${CHECKPOINT_FILES.state}`;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      return E.left(ioFailed(path, describeUnknown(e)));
    }
    return E.mapLeft((why: string) => contentInvalid(path, `corrupted checkpoint state: ${why}`))(
      decodeCheckpointState(text),
    );
  };
}

/**
 * Decodes the text of a `state.json`, or says what is wrong with it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeCheckpointState } from "./run_layout.ts";
 * const bad = decodeCheckpointState('{"progress": {}}');
 * assert(bad._tag === "Left");
 * ```
 */
export function decodeCheckpointState(text: string): ext.Either<string, CheckpointState> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return E.left(`not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  return E.mapLeft((errors: ext.Errors) => reportErrors(errors).join("; "))(
    CheckpointStateCodec.decode(json),
  );
}

/** The text of `state.json`. */
export function checkpointStateText(state: CheckpointState): string {
  return JSON.stringify(state, null, 1);
}

/** `final/config.json`: our shape, fields in `completeShape`'s order. */
export function shapeConfigText(s: LlamaShape): string {
  return JSON.stringify(
    {
      hidden: s.hidden,
      intermediate: s.intermediate,
      heads: s.heads,
      kvHeads: s.kvHeads,
      layers: s.layers,
      vocab: s.vocab,
      tiedEmbeddings: s.tiedEmbeddings,
      rmsNormEps: s.rmsNormEps,
      ropeTheta: s.ropeTheta,
      maxSeqLen: s.maxSeqLen,
    },
    null,
    2,
  ) + "\n";
}

/** Where a `checkpoint/` directory's shape may be found, nearest first. */
export function shapeFileCandidates(dir: string): string[] {
  return [
    `${dir}/${FINAL_FILES.config}`,
    `${dir}/../${RUN_DIR.final}/${FINAL_FILES.config}`,
    `${dir}/../${RUN_DIR.pipeline}`,
  ];
}
