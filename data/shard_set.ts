/**
 * A tokenised corpus on disk, read without loading it: a directory of token shards
 * (`NNNNN.tok`, little-endian uint16 or uint32 ids, whole documents back to back in source
 * order) with their document tables (`NNNNN.docs`, little-endian float64: the end, exclusive and
 * counted within the shard, of each of its documents) and `manifest.json`, written last, which
 * makes the set complete. `data/shard_build.ts` writes a set; this module reads one.
 *
 * {@link openShardSet} checks every file's size against the manifest (a damaged set is a named
 * error: the caller rebuilds it) and the document tables against the token counts; tokens are
 * then read by positioned reads into the caller's buffer, so only the windows asked for are ever
 * in memory.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import {
  contentInvalid,
  decodeWith,
  describeUnknown,
  type ext,
  type FileError,
  ioFailed,
} from "../base/mod.ts";

/** The manifest's `format` field. */
export const SHARD_FORMAT = "step-token-shards";
/** The manifest's `version` this reader understands. */
export const SHARD_FORMAT_VERSION = 1;
/** The manifest's file name; it is written last, so a set is complete iff it exists. */
export const SHARD_MANIFEST = "manifest.json";

/** Width of a stored token id: uint16 iff the vocabulary has at most 65,536 ids. */
export const ShardDtype: ext.KeyofC<{ uint16: null; uint32: null }> = t.keyof({
  uint16: null,
  uint32: null,
});
/** See {@link ShardDtype}. */
export type ShardDtype = ext.TypeOf<typeof ShardDtype>;

/** The fields of one shard's entry in the manifest. */
export const SHARD_ENTRY_FIELDS = {
  /** The token file, a plain name inside the set's directory (`00000.tok`). */
  file: t.string,
  /** The document table, a plain name inside the set's directory (`00000.docs`). */
  docs: t.string,
  /** Tokens in the shard. */
  tokens: t.number,
  /** Documents in the shard. */
  documents: t.number,
};
/** One shard of a set: its two files and what they hold. */
export const ShardEntry: ext.ExactC<ext.TypeC<typeof SHARD_ENTRY_FIELDS>> = t.exact(
  t.type(SHARD_ENTRY_FIELDS),
);
/** See {@link ShardEntry}. */
export type ShardEntry = ext.TypeOf<typeof ShardEntry>;

/** The fields of `manifest.json`. */
export const SHARD_MANIFEST_FIELDS = {
  /** Always {@link SHARD_FORMAT}. */
  format: t.keyof({ [SHARD_FORMAT]: null }),
  /** The layout's version ({@link SHARD_FORMAT_VERSION}). */
  version: t.number,
  /** The cache key the directory's name is the hash of (tokeniser, sources, format version). */
  key: t.string,
  /** The tokeniser's name. */
  tokenizer: t.string,
  /** The tokeniser's vocabulary size: every id is below it. */
  vocabSize: t.number,
  /** The end-of-document id closing every document. */
  eot: t.number,
  /** How ids are stored. */
  dtype: ShardDtype,
  /** Tokens in the whole set. */
  tokens: t.number,
  /** Documents in the whole set. */
  documents: t.number,
  /** Bytes of source data tokenised. */
  sourceBytes: t.number,
  /** The shards, in source order. */
  shards: t.array(ShardEntry),
};
/** Codec of `manifest.json` (unknown fields are dropped, so a reader ignores later additions). */
export const ShardManifest: ext.ExactC<ext.TypeC<typeof SHARD_MANIFEST_FIELDS>> = t.exact(
  t.type(SHARD_MANIFEST_FIELDS),
);
/** A shard set's manifest: see {@link ShardManifest}. */
export type ShardManifest = ext.TypeOf<typeof ShardManifest>;

/** Bytes per stored id. */
export function dtypeBytes(dtype: ShardDtype): 2 | 4 {
  return dtype === "uint16" ? 2 : 4;
}

/** An open shard set: its manifest, its document table, and reads of its tokens. */
export interface ShardSet {
  /** The set's directory. */
  readonly dir: string;
  /** The manifest, checked against the files. */
  readonly manifest: ShardManifest;
  /** Absolute path of each shard's token file, in order. */
  readonly files: readonly string[];
  /** Global token offset of each shard's first token, then the total (`shards + 1` entries). */
  readonly shardStarts: Float64Array;
  /** End (exclusive) of every document in the whole set, as a global token offset. */
  readonly docEnds: Float64Array;
  /**
   * Copies tokens `[start, start + count)` of the whole set into `out` from index `at`
   * (default 0), crossing shard boundaries as needed. Throws a `RangeError` on a range outside
   * the set and the system's error when a file cannot be read (it was checked when opened).
   */
  read(start: number, count: number, out: Int32Array, at?: number): void;
}

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** A shard's file name must stay inside the set's directory. */
function isPlainName(name: string): boolean {
  return name.length > 0 && name !== "." && name !== ".." && !/[/\\]/.test(name);
}

