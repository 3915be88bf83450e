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
  oneOf,
  tagged,
} from "../base/mod.ts";

/** A measured number; JSON writes a NaN or an infinity (a skipped step's loss) as `null`. */
const Measured = t.union([t.number, t.null]);

/** Bytes a measure may not know (`null`: the OS or the backend does not tell). */
const Bytes = t.union([t.number, t.null]);

/**
 * Live model-state bytes by role, read from the engine's tensors: `trainableWeights` (trained
 * at full rank), `gradients` and `optimizer` (Adam m and v) of every trained tensor, adapters
 * included, `frozen` weights, `adapters` (their weights), and `total`, the sum of the rows.
 */
export const AccountedStateCodec = t.readonly(t.type({
  trainableWeights: t.number,
  gradients: t.number,
  optimizer: t.number,
  frozen: t.number,
  adapters: t.number,
  total: t.number,
}));
/** Live model-state bytes by role (see {@link AccountedStateCodec}). */
export type AccountedState = t.TypeOf<typeof AccountedStateCodec>;

/**
 * What one finished stage measured, beside what the plan predicted:
 * `accountedStateBytes` (model state summed role by role from the live tensors where it peaks),
 * `measuredPeakBytes` (what the engine really held at its peak: GPU bytes on webgpu, distinct
 * tensor buffers elsewhere), `processPeakBytes` (the OS's peak resident size, null where it
 * does not tell), `predictedStateBytes` (the plan's model state) and `predictedPeakBytes` (the
 * whole prediction: model state, activations and the engine's workspace).
 */
export const StageRecordCodec = t.readonly(t.intersection([
  t.type({
    stage: Count,
    node: t.string,
    layers: Count,
    trainableParams: Count,
    frozenParams: Count,
    adapterParams: Count,
    steps: Count,
    valLoss: t.number,
    merges: Count,
    accountedStateBytes: t.number,
    accountedState: AccountedStateCodec,
    measuredPeakBytes: t.number,
    bufferPeakBytes: t.number,
    tensorCountPeakBytes: t.number,
    heapBytes: Bytes,
    gpuPeakBytes: Bytes,
    processPeakBytes: Bytes,
    predictedStateBytes: t.number,
    predictedPeakBytes: t.number,
    predictedPeakAt: t.string,
  }),
  t.partial({
    /**
     * Seconds the stage's steps, evaluations and checkpoints took, summed over the sessions
     * that ran it. What a stopped session did after its last checkpoint is not in it: that
     * work is done again, and counted then. Absent from records written before it existed.
     */
    wallSeconds: t.number,
  }),
]));
/** What one finished stage measured. */
export type StageRecord = t.TypeOf<typeof StageRecordCodec>;

/** The optimizer step of the whole run a pre-training record was written at. */
const Stamp = t.type({ globalStep: Count });

/** One optimizer step of a pre-training stage. */
export const TrainMetricCodec = t.readonly(t.intersection([
  t.type({
    type: t.literal("train"),
    node: t.string,
    stage: Count,
    /** The step within the node, from 1. */
    step: Count,
    loss: Measured,
    lr: t.number,
    gradNorm: Measured,
    /** Tokens trained on so far, the whole run. */
    tokens: Count,
    /**
     * Accounted model state at the step's peak (`StepOutcome.accounted`'s total), not a measured
     * figure: the name is the file's, kept so existing logs still decode.
     */
    memoryBytes: t.number,
  }),
  t.partial({
    /** The loss or gradient was not finite: the weights were left as they were. */
    skipped: t.boolean,
    /** GaLore projectors renewed at this step. */
    projectorUpdates: Count,
    /** GaLore decompositions that failed at this step. */
    svdFailures: Count,
  }),
  Stamp,
]));

/** A validation loss: the run's validation set, or (with `set`) another corpus. */
export const EvalMetricCodec = t.readonly(t.intersection([
  t.type({ type: t.literal("eval"), node: t.string }),
  t.partial({ set: t.string }),
  t.type({ valLoss: t.number, perplexity: t.number }),
  Stamp,
]));

/** Layers added by a `grow` node. */
export const GrowMetricCodec = t.readonly(t.intersection([
  t.type({ type: t.literal("grow"), node: t.string, add: Count, layers: Count }),
  Stamp,
]));

/** A ReLoRA reset inside a stage: adapters merged and re-initialised, moments pruned. */
export const MergeMetricCodec = t.readonly(t.intersection([
  t.type({
    type: t.literal("merge"),
    node: t.string,
    step: Count,
    merged: Count,
    prunedFraction: t.number,
  }),
  Stamp,
]));

/** The end of a stage: what it measured ({@link StageRecordCodec}). */
export const StageMetricCodec = t.readonly(t.intersection([
  t.type({ type: t.literal("stage") }),
  StageRecordCodec,
  Stamp,
]));

/** A pre-training run's record, by its `type`. */
export const RunMetricCodec = tagged("run metrics record", "type", {
  train: TrainMetricCodec,
  eval: EvalMetricCodec,
  grow: GrowMetricCodec,
  merge: MergeMetricCodec,
  stage: StageMetricCodec,
});
/** A pre-training run's record. */
export type RunMetric = t.TypeOf<typeof RunMetricCodec>;

/** A pre-training record before the interpreter stamps it with the run's global step. */
export type RunMetricBody = RunMetric extends infer R
  ? R extends RunMetric ? Omit<R, "globalStep"> : never
  : never;

/** One optimizer step of a fine-tuning run. */
export const FinetuneTrainMetricCodec = t.readonly(t.intersection([
  t.type({
    type: t.literal("train"),
    /** The step of the whole run, from 1. */
    step: Count,
    epoch: Count,
    loss: Measured,
    lr: t.number,
    gradNorm: Measured,
    /** Response tokens of the step's examples (the loss counts only these). */
    responseTokens: Count,
  }),
  t.partial({ skipped: t.boolean }),
]));

/** The held-out response loss before or after fine-tuning. */
export const FinetuneEvalMetricCodec = t.readonly(t.type({
  type: t.literal("eval"),
  set: t.literal("held-out"),
  when: oneOf("when", ["before", "after"]),
  step: Count,
  loss: t.number,
}));

/** A fine-tuning run's record, by its `type`. */
export const FinetuneMetricCodec = tagged("fine-tuning metrics record", "type", {
  train: FinetuneTrainMetricCodec,
  eval: FinetuneEvalMetricCodec,
});
/** A fine-tuning run's record. */
export type FinetuneMetric = t.TypeOf<typeof FinetuneMetricCodec>;

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
  codec: t.Type<A, unknown, unknown>,
  text: string,
  path: string,
): E.Either<ContentInvalid, A[]> {
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
