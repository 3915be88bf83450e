/**
 * The records of `metrics.jsonl`, one JSON object a line, as codecs: what a pre-training run
 * writes (`train`, `eval`, `grow`, `merge`, `stage`, each stamped with the run's `globalStep`)
 * and what a fine-tuning run writes (`train` and `eval` of its own shape). The writer takes these
 * types; every reader decodes with these codecs, so a damaged line is an error that names the
 * file and the line instead of a number read as `undefined`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import {
  type ContentInvalid,
  contentInvalid,
  Count,
  decodeWith,
  describeUnknown,
  type ext,
  oneOf,
  type ReadonlyObjectC,
  tagged,
  type TaggedC,
} from "../base/mod.ts";

/** A measured number; JSON writes a NaN or an infinity (a skipped step's loss) as `null`. */
const Measured = t.union([t.number, t.null]);

/** Bytes a measure may not know (`null`: the OS or the backend does not tell). */
const Bytes = t.union([t.number, t.null]);

/** The fields of {@link AccountedStateCodec}, in bytes. */
export const ACCOUNTED_STATE_FIELDS = {
  /** Weights trained at full rank. */
  trainableWeights: t.number,
  /** The gradient of every trained tensor, adapters included. */
  gradients: t.number,
  /** Adam's m and v of every trained tensor (GaLore's projected ones and its projectors). */
  optimizer: t.number,
  /** Weights that do not train. */
  frozen: t.number,
  /** The adapters' weights. */
  adapters: t.number,
  /** The sum of the rows above. */
  total: t.number,
};

/**
 * Live model-state bytes by role, read from the engine's tensors: `trainableWeights` (trained
 * at full rank), `gradients` and `optimizer` (Adam m and v) of every trained tensor, adapters
 * included, `frozen` weights, `adapters` (their weights), and `total`, the sum of the rows.
 */
export const AccountedStateCodec: ext.ReadonlyC<ext.TypeC<typeof ACCOUNTED_STATE_FIELDS>> = t
  .readonly(t.type(ACCOUNTED_STATE_FIELDS));
/** Live model-state bytes by role (see {@link AccountedStateCodec}). */
export type AccountedState = ext.TypeOf<typeof AccountedStateCodec>;

/** The fields every {@link StageRecordCodec} record has. */
export const STAGE_RECORD_REQUIRED = {
  /** The stage's number, from 1. */
  stage: Count,
  /** The stage's `train` or `continue` node. */
  node: t.string,
  /** The model's depth in the stage. */
  layers: Count,
  /** Parameters trained at full rank. */
  trainableParams: Count,
  /** Parameters that do not train. */
  frozenParams: Count,
  /** The adapters' parameters. */
  adapterParams: Count,
  /** Optimizer steps the stage ran. */
  steps: Count,
  /** Validation loss at the stage's end, in nats/token. */
  valLoss: t.number,
  /** ReLoRA resets in the stage. */
  merges: Count,
  /** The accounted model state's total where it peaks (every gradient alive). */
  accountedStateBytes: t.number,
  /** The same, role by role. */
  accountedState: AccountedStateCodec,
  /** The engine's measured peak (`enginePeakBytes`). */
  measuredPeakBytes: t.number,
  /** The most bytes of distinct tensor buffers held at once (0 on the torch engine). */
  bufferPeakBytes: t.number,
  /** tfjs's own per-tensor count at its peak (views counted again; 0 on the torch engine). */
  tensorCountPeakBytes: t.number,
  /** The wasm heap's size (wasm and auto; null elsewhere). */
  heapBytes: Bytes,
  /** The most GPU bytes in use (webgpu and CUDA; null elsewhere). */
  gpuPeakBytes: Bytes,
  /** The OS's peak resident size of this process during the stage. */
  processPeakBytes: Bytes,
  /** The plan's model state for the stage. */
  predictedStateBytes: t.number,
  /** The plan's whole peak: model state, activations and the engine's workspace. */
  predictedPeakBytes: t.number,
  /** Where in the step the predicted peak falls, e.g. `backward head cross-entropy`. */
  predictedPeakAt: t.string,
};
/** The field a {@link StageRecordCodec} record has when it was measured. */
export const STAGE_RECORD_OPTIONAL = {
  /**
   * Seconds the stage's steps, evaluations and checkpoints took, summed over the sessions
   * that ran it. What a stopped session did after its last checkpoint is not in it: that
   * work is done again, and counted then. Absent from records written before it existed.
   */
  wallSeconds: t.number,
};

