/**
 * Tokenised documents in memory: a small corpus read without a cache directory (tests, a
 * library caller). The on-disk cache is token shards (`shard_build.ts` writes them,
 * `shard_set.ts` reads them), which replaced the single-file cache this module once held.
 *
 * @module
 */
import { encodeDocument, type Tokenizer } from "./tokenizer.ts";

/** Token ids in memory: uint16 when the vocabulary has at most 65,536 ids. */
export type TokenArray = Uint16Array | Int32Array;

/** Documents as one stream, each followed by end-of-text; `docEnds[i]` is the end (exclusive) of document i. */
export interface TokenizedDocs {
  /** Every document's tokens, each followed by the end-of-text id. */
  readonly tokens: TokenArray;
  /** End (exclusive) of each document in `tokens`, its end-of-text included. */
  readonly docEnds: Uint32Array;
}

function allocTokens(n: number, vocabSize: number): TokenArray {
  return vocabSize <= 65536 ? new Uint16Array(n) : new Int32Array(n);
}

/**
 * Tokenises documents into one stream, each as training packs it: `[bos] + ids + [eot]` (BOS
 * only for a tokeniser that has one), as the token shards hold them.
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
  const parts = documents.map((d) => encodeDocument(tokenizer, d));
  const tokens = allocTokens(parts.reduce((s, p) => s + p.length, 0), tokenizer.vocabSize);
  const docEnds = new Uint32Array(parts.length);
  let at = 0;
  parts.forEach((p, i) => {
    tokens.set(p, at);
    at += p.length;
    docEnds[i] = at;
  });
  return { tokens, docEnds };
}
