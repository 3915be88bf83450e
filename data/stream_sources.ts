/**
 * The documents of a resolved source as a stream of text pieces, so that no file, however big,
 * is ever one JavaScript string (V8 refuses strings past about 512 MiB, and a whole corpus as
 * strings needs several times its size in memory).
 *
 * A document is one or more {@link DocPiece}s, the final one with `last: true`; joined, the
 * pieces of a document are exactly the string `readDocuments` (`readers.ts`, the in-memory
 * reader) gives for it. Formats:
 * - text (`.txt`, `.text`): one document per file, read `chunkBytes` at a time. A big document
 *   is cut into pieces of about `chunkBytes` UTF-16 units, only where the cut cannot change a
 *   regex pre-tokeniser's split: right after a `\n` that has a non-space character on both
 *   sides (the `\n` is then a pre-token of its own in GPT-2's, LLaMA-3's and Qwen's patterns,
 *   with or without what follows). Where no such line end comes within 4 × `chunkBytes`, the
 *   cut falls before a single space between two non-space characters (a word boundary those
 *   patterns also split at), and failing that anywhere outside a surrogate pair (a run of
 *   4 MiB without a space). So GPT-2-style tokenisation of the pieces equals that of the whole
 *   document. A tokeniser that adds a prefix space to every text it encodes (SentencePiece's
 *   `add_dummy_prefix`, HF `Metaspace` with `prepend_scheme: always`) does see each cut: the
 *   line after it is encoded as if it began with a space (`▁The` instead of `The`), one token
 *   of difference per cut, i.e. about once per `chunkBytes` of a document longer than that;
 *   and a merge across the cut (a BPE without a pre-tokeniser) is not made.
 * - Project Gutenberg's header and footer (`gutenberg: true`) are cut while streaming: a first
 *   pass finds the `*** START OF` line, the second emits what follows until the `*** END OF`
 *   line, trimmed, as `stripGutenberg` does.
 * - JSONL (`.jsonl`, `.ndjson`): line by line, one document per line's `field`.
 * - Parquet: row group by row group, reading only that group's byte ranges of the one column.
 * - `.gz` and `.zst` after a text or JSONL extension: decompressed while streaming, by
 *   `node:zlib` (Deno's built-in gzip and zstd; gzip files of several members included, which
 *   `DecompressionStream` refuses).
 * - The built-in corpus: generated (it is small), one piece per document.
 *
 * UTF-8 is strict, as `text_file.ts` reads: the first bad byte is an error naming its value,
 * offset and line (offsets of a compressed file count its decompressed bytes). Empty
 * documents are skipped. Errors end the stream as a `Left`; they are found as the stream
 * reaches them, so a JSON error on line 5 is reported before a bad UTF-8 byte on line 900
 * (the in-memory reader checks all of the UTF-8 first).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { parquetMetadataAsync, parquetRead, parquetSchema } from "hyparquet";
import { parquetFileBuffer } from "./_parquet_buffer.ts";
import { Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import {
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
  ioFailed,
} from "../base/mod.ts";
import { builtinCorpus } from "./builtin_corpus.ts";
import type { ResolvedBuiltin, ResolvedFile, ResolvedUnit } from "./sources.ts";
import { firstBadUtf8, notRegularFile } from "./text_file.ts";

/** A stretch of a document's text; `last` marks the document's final piece. */
export interface DocPiece {
  /** The text (never empty, except a final piece after a cut inside trailing space). */
  readonly text: string;
  /** True on the final piece of a document. */
  readonly last: boolean;
}

/** How {@link streamDocuments} reads. */
export interface StreamDocumentsOptions {
  /**
   * Bytes read from a file at a time, and the size in UTF-16 units at which a text document
   * is cut into pieces (default {@link DEFAULT_CHUNK_BYTES}); tests force it tiny.
   */
  readonly chunkBytes?: number;
  /** Called with the number of source bytes read (from disk, compressed) since the last call. */
  readonly onBytes?: (bytes: number) => void;
}

/** The default read size and piece size: 1 MiB. */
export const DEFAULT_CHUNK_BYTES: number = 1 << 20;

/** How a file's bytes are compressed, by its name's last suffix. */
export type Compression = "none" | "gzip" | "zstd";

/**
 * The compression a file name says: `.gz` gzip, `.zst` zstd, else none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressionOf } from "./stream_sources.ts";
 * assert(compressionOf("a.jsonl.zst") === "zstd" && compressionOf("b.txt") === "none");
 * ```
 */
