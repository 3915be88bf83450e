/**
 * Tokenised documents, and their on-disk cache so a second run does not
 * tokenise again.
 *
 * A cache entry is `<dir>/<hash>.bin` (the token ids, uint16 when the
 * vocabulary fits, else int32, little-endian; then each document's end offset
 * as uint32) and `<dir>/<hash>.json` (a small description). The hash is the
 * SHA-256 of the key: tokeniser (name, vocabulary, end-of-text id), every
 * source file's absolute path, size, modification time and reader options
 * (or the built-in corpus parameters), and the cache format version. Both
 * files are written atomically, the `.json` last, so an entry with a `.json`
 * is complete; an entry that fails any check is ignored and rebuilt.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import { describeUnknown, type ext, type FileError, ioFailed } from "../base/mod.ts";
import { writeFileAtomic } from "../store/mod.ts";
import { readDocuments } from "./readers.ts";
import type { ResolvedUnit } from "./sources.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** Token ids in memory: uint16 when the vocabulary has at most 65,536 ids. */
export type TokenArray = Uint16Array | Int32Array;

/** Documents as one stream, each followed by end-of-text; `docEnds[i]` is the end (exclusive) of document i. */
export interface TokenizedDocs {
  /** Every document's tokens, each followed by the end-of-text id. */
  readonly tokens: TokenArray;
  /** End (exclusive) of each document in `tokens`, its end-of-text included. */
  readonly docEnds: Uint32Array;
}

/** Version of the cache layout; part of the key. */
export const TOKEN_CACHE_VERSION = 1;

function allocTokens(n: number, vocabSize: number): TokenArray {
  return vocabSize <= 65536 ? new Uint16Array(n) : new Int32Array(n);
}

/**
 * Tokenises documents into one stream, appending end-of-text after each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenizeDocuments } from "./token_cache.ts";
 * import { byteTokenizer } from "./tokenizer.ts";
 * const d = tokenizeDocuments(["ab", "c"], byteTokenizer());
 * assert(Array.from(d.tokens).join() === "97,98,256,99,256" && d.docEnds[0] === 3);
 * ```
 */
export function tokenizeDocuments(
  documents: readonly string[],
  tokenizer: Tokenizer,
): TokenizedDocs {
  const parts = documents.map((d) => tokenizer.encode(d));
  const total = parts.reduce((s, p) => s + p.length + 1, 0);
  const tokens = allocTokens(total, tokenizer.vocabSize);
  const docEnds = new Uint32Array(parts.length);
  let at = 0;
  parts.forEach((p, i) => {
    tokens.set(p, at);
    at += p.length;
    tokens[at++] = tokenizer.eot;
    docEnds[i] = at;
  });
  return { tokens, docEnds };
}

