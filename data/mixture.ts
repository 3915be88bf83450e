/**
 * Training batches drawn from several sources in proportion to their weights.
 *
 * Each source is its own {@link BatchStream} (its own windows, epochs and per-epoch shuffle,
 * seeded from the run's seed and the source's index), so a small source repeats more often than
 * a large one instead of being diluted. Rows are dealt by smooth weighted round-robin on the row
 * index: with `c_s` rows drawn so far from source s (row `r = Σ c_s` is next) and `W = Σ w_s`,
 * the next row comes from the source with the largest `(r + 1)·w_s − W·c_s`, the lowest index
 * on a tie. After any r rows each source has had within one row of `r·w_s / W`, and the deal is
 * a pure function of the counts, which the position holds: `{ sources: [{ epoch, cursor }, …] }`
 * (`c_s = epoch·windowsPerEpoch_s + cursor`). A resumed run therefore draws exactly the rows the
 * uninterrupted run would have.
 *
 * Row windows are reported as offsets into the sources' training streams laid end to end (each
 * source's offset is the sum of the lengths before it), the one training stream the torch
 * engine reads.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid, deriveSeed, type ext } from "../base/mod.ts";
import {
  type Batch,
  BatchPosition,
  type BatchStream,
  batchStream,
  type BatchStreamOptions,
  decodeBatchPosition,
  readRow,
  windowAt,
} from "./batches.ts";
import type { TokenStream } from "./token_stream.ts";

/** The field of a {@link MixturePosition}. */
export const MIXTURE_POSITION_FIELDS = {
  /** Each source's own position, in source order. */
  sources: t.array(BatchPosition),
};
/** Codec of a mixture's position (plain JSON, stored in checkpoints). */
export const MixturePosition: ext.ExactC<ext.TypeC<typeof MIXTURE_POSITION_FIELDS>> = t.exact(
  t.type(MIXTURE_POSITION_FIELDS),
);
/** Where each source of a mixture stands. */
export type MixturePosition = ext.TypeOf<typeof MixturePosition>;

/** One source of a {@link Mixture}. */
export interface MixtureSource {
  /** Its share of the rows, relative to the other weights. */
  readonly weight: number;
  /** Its windows, epochs and shuffles. */
  readonly stream: BatchStream;
  /** Where its tokens start in the sources' streams laid end to end. */
  readonly offset: number;
}

/** Training batches mixed from sources; build with {@link mixture}. */
export interface Mixture {
  /** Rows per batch. */
  readonly batch: number;
  /** Tokens per row. */
  readonly seq: number;
  /** The sources, in config order. */
  readonly sources: readonly MixtureSource[];
  /** The position of the first batch: every source at epoch 0, cursor 0. */
  readonly start: MixturePosition;
}

/** A source's tokens and weight. */
export interface WeightedTokens {
  /** The source's training tokens. */
  readonly tokens: TokenStream;
  /** Its weight, a positive number. */
  readonly weight: number;
}

/** The seed of source `index`'s window order: its own stream of the run's seed. */
export function sourceSeed(seed: number, index: number): number {
  return deriveSeed(seed, 0x3b1e, index);
}

/**
 * Builds a mixture of training streams; refuses a weight that is not a positive number and a
 * source too short for one window (naming `where.sources[i]`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mixture, mixtureAt } from "./mixture.ts";
 * import { memoryStream } from "./token_stream.ts";
 * const m = mixture([
 *   { tokens: memoryStream(new Uint16Array(200)), weight: 3 },
 *   { tokens: memoryStream(new Uint16Array(50).fill(1)), weight: 1 },
 * ], { batch: 4, seq: 8, seed: 1 });
 * if (m._tag === "Right") {
 *   const step = mixtureAt(m.right, m.right.start);
 *   assert(step.batch.tokens.filter((id) => id === 1).length === 8); // one row in four
 * }
 * ```
 */
