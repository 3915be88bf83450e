/**
 * What a fine-tuning run decides before its run directory is opened: the records read and
 * encoded, the base model loaded, the plan and the stage graph checked. Any refusal here leaves
 * the disk untouched. Also the base's weights as the run's starting snapshot.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { contentInvalid, hashString, isAdapterName, type PipelineError } from "../base/mod.ts";
import { freshMoments, mergedSnapshot } from "../checkpoint/mod.ts";
import {
  type AlpacaRecord,
  encodeAlpacaSet,
  readAlpaca,
  type SftSet,
  type TokenizerSpec,
} from "../data/mod.ts";
import { exportParams } from "../kernels/mod.ts";
import {
  type EngineSnapshot,
  finetuneGraph,
  type FinetuneJob,
  finetunePlan,
  finetuneRecord,
  type FinetuneSettings,
} from "../pipeline/mod.ts";
import { type LoadedModel, loadModel } from "./load_model.ts";

/** The inputs {@link prepare} reads. */
export interface PrepareInputs {
  readonly base: string;
  readonly data: string;
  readonly settings: FinetuneSettings;
  readonly tokenizer?: TokenizerSpec;
  readonly shapeFile?: string;
}

/** Everything decided before the run directory is touched. */
export interface Prepared {
  /** The run; its `base` consumes `loaded`'s tensors. */
  readonly job: FinetuneJob;
  readonly loaded: LoadedModel;
  /** LoRA adapter pairs in the base, merged before training. */
  readonly adapters: number;
  readonly records: readonly AlpacaRecord[];
  readonly set: SftSet;
}

/** Reads the records, loads the base, encodes the examples and lays out the run. */
export async function prepare(o: PrepareInputs): Promise<E.Either<PipelineError, Prepared>> {
  const S = o.settings;
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
  const plan = finetunePlan(S, n);
  if (E.isLeft(plan)) return fail(plan.left);
  const graph = finetuneGraph(shape, plan.right);
  if (E.isLeft(graph)) return fail(graph.left);
  const record = finetuneRecord(S, {
    base,
    dataHash: hashString(JSON.stringify(records)).toString(16).padStart(8, "0"),
    records: records.length,
    heldOut: plan.right.heldOut.length,
    microBatch: plan.right.microBatch,
  });
  return E.right({
    job: { graph: graph.right, plan: plan.right, record, base: () => baseSnapshot(loaded.right) },
    loaded: loaded.right,
    adapters: [...loaded.right.model.params.keys()].filter(isAdapterName).length / 2,
    records,
    set,
  });
}

/**
 * The base's weights as the run's starting snapshot: every parameter trainable, fresh moments;
 * LoRA adapters (a ReLoRA or PEFT checkpoint) are merged into their weights first
 * (`checkpoint/surgery.ts`), since full fine-tuning trains the plain model. Consumes
 * `loaded`'s tensors.
 */
export async function baseSnapshot(
  loaded: LoadedModel,
): Promise<E.Either<PipelineError, EngineSnapshot>> {
  const params = await exportParams(loaded.model.params);
  loaded.dispose();
  const meta = { trainable: [], loraScale: loaded.model.loraScale, adamStep: 0 };
  const plain = mergedSnapshot({ params, moments: [], meta }).params;
  const trainable = plain.map((p) => p.name);
  return E.right({
    params: plain,
    moments: freshMoments(plain, trainable),
    meta: { ...meta, trainable },
  });
}
