/**
 * The interpreter's `data` effect (`pipeline/effects.ts` `DataEffect`) over a
 * loaded corpus: shuffled training micro-batches addressed by a JSON
 * position, a fixed validation set, and the reference entropies.
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
  evalBatches,
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
 * `{ epoch, cursor }`; `next` throws a `RangeError` on a position that is not one
 * (validate checkpoints with `decodeBatchPosition` first).
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
  const stream = batchStream(corpus.train, {
    batch: options.batch,
    seq: options.seq,
    seed: options.seed,
    where,
    ...(options.shiftWindows === undefined ? {} : { shiftWindows: options.shiftWindows }),
  });
  if (E.isLeft(stream)) return stream;
  let validationSet: Batch[] = [];
  if (corpus.validation.length > 0) {
    const v = evalBatches(corpus.validation, {
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
  const description =
    `${tok.name} tokens: ${corpus.train.length} train / ${corpus.validation.length} validation` +
    ` (split by ${corpus.split}${corpus.fromCache ? ", from cache" : ""})`;
  const floor = corpus.floorNats?.validation;
  return E.right({
    description,
    vocabSize: tok.vocabSize,
    trainTokens: corpus.train.length,
    start: stream.right.start,
    next: (position: DataPosition, count: number) => {
      const decoded = decodeBatchPosition(position);
      if (E.isLeft(decoded)) throw new RangeError(`${decoded.left.where}: ${decoded.left.message}`);
      const batches: MicroBatch[] = [];
      let p = decoded.right;
      for (let i = 0; i < count; i++) {
        const step = batchAt(stream.right, p);
        batches.push(step.batch);
        p = step.next;
      }
      return { batches, next: p };
    },
    validation: (count: number) => validationSet.slice(0, count),
    unigramNats: unigramEntropy(corpus.train),
    tokenStreams: { train: corpus.train, validation: corpus.validation },
    ...(floor === undefined ? {} : { floorNats: floor }),
  });
}
