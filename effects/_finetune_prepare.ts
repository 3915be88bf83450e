/**
 * What a fine-tuning run decides before its run directory is opened: the settings and their
 * defaults, the records read and encoded, the base model loaded, the plan checked. Any refusal
 * here leaves the disk untouched. Also the base's weights as the engine's starting state.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  configInvalid,
  contentInvalid,
  hashString,
  isAdapterName,
  type PipelineError,
} from "../base/mod.ts";
import { freshMoments, mergedSnapshot } from "../checkpoint/mod.ts";
import {
  type AlpacaRecord,
  encodeAlpacaSet,
  readAlpaca,
  type SftSet,
  type TokenizerName,
} from "../data/mod.ts";
import { exportParams } from "../kernels/mod.ts";
import {
  type Engine,
  type EngineSnapshot,
  type EngineState,
  type FinetunePlan,
  finetunePlan,
} from "../pipeline/mod.ts";
import type { FinetuneSettingsRecord } from "./_finetune_progress.ts";
import { type LoadedModel, loadModel } from "./load_model.ts";

/** The knobs of a fine-tuning run. */
export interface FinetuneSettings {
  readonly epochs: number;
  /** Peak learning rate. */
  readonly lr: number;
  /** Linear warmup steps (clamped to the run's length − 1). */
  readonly warmup: number;
  /** Examples per optimizer step. */
  readonly batch: number;
  /** Examples per forward pass; a step accumulates the gradients of `batch / microBatch`. */
  readonly microBatch: number;
  /** Use only the first `limit` records of the file. */
  readonly limit?: number;
  /** Records held out to measure the response loss before and after; default a tenth, at most 32. */
  readonly evalExamples?: number;
  readonly checkpointEvery: number;
  readonly logEvery: number;
  readonly seed: number;
  readonly weightDecay: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly clip: number;
  /** Steps in a row with a non-finite loss or gradient (skipped) that stop the run. */
  readonly maxSkippedSteps: number;
}

/**
 * The paper's fine-tuning settings (AdamW 0.9/0.95, LR 1e-4, cosine, 100 warmup steps,
 * 2 epochs); weight decay 0 and clip 1.0 as in Stanford Alpaca's training script. The batch of 8
 * is this project's choice for a CPU (Alpaca's global batch of 128 is a GPU cluster's).
 */
export const FINETUNE_DEFAULTS: FinetuneSettings = {
  epochs: 2,
  lr: 1e-4,
  warmup: 100,
  batch: 8,
  microBatch: 8,
  checkpointEvery: 100,
  logEvery: 10,
  seed: 0,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  clip: 1.0,
  maxSkippedSteps: 3,
};

/** The inputs {@link prepare} reads. */
export interface PrepareInputs {
  readonly base: string;
  readonly data: string;
  readonly settings: FinetuneSettings;
  readonly tokenizer?: TokenizerName;
  readonly shapeFile?: string;
}

/** Everything decided before the run directory is touched. */
export interface Prepared {
  readonly loaded: LoadedModel;
  /** LoRA adapter pairs in the base, merged before training. */
  readonly adapters: number;
  readonly records: readonly AlpacaRecord[];
  readonly set: SftSet;
  readonly plan: FinetunePlan;
  readonly settings: FinetuneSettingsRecord;
}

export async function prepare(o: PrepareInputs): Promise<E.Either<PipelineError, Prepared>> {
  const S = o.settings;
  if (S.limit !== undefined && !(Number.isSafeInteger(S.limit) && S.limit >= 1)) {
    return E.left(configInvalid("--limit", `must be a positive integer, got ${S.limit}`));
  }
  const read = await readAlpaca(o.data)();
  if (E.isLeft(read)) return read;
  const records = S.limit === undefined ? read.right : read.right.slice(0, S.limit);
  const base = await Deno.realPath(o.base).catch(() => o.base);
  const loaded = await loadModel(o.base, {
    ...(o.tokenizer === undefined ? {} : { tokenizer: o.tokenizer }),
    ...(o.shapeFile === undefined ? {} : { shapeFile: o.shapeFile }),
  })();
  if (E.isLeft(loaded)) return loaded;
  const { shape } = loaded.right.model;
  const set = encodeAlpacaSet(records, {
    tokenizer: loaded.right.tokenizer,
    maxSeqLen: shape.maxSeqLen,
  });
  const fail = (e: PipelineError) => {
    loaded.right.dispose();
    return E.left(e);
  };
  const n = set.examples.length;
  if (n < 2) {
    return fail(contentInvalid(
      o.data,
      `${n} of ${records.length} records fit the model's context of ${shape.maxSeqLen} tokens ` +
        "with room for a response (the prompt is kept whole); fine-tuning needs at least 2",
    ));
  }
  const heldOut = S.evalExamples ?? Math.min(32, Math.floor(n / 10));
  const plan = finetunePlan({
    examples: n,
    heldOut,
    epochs: S.epochs,
    batch: S.batch,
    microBatch: S.microBatch,
    seed: S.seed,
    lr: S.lr,
    warmup: S.warmup,
  });
  if (E.isLeft(plan)) return fail(plan.left);
  return E.right({
    loaded: loaded.right,
    adapters: [...loaded.right.model.params.keys()].filter(isAdapterName).length / 2,
    records,
    set,
    plan: plan.right,
    settings: {
      base,
      dataHash: hashString(JSON.stringify(records)).toString(16).padStart(8, "0"),
      records: records.length,
      limit: S.limit ?? null,
      heldOut,
      epochs: S.epochs,
      batch: S.batch,
      microBatch: S.microBatch,
      lr: S.lr,
      warmup: S.warmup,
      seed: S.seed,
      weightDecay: S.weightDecay,
      beta1: S.beta1,
      beta2: S.beta2,
      eps: S.eps,
      clip: S.clip,
    },
  });
}

/**
 * The base's weights as the engine's starting state: every parameter trainable, fresh moments;
 * LoRA adapters (a ReLoRA or PEFT checkpoint) are merged into their weights first
 * (`checkpoint/surgery.ts`), since full fine-tuning trains the plain model. Consumes
 * `loaded`'s tensors.
 */
export async function baseState(
  engine: Engine,
  loaded: LoadedModel,
): Promise<E.Either<PipelineError, EngineState>> {
  const { shape, loraScale } = loaded.model;
  const params = await exportParams(loaded.model.params);
  loaded.dispose();
  const meta = { trainable: [], loraScale, adamStep: 0 };
  const plain = mergedSnapshot({ params, moments: [], meta }).params;
  const trainable = plain.map((p) => p.name);
  const snapshot: EngineSnapshot = {
    params: plain,
    moments: freshMoments(plain, trainable),
    meta: { ...meta, trainable },
  };
  return await engine.load(shape, snapshot)();
}