export function compressionOf(path: string): Compression {
  const lower = path.toLowerCase();
  return lower.endsWith(".gz") ? "gzip" : lower.endsWith(".zst") ? "zstd" : "none";
}

/** Thrown inside the generators, turned into a `Left` at the one public door. */
class SourceFailure {
  constructor(readonly error: FileError) {}
}

/** Reads until `buf` is full or the file ends; the count read. */
async function readFull(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const n = await file.read(buf.subarray(done));
    if (n === null) break;
    done += n;
  }
  return done;
}

async function* rawChunks(
  file: Deno.FsFile,
  size: number,
  onBytes: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  while (true) {
    const buf = new Uint8Array(size);
    const n = await readFull(file, buf);
    if (n > 0) {
      onBytes(n);
      yield buf.subarray(0, n);
    }
    if (n < size) return;
  }
}

/** Splits decompressed output so no chunk exceeds `size` (tests force tiny chunks). */
function* rechunk(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/**
 * A file's bytes (decompressed when its name says so), `size` at most at a time. A missing file
 * or one that is not a regular file is refused before it is opened.
 */
async function* fileBytes(
  path: string,
  size: number,
  onBytes: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  let file: Deno.FsFile;
  try {
    const refused = notRegularFile(path, await Deno.stat(path));
    if (refused !== undefined) throw new SourceFailure(refused);
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof SourceFailure) throw e;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : describeUnknown(e);
    throw new SourceFailure(ioFailed(path, why));
  }
  try {
    const compression = compressionOf(path);
    if (compression === "none") {
      yield* rawChunks(file, size, onBytes);
      return;
    }
    // Compressed reads use a large raw chunk whatever `size` is: only the output is re-cut.
    const source = Readable.from(rawChunks(file, Math.max(size, 1 << 16), onBytes));
    const inflate = compression === "gzip" ? createGunzip() : createZstdDecompress();
    source.on("error", (e) => inflate.destroy(e));
    source.pipe(inflate);
    try {
      for await (const out of inflate) yield* rechunk(out as Uint8Array, size);
    } catch (e) {
      throw new SourceFailure(
        contentInvalid(path, `not a valid ${compression} file: ${describeUnknown(e)}`),
      );
    } finally {
      source.destroy();
      inflate.destroy();
    }
  } finally {
    file.close();
  }
}

/** Where the last complete UTF-8 sequence of `b` ends (an incomplete tail waits for more). */
function completeEnd(b: Uint8Array): number {
  const n = b.length;
  for (let i = n - 1; i >= 0 && i >= n - 4; i--) {
    const x = b[i]!;
    if ((x & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = x < 0xc0 ? 1 : x < 0xe0 ? 2 : x < 0xf0 ? 3 : 4;
    return i + need > n ? i : n;
  }
  return n;
}

function countNewlines(b: Uint8Array): number {
  let count = 0;
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) count++;
  return count;
}

/** The `text_file.ts` message for the first bad byte of `bytes`, placed in the whole stream. */
function badUtf8(
  bytes: Uint8Array,
  path: string,
  offset: number,
  line: number,
  compressed: boolean,
): SourceFailure {
  const bad = firstBadUtf8(bytes);
  const at = bad === undefined
    ? ""
    : `: byte 0x${bad.byte.toString(16).toUpperCase().padStart(2, "0")} at offset ${
      offset + bad.offset
    }${compressed ? " of the decompressed text" : ""} (line ${line + bad.line - 1})`;
  return new SourceFailure(contentInvalid(path, `not valid UTF-8${at}; save the file as UTF-8`));
}

/**
 * Strict UTF-8 text of a byte stream, cut only between code points; a leading byte-order mark
 * is dropped, as `TextDecoder` drops it from a whole file.
 */
async function* utf8Text(
  bytes: AsyncIterable<Uint8Array>,
  path: string,
): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const compressed = compressionOf(path) !== "none";
  let carry = new Uint8Array(0);
  let offset = 0; // bytes before `carry`
  let line = 1; // line at the start of `carry`
  let started = false;
  for await (const chunk of bytes) {
    let buf = chunk;
    if (carry.length > 0) {
      buf = new Uint8Array(carry.length + chunk.length);
      buf.set(carry);
      buf.set(chunk, carry.length);
    }
    const cut = completeEnd(buf);
    const part = buf.subarray(0, cut);
    let text: string;
    try {
      text = decoder.decode(part);
    } catch {
      throw badUtf8(part, path, offset, line, compressed);
    }
    offset += cut;
    line += countNewlines(part);
    carry = buf.slice(cut);
    if (!started && text.length > 0) {
      started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length > 0) yield text;
  }
  if (carry.length > 0) throw badUtf8(carry, path, offset, line, compressed);
}