/** The cache key: everything that determines the tokens. */
export function cacheKey(units: readonly ResolvedUnit[], tokenizer: Tokenizer): string {
  return JSON.stringify({
    cache: TOKEN_CACHE_VERSION,
    tokenizer: { name: tokenizer.name, vocabSize: tokenizer.vocabSize, eot: tokenizer.eot },
    units,
  });
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

interface CacheMeta {
  readonly format: "step-token-cache";
  readonly key: string;
  readonly dtype: "uint16" | "int32";
  readonly tokens: number;
  readonly documents: number;
}

/** Byte offset of the document table in the `.bin`: after the tokens, aligned to 4. */
function docTableOffset(tokenBytes: number): number {
  return Math.ceil(tokenBytes / 4) * 4;
}

function hostIsLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

async function readEntry(base: string, key: string): Promise<TokenizedDocs | undefined> {
  let meta: CacheMeta;
  try {
    meta = JSON.parse(await Deno.readTextFile(`${base}.json`));
  } catch {
    return undefined; // no entry (or an unreadable one): rebuild
  }
  if (meta.format !== "step-token-cache" || meta.key !== key) return undefined;
  const width = meta.dtype === "uint16" ? 2 : 4;
  const tableAt = docTableOffset(meta.tokens * width);
  let bin: Uint8Array;
  try {
    bin = await Deno.readFile(`${base}.bin`);
  } catch {
    return undefined;
  }
  if (bin.byteLength !== tableAt + meta.documents * 4 || bin.byteOffset !== 0) return undefined;
  const tokens = meta.dtype === "uint16"
    ? new Uint16Array(bin.buffer, 0, meta.tokens)
    : new Int32Array(bin.buffer, 0, meta.tokens);
  return { tokens, docEnds: new Uint32Array(bin.buffer, tableAt, meta.documents) };
}

function entryBytes(docs: TokenizedDocs): Uint8Array {
  const tokenBytes = docs.tokens.byteLength;
  const tableAt = docTableOffset(tokenBytes);
  const out = new Uint8Array(tableAt + docs.docEnds.byteLength);
  out.set(new Uint8Array(docs.tokens.buffer, docs.tokens.byteOffset, tokenBytes), 0);
  out.set(
    new Uint8Array(docs.docEnds.buffer, docs.docEnds.byteOffset, docs.docEnds.byteLength),
    tableAt,
  );
  return out;
}

/** What {@link loadTokenized} did. */
export interface LoadedTokens {
  /** The tokens and where each document ends. */
  readonly docs: TokenizedDocs;
  /** True when the tokens came from the cache (nothing was read or tokenised). */
  readonly fromCache: boolean;
  /** The `.bin` of the cache entry, when caching is on. */
  readonly cacheFile?: string;
}

/** Where and whether to cache. */
export interface LoadTokenizedOptions {
  /** Cache directory; `undefined` turns caching off. */
  readonly cacheDir?: string;
}

/**
 * Tokenised documents of the units: from the cache when an entry with the same key exists,
 * else read, tokenised and (if caching is on) written to the cache.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenized } from "./token_cache.ts";
 * import { byteTokenizer } from "./tokenizer.ts";
 * const r = await loadTokenized([{ kind: "builtin", seed: 1, documents: 2, version: 1 }], byteTokenizer())();
 * assert(r._tag === "Right" && r.right.docs.docEnds.length === 2 && !r.right.fromCache);
 * ```
 */
export function loadTokenized(
  units: readonly ResolvedUnit[],
  tokenizer: Tokenizer,
  options: LoadTokenizedOptions = {},
): ext.TaskEither<FileError, LoadedTokens> {
  return async () => {
    const key = cacheKey(units, tokenizer);
    const base = options.cacheDir === undefined
      ? undefined
      : path.join(options.cacheDir, (await sha256Hex(key)).slice(0, 32));
    // The cache stores little-endian bytes straight from typed arrays.
    const cacheable = base !== undefined && hostIsLittleEndian();
    if (cacheable) {
      const hit = await readEntry(base, key);
      if (hit !== undefined) {
        return E.right({ docs: hit, fromCache: true, cacheFile: `${base}.bin` });
      }
    }
    const documents: string[] = [];
    for (const u of units) {
      const docs = await readDocuments(u)();
      if (E.isLeft(docs)) return docs;
      documents.push(...docs.right);
    }
    const docs = tokenizeDocuments(documents, tokenizer);
    if (!cacheable) return E.right({ docs, fromCache: false });
    try {
      await Deno.mkdir(options.cacheDir!, { recursive: true });
    } catch (e) {
      return E.left(
        ioFailed(options.cacheDir!, `Cannot create token cache directory: ${describeUnknown(e)}`),
      );
    }
    const meta: CacheMeta = {
      format: "step-token-cache",
      key,
      dtype: docs.tokens instanceof Uint16Array ? "uint16" : "int32",
      tokens: docs.tokens.length,
      documents: docs.docEnds.length,
    };
    const written = await TE.flatMap(
      writeFileAtomic(`${base}.bin`, entryBytes(docs)),
      () => writeFileAtomic(`${base}.json`, JSON.stringify(meta, null, 1)),
    )();
    if (E.isLeft(written)) return written;
    return E.right({ docs, fromCache: false, cacheFile: `${base}.bin` });
  };
}
