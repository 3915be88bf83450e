/**
 * Fixed-length training examples and a resumable, deterministic batch stream.
 *
 * Packing: the token stream (documents joined by end-of-text) is cut into
 * windows of `seq + 1` tokens that overlap by one, so example k has inputs
 * `w[0..seq)` and targets `w[1..seq]` and every token is a target once per
 * epoch. With `shiftWindows` (the default) each epoch after the first starts
 * the windows at an offset in `[0, slack]` drawn from (seed, epoch), so the
 * cut points move between epochs; one window is given up for that slack.
 *
 * Order: within epoch e the windows are visited in a permutation drawn from
 * (seed, e). A batch takes the next `batch` windows, carrying over into the
 * next epoch when one runs out, so nothing is dropped and a batch never
 * repeats a window of its own epoch.
 *
 * Position: `{ epoch, cursor }` (plain JSON) says where the next batch
 * starts. `batchAt(stream, position)` is a pure function of the tokens, the
 * options and the position, so a run that stores the position in its
 * checkpoint resumes with exactly the batch it would have drawn.
 *
 * Tokens are read window by window from a {@link TokenStream} (in memory or
 * on disk), so a batch costs its own rows and nothing more.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  deriveSeed,
  type ext,
  permutation,
} from "../base/mod.ts";
import type { TokenArray } from "./token_cache.ts";
import { memoryStream, type TokenStream } from "./token_stream.ts";

/** The fields of a {@link BatchPosition}, with their codecs. */
export const BATCH_POSITION_FIELDS = { epoch: t.number, cursor: t.number };
/** Codec of a stream position (plain JSON). Use {@link decodeBatchPosition} to also check the numbers. */
export const BatchPosition: ext.ExactC<ext.TypeC<typeof BATCH_POSITION_FIELDS>> = t.exact(
  t.type(BATCH_POSITION_FIELDS),
);
/** Where the next batch starts: the epoch and the index into that epoch's window order. */
export type BatchPosition = ext.TypeOf<typeof BatchPosition>;

/**
 * Reads a position back (e.g. from a checkpoint): both fields must be non-negative integers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeBatchPosition } from "./batches.ts";
 * assert(decodeBatchPosition({ epoch: 1, cursor: 7 })._tag === "Right");
 * assert(decodeBatchPosition({ epoch: -1, cursor: 0 })._tag === "Left");
 * ```
 */
export function decodeBatchPosition(
  json: unknown,
  where = "position",
): ext.Either<ConfigInvalid, BatchPosition> {
  const decoded = BatchPosition.decode(json);
  if (E.isLeft(decoded)) {
    return E.left(configInvalid(where, "expected { epoch, cursor } with numbers"));
  }
  const { epoch, cursor } = decoded.right;
  if (!Number.isSafeInteger(epoch) || epoch < 0 || !Number.isSafeInteger(cursor) || cursor < 0) {
    return E.left(
      configInvalid(
        where,
        `epoch and cursor must be non-negative integers, got ${epoch}, ${cursor}`,
      ),
    );
  }
  return E.right({ epoch, cursor });
}

/** Rows of a batch as start offsets into a split's token stream: row k is `tokens[starts[k] ..= starts[k] + seq]`. */
export interface TokenWindows {
  /** Which split's token stream the offsets index. */
  readonly split: "train" | "validation";
  /** One token offset per row of the batch, in row order. */
  readonly starts: readonly number[];
}

/** One batch, row-major: `tokens[b * seq + i]` is input i of example b; `targets` is shifted by one. */
export interface Batch {
  /** Input token ids, `batch × seq` of them. */
  readonly tokens: Int32Array;
  /** The id that follows each input (the input stream shifted by one), `batch × seq` of them. */
  readonly targets: Int32Array;
  /** Rows (sequences) in the batch. */
  readonly batch: number;
  /** Tokens per row. */
  readonly seq: number;
  /** Where the rows were cut from (training stream batches and a run's validation batches). */
  readonly window?: TokenWindows;
}

/** A batch and the position after it. */
export interface BatchStep {
  /** The batch at the position asked for. */
  readonly batch: Batch;
  /** Where the following batch starts (the epoch rolls over when this one used its last window). */
  readonly next: BatchPosition;
}

/** Shape and seed of a training stream. */
export interface BatchStreamOptions {
  /** Rows per batch, at least 1. */
  readonly batch: number;
  /** Tokens per row, at least 1; the stream must hold at least `seq + 1` tokens. */
  readonly seq: number;
  /** Seed of each epoch's window order and offset. */
  readonly seed: number;
  /** Move window boundaries between epochs (default true). */
  readonly shiftWindows?: boolean;
  /** Config path named in errors (default `data`). */
  readonly where?: string;
}

