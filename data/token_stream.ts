/**
 * Token streams: a corpus's ids as something to read windows from, wherever they are. One
 * interface, {@link TokenStream}, over an array in memory ({@link memoryStream}: small corpora,
 * tests, the built-in corpus without a cache) or a shard set on disk ({@link shardStream}), and
 * views that select runs of another stream without copying them ({@link rangesStream},
 * {@link documentsStream}, {@link sliceStream}, {@link concatStreams}): a train/validation split
 * is a pair of views, so the corpus is never gathered into one array.
 *
 * A stream backed by files says where its tokens lie ({@link TokenStream.segments}), which is how
 * the torch engine reads the same tokens with its own memory maps.
 *
 * @module
 */
import { segmentAt, type ShardDtype, type ShardSet } from "./shard_set.ts";
import type { TokenArray } from "./token_cache.ts";

/** A run of a stream's tokens stored in a file: `length` ids from id `start` of `file`. */
export interface FileSegment {
  /** Absolute path of the file of little-endian ids. */
  readonly file: string;
  /** How the file stores an id. */
  readonly dtype: ShardDtype;
  /** Offset of the run's first id in the file, in ids. */
  readonly start: number;
  /** Ids in the run. */
  readonly length: number;
}

/** Token ids to read windows from, without holding them all. */
export interface TokenStream {
  /** Tokens in the stream. */
  readonly length: number;
  /** The narrowest storage that holds every id (uint16 iff the vocabulary has at most 65,536). */
  readonly dtype: ShardDtype;
  /**
   * Copies tokens `[start, start + count)` into `out` from index `at` (default 0). Throws a
   * `RangeError` when the range is outside the stream or `out`.
   */
  read(start: number, count: number, out: Int32Array, at?: number): void;
  /**
   * Where the stream's tokens lie, in order, when they are all in files (a shard set or a view
   * of one); absent for a stream in memory.
   */
  segments?(): FileSegment[];
}

function checkRange(
  length: number,
  start: number,
  count: number,
  out: Int32Array,
  at: number,
): void {
  const ok = Number.isSafeInteger(start) && Number.isSafeInteger(count) && start >= 0 &&
    count >= 0 && start + count <= length && Number.isSafeInteger(at) && at >= 0 &&
    at + count <= out.length;
  if (!ok) {
    throw new RangeError(
      `cannot read tokens [${start}, ${start + count}) of ${length} into ${out.length} at ${at}`,
    );
  }
}

/**
 * A stream over ids in memory (uint16 ids, or int32 ids of a larger vocabulary).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryStream } from "./token_stream.ts";
 * const s = memoryStream(new Uint16Array([5, 6, 7]));
 * const out = new Int32Array(2);
 * s.read(1, 2, out);
 * assert(s.length === 3 && out[0] === 6 && out[1] === 7);
 * ```
 */
export function memoryStream(tokens: TokenArray): TokenStream {
  return {
    length: tokens.length,
    dtype: tokens instanceof Uint16Array ? "uint16" : "uint32",
    read(start, count, out, at = 0) {
      checkRange(tokens.length, start, count, out, at);
      out.set(tokens.subarray(start, start + count), at);
    },
  };
}