/**
 * What one finished stage measured, beside what the plan predicted:
 * `accountedStateBytes` (model state summed role by role from the live tensors where it peaks),
 * `measuredPeakBytes` (what the engine really held at its peak: GPU bytes on webgpu, distinct
 * tensor buffers elsewhere), `processPeakBytes` (the OS's peak resident size, null where it
 * does not tell), `predictedStateBytes` (the plan's model state) and `predictedPeakBytes` (the
 * whole prediction: model state, activations and the engine's workspace).
 */
export const StageRecordCodec: ReadonlyObjectC<
  typeof STAGE_RECORD_REQUIRED,
  typeof STAGE_RECORD_OPTIONAL
> = t.readonly(t.intersection([t.type(STAGE_RECORD_REQUIRED), t.partial(STAGE_RECORD_OPTIONAL)]));
/** What one finished stage measured. */
export type StageRecord = ext.TypeOf<typeof StageRecordCodec>;

/** The field every pre-training record is stamped with. */
export const STAMP_FIELDS = {
  /** The optimizer step of the whole run the record was written at. */
  globalStep: Count,
};
/** The optimizer step of the whole run a pre-training record was written at. */
export const StampCodec: ext.TypeC<typeof STAMP_FIELDS> = t.type(STAMP_FIELDS);

/** The fields every {@link TrainMetricCodec} record has (besides its stamp). */
export const TRAIN_METRIC_REQUIRED = {
  /** The record's kind. */
  type: t.literal("train"),
  /** The `train` or `continue` node whose step it is. */
  node: t.string,
  /** The stage's number, from 1. */
  stage: Count,
  /** The step within the node, from 1. */
  step: Count,
  /** The step's mean cross-entropy in nats/token (`null`: not finite). */
  loss: Measured,
  /** The step's learning rate. */
  lr: t.number,
  /** The global gradient norm before clipping (`null`: not finite). */
  gradNorm: Measured,
  /** Tokens trained on so far, the whole run. */
  tokens: Count,
  /**
   * Accounted model state at the step's peak (`StepOutcome.accounted`'s total), not a measured
   * figure: the name is the file's, kept so existing logs still decode.
   */
  memoryBytes: t.number,
};
/** The fields a {@link TrainMetricCodec} record has when they say something. */
export const TRAIN_METRIC_OPTIONAL = {
  /** The loss or gradient was not finite: the weights were left as they were. */
  skipped: t.boolean,
  /** GaLore projectors renewed at this step. */
  projectorUpdates: Count,
  /** GaLore decompositions that failed at this step. */
  svdFailures: Count,
};
/** One optimizer step of a pre-training stage. */
export const TrainMetricCodec: ext.ReadonlyC<
  ext.IntersectionC<[
    ext.TypeC<typeof TRAIN_METRIC_REQUIRED>,
    ext.PartialC<typeof TRAIN_METRIC_OPTIONAL>,
    typeof StampCodec,
  ]>
> = t.readonly(t.intersection([
  t.type(TRAIN_METRIC_REQUIRED),
  t.partial(TRAIN_METRIC_OPTIONAL),
  StampCodec,
]));

/** The fields that open every {@link EvalMetricCodec} record. */
export const EVAL_METRIC_HEAD = {
  /** The record's kind. */
  type: t.literal("eval"),
  /** The node that evaluated: a `train`/`continue` node's periodic evaluation, or an `eval` node. */
  node: t.string,
};
/** The field an {@link EvalMetricCodec} record of another corpus has. */
export const EVAL_METRIC_OPTIONAL = {
  /** The corpus evaluated (an `eval` node's `label` or id); unset: the run's validation set. */
  set: t.string,
};
/** The values of an {@link EvalMetricCodec} record. */
export const EVAL_METRIC_VALUES = {
  /** Mean validation cross-entropy in nats/token. */
  valLoss: t.number,
  /** exp(valLoss). */
  perplexity: t.number,
};
/** A validation loss: the run's validation set, or (with `set`) another corpus. */
export const EvalMetricCodec: ext.ReadonlyC<
  ext.IntersectionC<[
    ext.TypeC<typeof EVAL_METRIC_HEAD>,
    ext.PartialC<typeof EVAL_METRIC_OPTIONAL>,
    ext.TypeC<typeof EVAL_METRIC_VALUES>,
    typeof StampCodec,
  ]>