/** The manifest's own inconsistencies (its totals, names and dtype), or undefined. */
export function manifestProblem(m: ShardManifest): string | undefined {
  if (m.version !== SHARD_FORMAT_VERSION) {
    return `version ${m.version} is not the version this program reads (${SHARD_FORMAT_VERSION})`;
  }
  for (const k of ["vocabSize", "eot", "tokens", "documents", "sourceBytes"] as const) {
    if (!isCount(m[k])) return `${k} must be a non-negative integer, got ${m[k]}`;
  }
  if (m.eot >= m.vocabSize) return `eot ${m.eot} is not below vocabSize ${m.vocabSize}`;
  const wide = m.vocabSize > 65536;
  if ((m.dtype === "uint32") !== wide) {
    return `dtype ${m.dtype} does not fit vocabSize ${m.vocabSize} (uint16 iff at most 65536)`;
  }
  let tokens = 0;
  let documents = 0;
  for (const [i, s] of m.shards.entries()) {
    if (!isPlainName(s.file) || !isPlainName(s.docs)) {
      return `shards[${i}]: file names must be plain names in the set's directory`;
    }
    if (!isCount(s.tokens) || !isCount(s.documents)) {
      return `shards[${i}]: tokens and documents must be non-negative integers`;
    }
    if ((s.tokens === 0) !== (s.documents === 0)) {
      return `shards[${i}]: ${s.tokens} tokens in ${s.documents} documents`;
    }
    tokens += s.tokens;
    documents += s.documents;
  }
  if (tokens !== m.tokens || documents !== m.documents) {
    return `the shards hold ${tokens} tokens in ${documents} documents, the totals say ` +
      `${m.tokens} in ${m.documents}`;
  }
  return undefined;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** DataView's flag: the files are little-endian. */
const LE = true;

/** Reads exactly `bytes.length` bytes at `offset` of an open file. */
function readFully(file: Deno.FsFile, offset: number, bytes: Uint8Array): void {
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < bytes.length) {
    const n = file.readSync(bytes.subarray(done));
    if (n === null || n === 0) throw new RangeError(`unexpected end of file at ${offset + done}`);
    done += n;
  }
}