/**
 * A stream over a whole shard set, read from its files window by window.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openShardSet } from "./shard_set.ts";
 * import { shardStream } from "./token_stream.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/a.tok`, new Uint8Array(new Uint16Array([1, 2, 0]).buffer));
 * await Deno.writeFile(`${dir}/a.docs`, new Uint8Array(new Float64Array([3]).buffer));
 * await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify({
 *   format: "step-token-shards", version: 1, key: "k", tokenizer: "t", vocabSize: 3, eot: 0,
 *   dtype: "uint16", tokens: 3, documents: 1, sourceBytes: 2,
 *   shards: [{ file: "a.tok", docs: "a.docs", tokens: 3, documents: 1 }],
 * }));
 * const set = await openShardSet(dir)();
 * if (set._tag === "Right") assert(shardStream(set.right).segments!()[0]!.length === 3);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function shardStream(set: ShardSet): TokenStream {
  const { manifest, files, shardStarts } = set;
  return {
    length: manifest.tokens,
    dtype: manifest.dtype,
    read(start, count, out, at = 0) {
      checkRange(manifest.tokens, start, count, out, at);
      set.read(start, count, out, at);
    },
    segments: () =>
      manifest.shards.flatMap((s, i) =>
        s.tokens === 0 ? [] : [{
          file: files[i]!,
          dtype: manifest.dtype,
          start: 0,
          length: shardStarts[i + 1]! - shardStarts[i]!,
        }]
      ),
  };
}

/** A run of another stream: `length` tokens from `start` of `stream`. */
export interface StreamRange {
  /** The stream the run is taken from. */
  readonly stream: TokenStream;
  /** Offset of the run in that stream. */
  readonly start: number;
  /** Tokens in the run. */
  readonly length: number;
}

/** A stream's file segments with their cumulative starts, for mapping runs through them. */
interface SegmentIndex {
  readonly all: readonly FileSegment[];
  readonly starts: Float64Array;
}

function segmentIndex(s: TokenStream): SegmentIndex {
  const all = s.segments!();
  const starts = new Float64Array(all.length + 1);
  all.forEach((seg, i) => (starts[i + 1] = starts[i]! + seg.length));
  return { all, starts };
}

/** Where `count` tokens from `start` of a stream lie in its files. */
function segmentsOf(index: SegmentIndex, start: number, count: number): FileSegment[] {
  const { all, starts } = index;
  const out: FileSegment[] = [];
  let i = segmentAt(starts, start);
  let pos = start;
  while (pos < start + count) {
    const seg = all[i]!;
    const from = pos - starts[i]!;
    const n = Math.min(seg.length - from, start + count - pos);
    if (n > 0) out.push({ file: seg.file, dtype: seg.dtype, start: seg.start + from, length: n });
    pos += n;
    i++;
  }
  return out;
}

/**
 * A stream made of runs of other streams, one after another: the split views and mixtures are
 * all built on it. Adjacent runs of the same stream are merged; empty runs are dropped. Every
 * stream must have `dtype` (default: the first run's).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryStream, rangesStream, readAll } from "./token_stream.ts";
 * const base = memoryStream(new Uint16Array([0, 1, 2, 3, 4, 5]));
 * const v = rangesStream([{ stream: base, start: 4, length: 2 }, { stream: base, start: 0, length: 2 }]);
 * assert(readAll(v).join() === "4,5,0,1");
 * ```
 */
export function rangesStream(
  ranges: readonly StreamRange[],
  dtype: ShardDtype = ranges[0]?.stream.dtype ?? "uint16",
): TokenStream {
  const kept: StreamRange[] = [];
  for (const r of ranges) {
    if (r.length === 0) continue;
    if (!(r.start >= 0 && r.length > 0 && r.start + r.length <= r.stream.length)) {
      throw new RangeError(`run [${r.start}, ${r.start + r.length}) of ${r.stream.length} tokens`);
    }
    const last = kept[kept.length - 1];
    if (last !== undefined && last.stream === r.stream && last.start + last.length === r.start) {
      kept[kept.length - 1] = { ...last, length: last.length + r.length };
    } else kept.push(r);
  }
  const other = ranges.find((r) => r.stream.dtype !== dtype);
  if (other !== undefined) {
    throw new RangeError(`a run of ${other.stream.dtype} tokens in a stream of ${dtype} tokens`);
  }
  const starts = new Float64Array(kept.length + 1);
  kept.forEach((r, i) => (starts[i + 1] = starts[i]! + r.length));
  const length = starts[kept.length]!;
  const filed = kept.every((r) => r.stream.segments !== undefined);
  return {
    length,
    dtype,
    read(start, count, out, at = 0) {
      checkRange(length, start, count, out, at);
      if (count === 0) return;
      let i = segmentAt(starts, start);
      let pos = start;
      let to = at;
      while (pos < start + count) {
        const r = kept[i]!;
        const from = pos - starts[i]!;
        const n = Math.min(r.length - from, start + count - pos);
        r.stream.read(r.start + from, n, out, to);
        pos += n;
        to += n;
        i++;
      }
    },
    ...(filed
      ? {
        segments: () => {
          const indices = new Map<TokenStream, SegmentIndex>();
          return kept.flatMap((r) => {
            let index = indices.get(r.stream);
            if (index === undefined) indices.set(r.stream, index = segmentIndex(r.stream));
            return segmentsOf(index, r.start, r.length);
          });
        },
      }
      : {}),
  };
}