/** `\r\n` and lone `\r` as `\n`, as `readers.ts` normalises a text file (a `\r` may end a chunk). */
async function* unixNewlines(text: AsyncIterable<string>): AsyncGenerator<string> {
  let cr = false;
  for await (const chunk of text) {
    let s: string = cr ? "\r" + chunk : chunk;
    cr = s.endsWith("\r");
    if (cr) s = s.slice(0, -1);
    const t = s.replace(/\r\n?/g, "\n");
    if (t.length > 0) yield t;
  }
  if (cr) yield "\n";
}

const SPACE = /\s/;

function isSpace(s: string, i: number): boolean {
  return SPACE.test(s[i]!);
}

/**
 * Where to cut `buf` (longer than `target`) into a piece of at least `target` units, or
 * `undefined` to wait for more text: after a `\n` with non-space on both sides; past 4 × target
 * without one, before a space between non-spaces; failing that, at `target` (outside a
 * surrogate pair).
 */
function cutAt(buf: string, target: number): number | undefined {
  const n = buf.length;
  for (let i = buf.indexOf("\n", Math.max(target - 1, 1)); i >= 0 && i + 1 < n;) {
    if (!isSpace(buf, i - 1) && !isSpace(buf, i + 1)) return i + 1;
    i = buf.indexOf("\n", i + 1);
  }
  if (n < 4 * target) return undefined;
  for (let i = buf.indexOf(" ", Math.max(target, 1)); i >= 0 && i + 1 < n;) {
    if (!isSpace(buf, i - 1) && !isSpace(buf, i + 1)) return i;
    i = buf.indexOf(" ", i + 1);
  }
  const low = buf.charCodeAt(target);
  return low >= 0xdc00 && low <= 0xdfff ? target + 1 : target;
}

/** One document's text as pieces of about `target` units (see {@link cutAt}). */
async function* documentPieces(
  text: AsyncIterable<string>,
  target: number,
): AsyncGenerator<DocPiece> {
  let buf = "";
  let emitted = false;
  for await (const chunk of text) {
    buf += chunk;
    while (buf.length > target) {
      const p = cutAt(buf, target);
      if (p === undefined) break;
      yield { text: buf.slice(0, p), last: false };
      emitted = true;
      buf = buf.slice(p);
    }
  }
  if (buf.length > 0 || emitted) yield { text: buf, last: true };
}

const START_MARKERS = ["*** START OF", "***START OF"];
const END_MARKERS = ["*** END OF", "***END OF"];
/** `stripGutenberg`'s `^` in multiline mode: a line starts after `\n`, U+2028 or U+2029. */
const START_LINE = /[\n\u2028\u2029]\*\*\* ?START OF[^\n]*\n/;
const END_LINE = /[\n\u2028\u2029]\*\*\* ?END OF/;
const LINE_BREAK = /[\n\u2028\u2029]/g;

/** Whether `rest`, the text after a line start, may still become one of `markers`. */
function mayBecome(rest: string, markers: readonly string[]): boolean {
  return markers.some((m) => rest.length >= m.length ? rest.startsWith(m) : m.startsWith(rest));
}

/** Index of the last line break of `s` at or after `from`, or -1. */
function lastBreak(s: string, from: number): number {
  let last = -1;
  LINE_BREAK.lastIndex = Math.max(from, 0);
  for (let m = LINE_BREAK.exec(s); m !== null; m = LINE_BREAK.exec(s)) last = m.index;
  return last;
}

/**
 * Offset (in UTF-16 units of the normalised text) just past the first `*** START OF` line, or
 * `undefined` when there is none. Holds only a line that may still be that line.
 */
async function gutenbergStart(text: AsyncIterable<string>): Promise<number | undefined> {
  let window = "\n"; // a line starts at the top of the file
  let base = -1; // offset of window[0] in the text
  for await (const chunk of text) {
    window += chunk;
    const m = START_LINE.exec(window);
    if (m !== null) return base + m.index + m[0].length;
    // An unmatched start line can only still be open after the last `\n`.
    let keep = window.length;
    LINE_BREAK.lastIndex = Math.max(window.lastIndexOf("\n"), 0);
    for (let b = LINE_BREAK.exec(window); b !== null; b = LINE_BREAK.exec(window)) {
      if (mayBecome(window.slice(b.index + 1, b.index + 13), START_MARKERS)) {
        keep = b.index;
        break;
      }
    }
    base += keep;
    window = window.slice(keep);
  }
  return undefined;
}