/** A training stream over fixed tokens; build with {@link batchStream}. */
export interface BatchStream {
  /** Rows per batch. */
  readonly batch: number;
  /** Tokens per row. */
  readonly seq: number;
  /** Seed of each epoch's window order and offset. */
  readonly seed: number;
  /** Windows per epoch (constant across epochs). */
  readonly windowsPerEpoch: number;
  /** Tokens beyond the windows, the range of the per-epoch offset. */
  readonly slack: number;
  /** Whether window boundaries move between epochs (by an offset in `[0, slack]`). */
  readonly shiftWindows: boolean;
  /** The position of the stream's first batch: epoch 0, cursor 0. */
  readonly start: BatchPosition;
  /** The token stream the windows are cut from. */
  readonly tokens: TokenStream;
  /** The window order of an epoch (memoised). */
  order(epoch: number): Uint32Array;
}

function checkShape(where: string, batch: number, seq: number): ext.Either<ConfigInvalid, void> {
  if (!Number.isSafeInteger(batch) || batch < 1) {
    return E.left(configInvalid(`${where}.batch`, `must be a positive integer, got ${batch}`));
  }
  if (!Number.isSafeInteger(seq) || seq < 1) {
    return E.left(configInvalid(`${where}.seq`, `must be a positive integer, got ${seq}`));
  }
  return E.right(undefined);
}

function tooShort(where: string, seq: number, have: number, what: string): ConfigInvalid {
  return configInvalid(
    `${where}.seq`,
    `sequence length ${seq} needs at least ${seq + 1} tokens, the ${what} has ${have}`,
  );
}

/** A stream as is, or ids in memory as a stream. */
export function asTokenStream(tokens: TokenStream | TokenArray): TokenStream {
  return tokens instanceof Uint16Array || tokens instanceof Int32Array
    ? memoryStream(tokens)
    : tokens;
}

/**
 * Builds a batch stream over a token stream; refuses shapes the data cannot fill.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchAt, batchStream } from "./batches.ts";
 * const s = batchStream(new Uint16Array(100).map((_, i) => i), { batch: 2, seq: 8, seed: 1 });
 * if (s._tag === "Right") assert(batchAt(s.right, s.right.start).batch.tokens.length === 16);
 * ```
 */
export function batchStream(
  source: TokenStream | TokenArray,
  options: BatchStreamOptions,
): ext.Either<ConfigInvalid, BatchStream> {
  const tokens = asTokenStream(source);
  const where = options.where ?? "data";
  const { batch, seq, seed } = options;
  const shape = checkShape(where, batch, seq);
  if (E.isLeft(shape)) return shape;
  const full = Math.floor((tokens.length - 1) / seq);
  if (full < 1) return E.left(tooShort(where, seq, tokens.length, "training split"));
  const shiftWindows = (options.shiftWindows ?? true) && full >= 2;
  const windowsPerEpoch = shiftWindows ? full - 1 : full;
  const slack = tokens.length - 1 - windowsPerEpoch * seq;
  const memo = new Map<number, Uint32Array>();
  return E.right({
    batch,
    seq,
    seed,
    windowsPerEpoch,
    slack,
    shiftWindows,
    start: { epoch: 0, cursor: 0 },
    tokens,
    order: (epoch) => {
      let p = memo.get(epoch);
      if (p === undefined) {
        p = permutation(windowsPerEpoch, deriveSeed(seed, epoch));
        if (memo.size >= 2) memo.delete(memo.keys().next().value!);
        memo.set(epoch, p);
      }
      return p;
    },
  });
}

/** Offset of the first window in an epoch: 0 in epoch 0, then drawn from (seed, epoch). */
export function epochOffset(stream: BatchStream, epoch: number): number {
  if (!stream.shiftWindows || epoch === 0) return 0;
  return deriveSeed(stream.seed, epoch, 0x0ff5e7) % (stream.slack + 1);
}

/** Carries a cursor past the end of an epoch into the next. */
function normalise(stream: BatchStream, p: BatchPosition): BatchPosition {
  const extra = Math.floor(p.cursor / stream.windowsPerEpoch);
  return { epoch: p.epoch + extra, cursor: p.cursor - extra * stream.windowsPerEpoch };
}

/**
 * The batch at `position` and the position after it. Pure: the same stream and position
 * always give the same batch.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchAt, batchStream } from "./batches.ts";
 * const s = batchStream(new Int32Array(50), { batch: 4, seq: 5, seed: 3 });
 * if (s._tag === "Right") assert(batchAt(s.right, { epoch: 0, cursor: 0 }).next.cursor === 4);
 * ```
 */
export function batchAt(stream: BatchStream, position: BatchPosition): BatchStep {
  const { batch, seq, tokens } = stream;
  const inputs = new Int32Array(batch * seq);
  const targets = new Int32Array(batch * seq);
  const window = new Int32Array(seq + 1);
  const starts: number[] = [];
  let p = position;
  for (let b = 0; b < batch; b++) {
    const w = windowAt(stream, p);
    readRow(tokens, w.start, window, inputs, targets, b);
    starts.push(w.start);
    p = w.next;
  }
  return {
    batch: { tokens: inputs, targets, batch, seq, window: { split: "train", starts } },
    next: p,
  };
}

/** Row `row` of a batch: the window of `seq + 1` tokens from `start`, as inputs and targets. */
export function readRow(
  tokens: TokenStream,
  start: number,
  window: Int32Array,
  inputs: Int32Array,
  targets: Int32Array,
  row: number,
): void {
  const seq = window.length - 1;
  tokens.read(start, seq + 1, window);
  inputs.set(window.subarray(0, seq), row * seq);
  targets.set(window.subarray(1), row * seq);
}