export function mixture(
  sources: readonly WeightedTokens[],
  options: BatchStreamOptions,
): ext.Either<ConfigInvalid, Mixture> {
  const where = options.where ?? "data";
  const out: MixtureSource[] = [];
  let offset = 0;
  for (const [i, s] of sources.entries()) {
    if (!(Number.isFinite(s.weight) && s.weight > 0)) {
      return E.left(
        configInvalid(
          `${where}.sources[${i}].weight`,
          `must be a positive number, got ${s.weight}`,
        ),
      );
    }
    const stream = batchStream(s.tokens, {
      ...options,
      seed: sourceSeed(options.seed, i),
      where: `${where}.sources[${i}]`,
    });
    if (E.isLeft(stream)) return stream;
    out.push({ weight: s.weight, stream: stream.right, offset });
    offset += s.tokens.length;
  }
  if (out.length === 0) return E.left(configInvalid(`${where}.sources`, "no sources to mix"));
  return E.right({
    batch: options.batch,
    seq: options.seq,
    sources: out,
    start: { sources: out.map(() => ({ epoch: 0, cursor: 0 })) },
  });
}

/**
 * Reads a mixture's position back (e.g. from a checkpoint): one `{ epoch, cursor }` of
 * non-negative integers per source.
 */
export function decodeMixturePosition(
  json: unknown,
  sources: number,
  where = "position",
): ext.Either<ConfigInvalid, MixturePosition> {
  const decoded = MixturePosition.decode(json);
  if (E.isLeft(decoded) || decoded.right.sources.length !== sources) {
    return E.left(
      configInvalid(where, `expected { sources } with ${sources} { epoch, cursor } positions`),
    );
  }
  const out: BatchPosition[] = [];
  for (const [i, p] of decoded.right.sources.entries()) {
    const one = decodeBatchPosition(p, `${where}.sources[${i}]`);
    if (E.isLeft(one)) return one;
    out.push(one.right);
  }
  return E.right({ sources: out });
}

/** Rows source s has given at position p. */
function drawn(s: MixtureSource, p: BatchPosition): number {
  return p.epoch * s.stream.windowsPerEpoch + p.cursor;
}

/**
 * The source the next row comes from, given the rows each source has given (smooth weighted
 * round-robin, see the module doc).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nextSource } from "./mixture.ts";
 * const counts = [0, 0];
 * const dealt = Array.from({ length: 8 }, () => {
 *   const s = nextSource([3, 1], counts);
 *   counts[s]!++;
 *   return s;
 * });
 * assert(dealt.join("") === "00100010");
 * ```
 */
export function nextSource(weights: readonly number[], counts: readonly number[]): number {
  let total = 0;
  let rows = 0;
  for (let s = 0; s < weights.length; s++) {
    total += weights[s]!;
    rows += counts[s]!;
  }
  let best = 0;
  let bestScore = -Infinity;
  for (let s = 0; s < weights.length; s++) {
    const score = (rows + 1) * weights[s]! - total * counts[s]!;
    if (score > bestScore) {
      best = s;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The batch at `position` and the position after it; pure, like `batchAt`.
 */
export function mixtureAt(
  m: Mixture,
  position: MixturePosition,
): { readonly batch: Batch; readonly next: MixturePosition } {
  const { batch, seq, sources } = m;
  const inputs = new Int32Array(batch * seq);
  const targets = new Int32Array(batch * seq);
  const window = new Int32Array(seq + 1);
  const starts: number[] = [];
  const at = position.sources.slice();
  const weights = sources.map((s) => s.weight);
  const counts = sources.map((s, i) => drawn(s, at[i]!));
  for (let b = 0; b < batch; b++) {
    const i = nextSource(weights, counts);
    const source = sources[i]!;
    const w = windowAt(source.stream, at[i]!);
    readRow(source.stream.tokens, w.start, window, inputs, targets, b);
    starts.push(source.offset + w.start);
    at[i] = w.next;
    counts[i]!++;
  }
  return {
    batch: { tokens: inputs, targets, batch, seq, window: { split: "train", starts } },
    next: { sources: at },
  };
}