/**
 * The body of a Gutenberg book from offset `from` up to the `*** END OF` line, trimmed as
 * `stripGutenberg` trims it: leading space dropped, trailing space held back until more text
 * follows it.
 */
async function* gutenbergBody(
  text: AsyncIterable<string>,
  from: number,
): AsyncGenerator<string> {
  let skip = from;
  let window = "\n"; // window[0]: the character before the unsent text (a line starts at `from`)
  let started = false;
  let held = "";
  const out: string[] = [];
  const send = (s: string): void => {
    if (!started) {
      s = s.trimStart();
      if (s.length === 0) return;
      started = true;
    }
    const body = s.trimEnd();
    if (body.length === 0) {
      held += s;
      return;
    }
    out.push(held + body);
    held = s.slice(body.length);
  };
  for await (let chunk of text) {
    if (skip > 0) {
      if (chunk.length <= skip) {
        skip -= chunk.length;
        continue;
      }
      chunk = chunk.slice(skip);
      skip = 0;
    }
    window += chunk;
    const end = END_LINE.exec(window);
    if (end !== null) {
      send(window.slice(1, end.index + 1));
      yield* out.splice(0);
      return;
    }
    // Only the last line can still turn out to be the end line.
    const b = lastBreak(window, 0);
    if (b >= 0 && mayBecome(window.slice(b + 1), END_MARKERS)) {
      send(window.slice(1, b + 1));
      window = window.slice(b);
    } else {
      send(window.slice(1));
      window = window.slice(-1);
    }
    yield* out.splice(0);
  }
  send(window.slice(1));
  yield* out.splice(0);
}

/** A text file: one document, cut into pieces; Gutenberg's header and footer cut if asked. */
async function* textPieces(
  file: ResolvedFile,
  size: number,
  onBytes: (n: number) => void,
): AsyncGenerator<DocPiece> {
  const text = () => unixNewlines(utf8Text(fileBytes(file.path, size, onBytes), file.path));
  if (!file.gutenberg) {
    yield* documentPieces(text(), size);
    return;
  }
  // The first pass finds where the body starts; its bytes are not counted twice.
  const first = unixNewlines(utf8Text(fileBytes(file.path, size, () => {}), file.path));
  const from = await gutenbergStart(first);
  yield* documentPieces(gutenbergBody(text(), from ?? 0), size);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** JSONL: every non-blank line a JSON object whose `field` is a string (as `readers.ts`). */
async function* jsonlPieces(
  file: ResolvedFile,
  size: number,
  onBytes: (n: number) => void,
): AsyncGenerator<DocPiece> {
  let line = 0;
  const parse = (raw: string): DocPiece | undefined => {
    line++;
    const trimmed = raw.trim();
    if (trimmed === "") return undefined;
    let record: unknown;
    try {
      record = JSON.parse(trimmed);
    } catch (e) {
      throw new SourceFailure(
        contentInvalid(file.path, `Line ${line} is not valid JSON: ${describeUnknown(e)}`),
      );
    }
    const value = isRecord(record) ? record[file.field] : undefined;
    if (typeof value !== "string") {
      const why = isRecord(record) && file.field in record ? "is not a string" : "is missing";
      throw new SourceFailure(
        contentInvalid(file.path, `Line ${line}: field "${file.field}" ${why}`),
      );
    }
    return value.length > 0 ? { text: value, last: true } : undefined;
  };
  let partial: string[] = []; // the line not yet ended, in parts (a long line spans chunks)
  for await (const chunk of utf8Text(fileBytes(file.path, size, onBytes), file.path)) {
    let from = 0;
    for (let nl = chunk.indexOf("\n"); nl >= 0; nl = chunk.indexOf("\n", from)) {
      partial.push(chunk.slice(from, nl));
      const doc = parse(partial.join(""));
      partial = [];
      if (doc !== undefined) yield doc;
      from = nl + 1;
    }
    if (from < chunk.length) partial.push(chunk.slice(from));
  }
  const doc = parse(partial.join(""));
  if (doc !== undefined) yield doc;
}

/** Parquet: the string column `field`, row group by row group, one document per row. */
async function* parquetPieces(
  file: ResolvedFile,
  onBytes: (n: number) => void,
): AsyncGenerator<DocPiece> {
  if (compressionOf(file.path) !== "none") {
    throw new SourceFailure(
      contentInvalid(
        file.path,
        "a compressed Parquet file cannot be read row group by row group; decompress it " +
          "(Parquet compresses its columns itself)",
      ),
    );
  }
  const handle = await Deno.open(file.path, { read: true });
  try {
    const buffer = parquetFileBuffer(handle, (await handle.stat()).size, onBytes);
    // hyparquet's default first read is the file's last 512 KiB; the footer is usually far
    // smaller, and a bigger one is fetched in a second read.
    const metadata = await parquetMetadataAsync(buffer, { initialFetchSize: 1 << 16 });
    const columns = parquetSchema(metadata).children.map((c) => c.element.name);
    if (!columns.includes(file.field)) {
      throw new SourceFailure(
        contentInvalid(
          file.path,
          `Column "${file.field}" not found (columns: ${columns.join(", ")})`,
        ),
      );
    }
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      const groupEnd = groupStart + Number(group.num_rows);
      let rows: unknown[][] = [];
      // A row range inside one group makes hyparquet fetch only that group's column chunk.
      await parquetRead({
        file: buffer,
        metadata,
        columns: [file.field],
        rowStart: groupStart,
        rowEnd: groupEnd,
        onComplete: (r: unknown[][]) => {
          rows = r;
        },
      });
      for (let i = 0; i < rows.length; i++) {
        const value = rows[i]![0];
        if (typeof value !== "string") {
          throw new SourceFailure(
            contentInvalid(
              file.path,
              `Row ${groupStart + i}: column "${file.field}" is not a string`,
            ),
          );
        }
        if (value.length > 0) yield { text: value, last: true };
      }
      groupStart = groupEnd;
    }
  } finally {
    handle.close();
  }
}