> = t.readonly(t.intersection([
  t.type(EVAL_METRIC_HEAD),
  t.partial(EVAL_METRIC_OPTIONAL),
  t.type(EVAL_METRIC_VALUES),
  StampCodec,
]));

/** The fields of a {@link GrowMetricCodec} record (besides its stamp). */
export const GROW_METRIC_FIELDS = {
  /** The record's kind. */
  type: t.literal("grow"),
  /** The `grow` node. */
  node: t.string,
  /** Layers it inserted. */
  add: Count,
  /** The model's depth after it. */
  layers: Count,
};
/** Layers added by a `grow` node. */
export const GrowMetricCodec: ext.ReadonlyC<
  ext.IntersectionC<[ext.TypeC<typeof GROW_METRIC_FIELDS>, typeof StampCodec]>
> = t.readonly(t.intersection([t.type(GROW_METRIC_FIELDS), StampCodec]));

/** The fields of a {@link MergeMetricCodec} record (besides its stamp). */
export const MERGE_METRIC_FIELDS = {
  /** The record's kind. */
  type: t.literal("merge"),
  /** The node of the stage in which the reset happened. */
  node: t.string,
  /** Steps of the node done when it happened. */
  step: Count,
  /** Adapters merged into their frozen weights. */
  merged: Count,
  /** Fraction of the adapters' Adam moments set to zero. */
  prunedFraction: t.number,
};
/** A ReLoRA reset inside a stage: adapters merged and re-initialised, moments pruned. */
export const MergeMetricCodec: ext.ReadonlyC<
  ext.IntersectionC<[ext.TypeC<typeof MERGE_METRIC_FIELDS>, typeof StampCodec]>
> = t.readonly(t.intersection([t.type(MERGE_METRIC_FIELDS), StampCodec]));

/** The field that opens a {@link StageMetricCodec} record. */
export const STAGE_METRIC_HEAD = {
  /** The record's kind. */
  type: t.literal("stage"),
};
/** The end of a stage: what it measured ({@link StageRecordCodec}). */
export const StageMetricCodec: ext.ReadonlyC<
  ext.IntersectionC<[
    ext.TypeC<typeof STAGE_METRIC_HEAD>,
    typeof StageRecordCodec,
    typeof StampCodec,
  ]>
> = t.readonly(t.intersection([t.type(STAGE_METRIC_HEAD), StageRecordCodec, StampCodec]));

/** The members of {@link RunMetricCodec}, by `type`. */
export const RUN_METRIC_MEMBERS = {
  /** One optimizer step. */
  train: TrainMetricCodec,
  /** A validation loss. */
  eval: EvalMetricCodec,
  /** A growth. */
  grow: GrowMetricCodec,
  /** A ReLoRA reset. */
  merge: MergeMetricCodec,
  /** A finished stage. */
  stage: StageMetricCodec,
};
/** A pre-training run's record, by its `type`. */
export const RunMetricCodec: TaggedC<typeof RUN_METRIC_MEMBERS> = tagged(
  "run metrics record",
  "type",
  RUN_METRIC_MEMBERS,
);
/** A pre-training run's record. */
export type RunMetric = ext.TypeOf<typeof RunMetricCodec>;

/** A pre-training record before the interpreter stamps it with the run's global step. */
export type RunMetricBody = RunMetric extends infer R
  ? R extends RunMetric ? Omit<R, "globalStep"> : never
  : never;