/** Little-endian float64 values of a whole (small) file. */
function float64s(bytes: Uint8Array): Float64Array {
  const n = bytes.length / 8;
  if (HOST_LITTLE_ENDIAN && bytes.byteOffset % 8 === 0) {
    return new Float64Array(bytes.buffer, bytes.byteOffset, n);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float64Array.from({ length: n }, (_, i) => view.getFloat64(i * 8, LE));
}

/** Widens little-endian ids in `bytes` into `out` from `at`. */
function decodeIds(bytes: Uint8Array, width: 2 | 4, out: Int32Array, at: number): void {
  const n = bytes.length / width;
  if (HOST_LITTLE_ENDIAN && bytes.byteOffset % width === 0) {
    // Ids are below the vocabulary size, so uint32 ids fit int32 unchanged.
    const ids = width === 2
      ? new Uint16Array(bytes.buffer, bytes.byteOffset, n)
      : new Int32Array(bytes.buffer, bytes.byteOffset, n);
    out.set(ids, at);
    return;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) {
    out[at + i] = width === 2 ? view.getUint16(i * 2, LE) : view.getUint32(i * 4, LE);
  }
}

/** Tokens per system read: bounds the scratch buffer of a large read. */
const CHUNK = 1 << 18;

/** The index of the segment holding `offset`, over ascending `starts` (`starts[0] = 0`). */
export function segmentAt(starts: ArrayLike<number>, offset: number): number {
  let lo = 0;
  let hi = starts.length - 1; // starts[hi] is the total: never a segment of its own
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Opens the shard set in `dir`: decodes `manifest.json`, checks that every shard's files have
 * the sizes the manifest gives and that every document table ends where its shard does. A
 * missing manifest is `IoFailed` (no complete set there); anything inconsistent is
 * `ContentInvalid` naming the file (the set is damaged: rebuild it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openShardSet } from "./shard_set.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/00000.tok`, new Uint8Array(new Uint16Array([7, 8, 256]).buffer));
 * await Deno.writeFile(`${dir}/00000.docs`, new Uint8Array(new Float64Array([3]).buffer));
 * await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify({
 *   format: "step-token-shards", version: 1, key: "k", tokenizer: "bytes", vocabSize: 257,
 *   eot: 256, dtype: "uint16", tokens: 3, documents: 1, sourceBytes: 2,
 *   shards: [{ file: "00000.tok", docs: "00000.docs", tokens: 3, documents: 1 }],
 * }));
 * const set = await openShardSet(dir)();
 * assert(set._tag === "Right");
 * const out = new Int32Array(2);
 * set.right.read(1, 2, out);
 * assert(out[0] === 8 && out[1] === 256);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function openShardSet(dir: string): ext.TaskEither<FileError, ShardSet> {
  return async () => {
    const manifestPath = path.join(dir, SHARD_MANIFEST);
    let json: unknown;
    try {
      json = JSON.parse(await Deno.readTextFile(manifestPath));
    } catch (e) {
      if (e instanceof SyntaxError) {
        return E.left(contentInvalid(manifestPath, `Not valid JSON: ${e.message}`));
      }
      return E.left(
        ioFailed(manifestPath, `Cannot read the shard manifest: ${describeUnknown(e)}`),
      );
    }
    const decoded = decodeWith(ShardManifest, json);
    if (E.isLeft(decoded)) {
      return E.left(
        contentInvalid(manifestPath, `Not a token shard manifest: ${decoded.left.join("; ")}`),
      );
    }
    const manifest = decoded.right;
    const problem = manifestProblem(manifest);
    if (problem !== undefined) {
      return E.left(contentInvalid(manifestPath, `Inconsistent shard manifest: ${problem}`));
    }
    const width = dtypeBytes(manifest.dtype);
    const files: string[] = [];
    const shardStarts = new Float64Array(manifest.shards.length + 1);
    const docEnds = new Float64Array(manifest.documents);
    let doc = 0;
    for (const [i, s] of manifest.shards.entries()) {
      const tok = path.join(dir, s.file);
      const docs = path.join(dir, s.docs);
      for (const [file, bytes] of [[tok, s.tokens * width], [docs, s.documents * 8]] as const) {
        let size: number;
        try {
          size = (await Deno.stat(file)).size;
        } catch (e) {
          return E.left(
            contentInvalid(file, `Damaged token shard set: cannot read ${describeUnknown(e)}`),
          );
        }
        if (size !== bytes) {
          return E.left(
            contentInvalid(
              file,
              `Damaged token shard set: the file has ${size} bytes, the manifest says ${bytes}`,
            ),
          );
        }
      }
      let table: Float64Array;
      try {
        table = float64s(await Deno.readFile(docs));
      } catch (e) {
        return E.left(ioFailed(docs, `Cannot read the document table: ${describeUnknown(e)}`));
      }
      const start = shardStarts[i]!;
      let previous = 0;
      for (let k = 0; k < table.length; k++) {
        const end = table[k]!;
        if (!(Number.isSafeInteger(end) && end > previous && end <= s.tokens)) {
          return E.left(
            contentInvalid(
              docs,
              `Damaged token shard set: document ${k} ends at ${end}, after ${previous} ` +
                `(the shard holds ${s.tokens} tokens)`,
            ),
          );
        }
        docEnds[doc++] = start + end;
        previous = end;
      }
      if (previous !== s.tokens) {
        return E.left(
          contentInvalid(
            docs,
            `Damaged token shard set: the documents end at ${previous}, the shard holds ${s.tokens} tokens`,
          ),
        );
      }
      files.push(tok);
      shardStarts[i + 1] = start + s.tokens;
    }
    // Reads are synchronous, so one growing scratch buffer serves every read of the set.
    let scratch = new Uint8Array(0);
    const scratchOf = (bytes: number): Uint8Array => {
      if (scratch.length < bytes) scratch = new Uint8Array(Math.max(bytes, scratch.length * 2));
      return scratch.subarray(0, bytes);
    };
    const read = (start: number, count: number, out: Int32Array, at = 0): void => {
      if (
        !(isCount(start) && isCount(count) && start + count <= manifest.tokens &&
          at + count <= out.length)
      ) {
        throw new RangeError(
          `cannot read tokens [${start}, ${
            start + count
          }) of ${manifest.tokens} into ${out.length}`,
        );
      }
      let shard = segmentAt(shardStarts, start);
      let pos = start;
      let to = at;
      const end = start + count;
      while (pos < end) {
        const shardEnd = shardStarts[shard + 1]!;
        const n = Math.min(end, shardEnd) - pos;
        if (n > 0) {
          // One open per read keeps no handle alive between calls: a stream can be dropped
          // without closing anything, and a read is a window or a large chunk, never a token.
          const file = Deno.openSync(files[shard]!, { read: true });
          try {
            for (let done = 0; done < n; done += CHUNK) {
              const k = Math.min(CHUNK, n - done);
              const bytes = scratchOf(k * width);
              readFully(file, (pos + done - shardStarts[shard]!) * width, bytes);
              decodeIds(bytes, width, out, to + done);
            }
          } finally {
            file.close();
          }
          pos += n;
          to += n;
        }
        shard++;
      }
    };
    return E.right({ dir, manifest, files, shardStarts, docEnds, read });
  };
}
