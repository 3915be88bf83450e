/**
 * The interpreter's `data` effect (`pipeline/effects.ts` `DataEffect`) over a
 * loaded corpus: shuffled training micro-batches addressed by a JSON
 * position (mixed from weighted sources when the corpus has groups), a fixed
 * validation set read only as far as it is asked for, and the reference
 * entropies. Every batch is read from the corpus's token streams window by
 * window.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid } from "../base/mod.ts";
import type { DataEffect, DataPosition, MicroBatch } from "../pipeline/mod.ts";
import {
  type Batch,
  batchAt,
  batchStream,
  type Corpus,
  decodeBatchPosition,
  decodeMixturePosition,
  type EvalSet,
  evalSet,
  mixture,
  mixtureAt,
  unigramEntropy,
} from "../data/mod.ts";

/** Micro-batch shape and shuffling seed. */
export interface DataEffectOptions {
  /** Sequences per micro-batch. */
  readonly batch: number;
  readonly seq: number;
  readonly seed: number;
  /** Move window boundaries between epochs (default true). */
  readonly shiftWindows?: boolean;
  /** Config path named in errors (default `data`). */
  readonly where?: string;
}

/**
 * Wraps a corpus as the interpreter's data effect. The position stored in checkpoints is
 * `{ epoch, cursor }`, or `{ sources: [{ epoch, cursor }, …] }` for a corpus of weighted
 * sources; `next` throws a `RangeError` on a position that is not one (validate checkpoints
 * with `decodeBatchPosition` / `decodeMixturePosition` first).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataEffect } from "./data_effect.ts";
 * import { loadCorpus } from "../data/corpus.ts";
 * const c = await loadCorpus({ sources: [{ builtin: { seed: 1, documents: 30 } }], tokenizer: "bytes" })();
 * if (c._tag === "Right") {
 *   const d = dataEffect(c.right, { batch: 2, seq: 16, seed: 1 });
 *   if (d._tag === "Right") assert(d.right.next(d.right.start, 3).batches.length === 3);
 * }
 * ```
 */
export function dataEffect(
  corpus: Corpus,
  options: DataEffectOptions,
): E.Either<ConfigInvalid, DataEffect> {
  const where = options.where ?? "data";
  const shape = {
    batch: options.batch,
    seq: options.seq,
    seed: options.seed,
    where,
    ...(options.shiftWindows === undefined ? {} : { shiftWindows: options.shiftWindows }),
  };
  const training = trainingBatches(corpus, shape);
  if (E.isLeft(training)) return training;
  let validationSet: EvalSet | undefined;
  if (corpus.validation.length > 0) {
    const v = evalSet(corpus.validation, {
      batch: options.batch,
      seq: options.seq,
      where,
      split: "validation",
    });
    if (E.isLeft(v)) return v;
    validationSet = v.right;
  } else if (corpus.split !== "tail") {
    return E.left(configInvalid(`${where}.validation`, "the validation split is empty"));
  }
  const tok = corpus.tokenizer;
  const mixed = corpus.groups === undefined
    ? ""
    : `, ${corpus.groups.length} sources mixed ${corpus.groups.map((g) => g.weight).join(":")}`;
  const description =
    `${tok.name} tokens: ${corpus.train.length} train / ${corpus.validation.length} validation` +
    ` (split by ${corpus.split}${corpus.fromCache ? ", from cache" : ""}${mixed})`;
  const floor = corpus.floorNats?.validation;
  // The interpreter asks for the same count each time: made once, on first use.
  const validationMemo = new Map<number, Batch[]>();
  return E.right({
    description,
    vocabSize: tok.vocabSize,
    trainTokens: corpus.train.length,
    start: training.right.start,
    next: (position: DataPosition, count: number) => {
      const batches: MicroBatch[] = [];
      let p = position;
      for (let i = 0; i < count; i++) {
        const step = training.right.at(p);
        batches.push(step.batch);
        p = step.next;
      }
      return { batches, next: p };
    },
    validation: (count: number) => {
      if (validationSet === undefined) return [];
      let batches = validationMemo.get(count);
      if (batches === undefined) {
        batches = validationSet.first(count);
        validationMemo.clear();
        validationMemo.set(count, batches);
      }
      return batches;
    },
    unigramNats: unigramEntropy(corpus.train),
    tokenStreams: { train: corpus.train, validation: corpus.validation },
    ...(floor === undefined ? {} : { floorNats: floor }),
  });
}

/** Training batches by position: one stream, or the weighted sources' mixture. */
interface TrainingBatches {
  readonly start: DataPosition;
  at(position: DataPosition): { readonly batch: Batch; readonly next: DataPosition };
}

function trainingBatches(
  corpus: Corpus,
  shape: Parameters<typeof batchStream>[1],
): E.Either<ConfigInvalid, TrainingBatches> {
  const rangeError = (e: ConfigInvalid) => new RangeError(`${e.where}: ${e.message}`);
  if (corpus.groups !== undefined) {
    const m = mixture(corpus.groups.map((g) => ({ tokens: g.train, weight: g.weight })), shape);
    if (E.isLeft(m)) return m;
    return E.right({
      start: m.right.start,
      at: (position) => {
        const decoded = decodeMixturePosition(position, m.right.sources.length);
        if (E.isLeft(decoded)) throw rangeError(decoded.left);
        return mixtureAt(m.right, decoded.right);
      },
    });
  }
  const stream = batchStream(corpus.train, shape);
  if (E.isLeft(stream)) return stream;
  return E.right({
    start: stream.right.start,
    at: (position) => {
      const decoded = decodeBatchPosition(position);
      if (E.isLeft(decoded)) throw rangeError(decoded.left);
      return batchAt(stream.right, decoded.right);
    },
  });
}