/** The fields every {@link FinetuneTrainMetricCodec} record has. */
export const FINETUNE_TRAIN_REQUIRED = {
  /** The record's kind. */
  type: t.literal("train"),
  /** The step of the whole run, from 1. */
  step: Count,
  /** The epoch the step belongs to, from 0. */
  epoch: Count,
  /** The step's mean cross-entropy over the response tokens (`null`: not finite). */
  loss: Measured,
  /** The step's learning rate. */
  lr: t.number,
  /** The global gradient norm before clipping (`null`: not finite). */
  gradNorm: Measured,
  /** Response tokens of the step's examples (the loss counts only these). */
  responseTokens: Count,
};
/** The field a {@link FinetuneTrainMetricCodec} record has when the step was skipped. */
export const FINETUNE_TRAIN_OPTIONAL = {
  /** The loss or gradient was not finite: the weights were left as they were. */
  skipped: t.boolean,
};
/** One optimizer step of a fine-tuning run. */
export const FinetuneTrainMetricCodec: ReadonlyObjectC<
  typeof FINETUNE_TRAIN_REQUIRED,
  typeof FINETUNE_TRAIN_OPTIONAL
> = t.readonly(
  t.intersection([t.type(FINETUNE_TRAIN_REQUIRED), t.partial(FINETUNE_TRAIN_OPTIONAL)]),
);

/** The fields of a {@link FinetuneEvalMetricCodec} record. */
export const FINETUNE_EVAL_FIELDS = {
  /** The record's kind. */
  type: t.literal("eval"),
  /** The examples evaluated: the held-out ones. */
  set: t.literal("held-out"),
  /** Before the first step or after the last. */
  when: oneOf("when", ["before", "after"]),
  /** Steps done when it was measured. */
  step: Count,
  /** Mean cross-entropy over the held-out response tokens, in nats/token. */
  loss: t.number,
};
/** The held-out response loss before or after fine-tuning. */
export const FinetuneEvalMetricCodec: ext.ReadonlyC<ext.TypeC<typeof FINETUNE_EVAL_FIELDS>> = t
  .readonly(t.type(FINETUNE_EVAL_FIELDS));

/** The members of {@link FinetuneMetricCodec}, by `type`. */
export const FINETUNE_METRIC_MEMBERS = {
  /** One optimizer step. */
  train: FinetuneTrainMetricCodec,
  /** The held-out loss. */
  eval: FinetuneEvalMetricCodec,
};
/** A fine-tuning run's record, by its `type`. */
export const FinetuneMetricCodec: TaggedC<typeof FINETUNE_METRIC_MEMBERS> = tagged(
  "fine-tuning metrics record",
  "type",
  FINETUNE_METRIC_MEMBERS,
);
/** A fine-tuning run's record. */
export type FinetuneMetric = ext.TypeOf<typeof FinetuneMetricCodec>;

/** Any record of `metrics.jsonl`: what the log effect writes. */
export type MetricRecord = RunMetric | FinetuneMetric;

/**
 * The records of a `metrics.jsonl` text, each decoded with `codec`; the first line that is not
 * JSON or not such a record is an error naming `path` and the line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeMetricLines, RunMetricCodec } from "./metrics_records.ts";
 * const grow = '{"type":"grow","node":"s2.grow","add":2,"layers":6,"globalStep":40}\n';
 * assert.deepEqual(E.map((rs: unknown[]) => rs.length)(decodeMetricLines(RunMetricCodec, grow, "m")), E.right(1));
 * const bad = decodeMetricLines(RunMetricCodec, grow + '{"type":"grow","node":"x"}\n', "m");
 * assert(E.isLeft(bad) && bad.left.message.startsWith("line 2 is not a run metrics record: add:"));
 * ```
 */
export function decodeMetricLines<A>(
  codec: ext.Type<A, unknown, unknown>,
  text: string,
  path: string,
): ext.Either<ContentInvalid, A[]> {
  const records: A[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.length === 0) continue;
    let u: unknown;
    try {
      u = JSON.parse(line);
    } catch (e) {
      return E.left(contentInvalid(path, `line ${i + 1} is not JSON: ${describeUnknown(e)}`));
    }
    const r = decodeWith(codec, u);
    if (E.isLeft(r)) {
      return E.left(
        contentInvalid(path, `line ${i + 1} is not a ${codec.name}: ${r.left.join("; ")}`),
      );
    }
    records.push(r.right);
  }
  return E.right(records);
}
