/**
 * Reading an input file as text, the one way every reader does it (corpora, Alpaca records,
 * MT-Bench questions, evaluation tasks and their definitions): what is not a regular file (a
 * FIFO, a socket, a device, a directory) is refused by name before it is opened, since a FIFO
 * blocks until a writer comes and a device such as `/dev/zero` never ends; bytes that are not
 * UTF-8 are an error naming the byte, its offset and its line, never silently replaced.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ContentInvalid,
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
  type IoFailed,
  ioFailed,
} from "../base/mod.ts";

function kindOf(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "neither a file nor a directory";
}

/**
 * The refusal of a path whose (followed) file info is not a regular file, or `undefined` for a
 * regular file; `expected` says what to give instead (default "a file").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { notRegularFile } from "./text_file.ts";
 * const e = notRegularFile("/dev/zero", Deno.statSync("/dev/zero"));
 * assert(e !== undefined && e.message.startsWith("not a regular file (a character device)"));
 * ```
 */
export function notRegularFile(
  path: string,
  info: Deno.FileInfo,
  expected = "a file",
): IoFailed | undefined {
  if (info.isFile) return undefined;
  return ioFailed(
    path,
    `not a regular file (${kindOf(info)}): only a regular file is read as data; give ${expected}`,
  );
}

/** Where the first byte sequence that is not UTF-8 starts. */
export interface BadUtf8 {
  /** 0-based byte offset. */
  readonly offset: number;
  /** 1-based line (newlines before the offset + 1). */
  readonly line: number;
  /** The value of the offending byte, 0–255. */
  readonly byte: number;
}

/** Length of the sequence a lead byte starts, and the range of its second byte. */
function sequenceOf(lead: number): { n: number; lo: number; hi: number } | undefined {
  if (lead < 0x80) return { n: 1, lo: 0, hi: 0 };
  if (lead >= 0xc2 && lead <= 0xdf) return { n: 2, lo: 0x80, hi: 0xbf };
  // Overlong forms (E0, F0) and surrogates (ED) and code points past U+10FFFF (F4) narrow the
  // second byte, as the WHATWG decoder does.
  if (lead >= 0xe0 && lead <= 0xef) {
    return { n: 3, lo: lead === 0xe0 ? 0xa0 : 0x80, hi: lead === 0xed ? 0x9f : 0xbf };
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    return { n: 4, lo: lead === 0xf0 ? 0x90 : 0x80, hi: lead === 0xf4 ? 0x8f : 0xbf };
  }
  return undefined;
}

function continues(
  bytes: Uint8Array,
  at: number,
  seq: { n: number; lo: number; hi: number },
): boolean {
  for (let k = 1; k < seq.n; k++) {
    const b = bytes[at + k];
    if (b === undefined || b < (k === 1 ? seq.lo : 0x80) || b > (k === 1 ? seq.hi : 0xbf)) {
      return false;
    }
  }
  return true;
}

/**
 * The first sequence of `bytes` that is not UTF-8, or `undefined` when all of it is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstBadUtf8 } from "./text_file.ts";
 * assert(firstBadUtf8(new TextEncoder().encode("café\n")) === undefined);
 * const bad = firstBadUtf8(new Uint8Array([0x61, 0x0a, 0x63, 0x61, 0x66, 0xe9, 0x0a]));
 * assert(bad?.offset === 5 && bad.line === 2 && bad.byte === 0xe9);
 * ```
 */
export function firstBadUtf8(bytes: Uint8Array): BadUtf8 | undefined {
  let line = 1;
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    const seq = sequenceOf(lead);
    if (seq === undefined || !continues(bytes, i, seq)) return { offset: i, line, byte: lead };
    if (lead === 0x0a) line++;
    i += seq.n;
  }
  return undefined;
}

/**
 * `bytes` as text (a leading byte-order mark dropped), or an error naming the first byte that is
 * not UTF-8: its value, offset and line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeUtf8 } from "./text_file.ts";
 * const bad = decodeUtf8(new Uint8Array([0x7b, 0x0a, 0xff]), "f.jsonl");
 * assert(bad._tag === "Left" && bad.left.message.startsWith("not valid UTF-8: byte 0xFF at offset 2 (line 2)"));
 * ```
 */
export function decodeUtf8(bytes: Uint8Array, path: string): ext.Either<ContentInvalid, string> {
  try {
    return E.right(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    const bad = firstBadUtf8(bytes);
    const at = bad === undefined
      ? ""
      : `: byte 0x${
        bad.byte.toString(16).toUpperCase().padStart(2, "0")
      } at offset ${bad.offset} (line ${bad.line})`;
    return E.left(contentInvalid(path, `not valid UTF-8${at}; save the file as UTF-8`));
  }
}

/**
 * Reads an input file as UTF-8 text: a missing file or something that is not a regular file is
 * `IoFailed` naming it (refused before it is opened), bytes that are not UTF-8 are
 * `ContentInvalid` naming the offset and line.
 *
 * @example
 * ```ts
 * import { readUtf8File } from "./text_file.ts";
 * const r = await readUtf8File("/dev/zero")();
 * console.assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function readUtf8File(path: string): ext.TaskEither<FileError, string> {
  return async () => {
    let bytes: Uint8Array;
    try {
      const refused = notRegularFile(path, await Deno.stat(path));
      if (refused !== undefined) return E.left(refused);
      bytes = await Deno.readFile(path);
    } catch (e) {
      return E.left(
        ioFailed(path, e instanceof Deno.errors.NotFound ? "no such file" : describeUnknown(e)),
      );
    }
    return decodeUtf8(bytes, path);
  };
}