/** What {@link windowAt} returns. */
export interface WindowStep {
  /** Offset of the window (`seq + 1` tokens) in the stream's tokens. */
  readonly start: number;
  /** The position of the window after it. */
  readonly next: BatchPosition;
}

/**
 * The single window at `position` (normalised first, so a cursor past its epoch's end rolls
 * over) and the position after it: {@link batchAt} is `batch` of these in a row.
 */
export function windowAt(stream: BatchStream, position: BatchPosition): WindowStep {
  const p = normalise(stream, position);
  const start = epochOffset(stream, p.epoch) + stream.order(p.epoch)[p.cursor]! * stream.seq;
  return { start, next: normalise(stream, { epoch: p.epoch, cursor: p.cursor + 1 }) };
}

/**
 * Successive batches from `position` on; stops after `count` batches (default: never).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchesFrom, batchStream } from "./batches.ts";
 * const s = batchStream(new Int32Array(50), { batch: 2, seq: 5, seed: 3 });
 * if (s._tag === "Right") assert([...batchesFrom(s.right, s.right.start, 3)].length === 3);
 * ```
 */
export function* batchesFrom(
  stream: BatchStream,
  position: BatchPosition,
  count = Infinity,
): Generator<BatchStep> {
  let p = position;
  for (let i = 0; i < count; i++) {
    const step = batchAt(stream, p);
    yield step;
    p = step.next;
  }
}

/** Shape of evaluation batches. */
export interface EvalBatchOptions {
  /** Rows per batch, at least 1. */
  readonly batch: number;
  /** Tokens per row, at least 1. */
  readonly seq: number;
  /** At most this many batches (default: all windows). */
  readonly maxBatches?: number;
  /** Config path named in errors (default `data`). */
  readonly where?: string;
  /** The split `tokens` is, recorded in each batch's `window` (unset: none recorded). */
  readonly split?: TokenWindows["split"];
}

/** A split's evaluation batches, made on demand: see {@link evalSet}. */
export interface EvalSet {
  /** Windows of `seq + 1` tokens the split holds (capped by `maxBatches`). */
  readonly windows: number;
  /** Batches in the set: `ceil(windows / batch)`. */
  readonly batches: number;
  /** The first `count` batches (all of them when `count` is larger), read now. */
  first(count: number): Batch[];
}

/**
 * Validation batches: consecutive windows in order (no shuffle, no offset), so every
 * evaluation sees the same tokens. The last batch may hold fewer than `batch` examples.
 * Nothing is read until {@link EvalSet.first} asks for batches, and then only those.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evalSet } from "./batches.ts";
 * const r = evalSet(new Uint16Array(41), { batch: 3, seq: 10 });
 * assert(r._tag === "Right" && r.right.batches === 2 && r.right.first(1)[0]!.batch === 3);
 * ```
 */
export function evalSet(
  source: TokenStream | TokenArray,
  options: EvalBatchOptions,
): ext.Either<ConfigInvalid, EvalSet> {
  const tokens = asTokenStream(source);
  const where = options.where ?? "data";
  const { batch, seq } = options;
  const shape = checkShape(where, batch, seq);
  if (E.isLeft(shape)) return shape;
  const all = Math.floor((tokens.length - 1) / seq);
  if (all < 1) return E.left(tooShort(where, seq, tokens.length, "validation split"));
  const windows = Math.min(all, batch * (options.maxBatches ?? Infinity));
  const split = options.split;
  const batchOf = (first: number): Batch => {
    const rows = Math.min(batch, windows - first);
    const inputs = new Int32Array(rows * seq);
    const targets = new Int32Array(rows * seq);
    const window = new Int32Array(seq + 1);
    const starts: number[] = [];
    for (let r = 0; r < rows; r++) {
      const start = (first + r) * seq;
      readRow(tokens, start, window, inputs, targets, r);
      starts.push(start);
    }
    return {
      tokens: inputs,
      targets,
      batch: rows,
      seq,
      ...(split === undefined ? {} : { window: { split, starts } }),
    };
  };
  const batches = Math.ceil(windows / batch);
  return E.right({
    windows,
    batches,
    first: (count) =>
      Array.from({ length: Math.min(Math.max(0, count), batches) }, (_, k) => batchOf(k * batch)),
  });
}

/**
 * Validation batches, all of them up to `maxBatches` (see {@link evalSet}, which makes them
 * on demand).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evalBatches } from "./batches.ts";
 * const r = evalBatches(new Uint16Array(41), { batch: 3, seq: 10 });
 * assert(r._tag === "Right" && r.right.length === 2 && r.right[1]!.batch === 1);
 * ```
 */
export function evalBatches(
  tokens: TokenStream | TokenArray,
  options: EvalBatchOptions,
): ext.Either<ConfigInvalid, Batch[]> {
  return E.map((set: EvalSet) => set.first(set.batches))(evalSet(tokens, options));
}