/**
 * Tokens `[start, end)` of a stream, as a stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryStream, readAll, sliceStream } from "./token_stream.ts";
 * assert(readAll(sliceStream(memoryStream(new Uint16Array([1, 2, 3, 4])), 1, 3)).join() === "2,3");
 * ```
 */
export function sliceStream(stream: TokenStream, start: number, end: number): TokenStream {
  return rangesStream([{ stream, start, length: end - start }], stream.dtype);
}

/**
 * Streams one after another, as one stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatStreams, memoryStream, readAll } from "./token_stream.ts";
 * const a = memoryStream(new Uint16Array([1, 2]));
 * const b = memoryStream(new Uint16Array([3]));
 * assert(readAll(concatStreams([a, b])).join() === "1,2,3");
 * ```
 */
export function concatStreams(streams: readonly TokenStream[]): TokenStream {
  return rangesStream(streams.map((stream) => ({ stream, start: 0, length: stream.length })));
}

/**
 * The documents of `stream` that `keep` selects (`keep[i]` non-zero keeps document i), in
 * order, as one stream; `docEnds[i]` is where document i ends (exclusive).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { documentsStream, memoryStream, readAll } from "./token_stream.ts";
 * const s = memoryStream(new Uint16Array([1, 0, 2, 2, 0, 3, 0]));
 * const v = documentsStream(s, [2, 5, 7], Uint8Array.from([1, 0, 1]));
 * assert(readAll(v).join() === "1,0,3,0");
 * ```
 */
export function documentsStream(
  stream: TokenStream,
  docEnds: ArrayLike<number>,
  keep: ArrayLike<number>,
): TokenStream {
  const ranges: StreamRange[] = [];
  let runStart = -1;
  for (let i = 0; i <= docEnds.length; i++) {
    const kept = i < docEnds.length && keep[i] !== 0;
    const start = i === 0 ? 0 : docEnds[i - 1]!;
    if (kept && runStart < 0) runStart = start;
    if (!kept && runStart >= 0) {
      ranges.push({ stream, start: runStart, length: start - runStart });
      runStart = -1;
    }
  }
  return rangesStream(ranges, stream.dtype);
}

/**
 * Every token of a stream in one array: for small streams (tests, a held-out set known to be
 * small); training reads windows instead.
 */
export function readAll(stream: TokenStream): Int32Array {
  const out = new Int32Array(stream.length);
  stream.read(0, stream.length, out);
  return out;
}

/**
 * Calls `f` on successive chunks of the stream (each a view of one reused buffer, at most
 * `chunk` tokens): a pass over a corpus of any size in bounded memory.
 */
export function forEachChunk(
  stream: TokenStream,
  f: (tokens: Int32Array, offset: number) => void,
  chunk = 1 << 20,
): void {
  const buf = new Int32Array(Math.min(chunk, stream.length));
  for (let pos = 0; pos < stream.length; pos += chunk) {
    const n = Math.min(chunk, stream.length - pos);
    stream.read(pos, n, buf);
    f(buf.subarray(0, n), pos);
  }
}