/** The built-in corpus's documents (generated in memory: it is small). */
function builtinDocuments(unit: ResolvedBuiltin): readonly string[] {
  return builtinCorpus({
    seed: unit.seed,
    ...(unit.documents === undefined ? {} : { documents: unit.documents }),
    ...(unit.bytes === undefined ? {} : { bytes: unit.bytes }),
  }).documents;
}

/**
 * The bytes a unit holds: a file's size on disk, the built-in corpus's UTF-8 size (generated
 * to count it). The total a progress line measures reading against.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unitBytes } from "./stream_sources.ts";
 * assert(unitBytes({ kind: "builtin", seed: 1, documents: 3, version: 1 }) > 0);
 * ```
 */
export function unitBytes(unit: ResolvedUnit): number {
  if (unit.kind === "file") return unit.size;
  const encoder = new TextEncoder();
  return builtinDocuments(unit).reduce((s, d) => s + encoder.encode(d).length, 0);
}

/**
 * The documents of one resolved source as pieces (see the module doc), in source order; a
 * failure ends the stream with a `Left` naming the file (and line, row or byte offset).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { streamDocuments } from "./stream_sources.ts";
 * const pieces: string[] = [];
 * for await (const p of streamDocuments({ kind: "builtin", seed: 1, documents: 2, version: 1 })) {
 *   if (p._tag === "Right" && p.right.last) pieces.push(p.right.text);
 * }
 * assert(pieces.length === 2);
 * ```
 */
export async function* streamDocuments(
  unit: ResolvedUnit,
  options: StreamDocumentsOptions = {},
): AsyncGenerator<ext.Either<FileError, DocPiece>> {
  const size = Math.max(1, Math.floor(options.chunkBytes ?? DEFAULT_CHUNK_BYTES));
  const onBytes = options.onBytes ?? (() => {});
  if (unit.kind === "builtin") {
    const encoder = new TextEncoder();
    for (const d of builtinDocuments(unit)) {
      onBytes(encoder.encode(d).length);
      if (d.length > 0) yield E.right({ text: d, last: true });
    }
    return;
  }
  try {
    const pieces = unit.format === "text"
      ? textPieces(unit, size, onBytes)
      : unit.format === "jsonl"
      ? jsonlPieces(unit, size, onBytes)
      : parquetPieces(unit, onBytes);
    for await (const p of pieces) yield E.right(p);
  } catch (e) {
    yield E.left(
      e instanceof SourceFailure
        ? e.error
        : ioFailed(unit.path, `Cannot read ${unit.format} file: ${describeUnknown(e)}`),
    );
  }
}
