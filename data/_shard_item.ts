/**
 * A work item of the shard builder and its encoding, shared by the builder (one worker: in
 * process) and `tokenize_worker.ts` (several), so both make the same tokens: pieces of
 * documents in source order, each encoded alone; BOS before a document's first piece when the
 * tokeniser has one, EOS after its last.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { ConfigInvalid, ext, FileError } from "../base/mod.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";

/** Pieces of documents, in order; `flags[i]` bit 0: piece i starts a document, bit 1: ends one. */
export interface WorkItem {
  readonly texts: readonly string[];
  readonly flags: Uint8Array;
}

/** Flag bit: the piece is its document's first. */
export const FIRST = 1;
/** Flag bit: the piece is its document's last. */
export const LAST = 2;

/** An encoded item: its tokens, and where each document that ends in it ends (item-relative). */
export interface EncodedItem {
  readonly tokens: Uint16Array<ArrayBuffer> | Uint32Array<ArrayBuffer>;
  readonly ends: Float64Array<ArrayBuffer>;
}

/** What a worker needs to know of the tokeniser beside its spec. */
export interface TokenizerFacts {
  readonly name: string;
  readonly vocabSize: number;
  readonly eot: number;
  readonly bos?: number;
}

/** Name, vocabulary size, EOS and BOS of a tokeniser: what the cache key and workers check. */
export function factsOf(t: Tokenizer): TokenizerFacts {
  const bos = t.bos;
  return {
    name: t.name,
    vocabSize: t.vocabSize,
    eot: t.eot,
    ...(bos === undefined ? {} : { bos }),
  };
}

/** The tokeniser a spec names: `bytes`, `gpt2`, or a path to a `tokenizer.json` or its folder. */
export function loadTokenizerSpec(
  spec: string,
): ext.TaskEither<FileError | ConfigInvalid, Tokenizer> {
  return loadTokenizer(spec);
}

/**
 * What the built-in tokenisers' specs load, known without loading their tables (a worker that
 * loads anything else is refused: `shard_build.ts` compares).
 */
export const BUILTIN_FACTS: Readonly<Record<string, TokenizerFacts>> = {
  bytes: { name: "bytes", vocabSize: 257, eot: 256 },
  gpt2: { name: "gpt2-r50k_base", vocabSize: 50257, eot: 50256 },
};

/**
 * Encodes an item: each piece alone, BOS before a first piece (when the tokeniser has one),
 * EOS after a last one; ids stored as uint32 when `wide`, else uint16. An id outside the
 * vocabulary is an error (it would be stored wrapped).
 */
export function encodeItem(
  t: Tokenizer,
  item: WorkItem,
  wide: boolean,
): ext.Either<string, EncodedItem> {
  const bos = t.bos;
  const parts = item.texts.map((s) => t.encode(s));
  let total = 0;
  let docs = 0;
  for (let i = 0; i < parts.length; i++) {
    const f = item.flags[i]!;
    total += parts[i]!.length + ((f & FIRST) && bos !== undefined ? 1 : 0) + (f & LAST ? 1 : 0);
    if (f & LAST) docs++;
  }
  const tokens = wide ? new Uint32Array(total) : new Uint16Array(total);
  const ends = new Float64Array(docs);
  let at = 0;
  let d = 0;
  for (let i = 0; i < parts.length; i++) {
    const f = item.flags[i]!;
    const ids = parts[i]!;
    if ((f & FIRST) && bos !== undefined) tokens[at++] = bos;
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k]!;
      if (!(id >= 0 && id < t.vocabSize)) {
        return E.left(
          `tokenizer ${t.name} gave id ${id}, outside its vocabulary of ${t.vocabSize}`,
        );
      }
    }
    tokens.set(ids, at);
    at += ids.length;
    if (f & LAST) {
      tokens[at++] = t.eot;
      ends[d++] = at;
    }
  }
  return E.right({ tokens, ends });
}

/** Messages from the builder to a worker. */
export type ToWorker =
  | { readonly kind: "init"; readonly spec: string }
  | { readonly kind: "encode"; readonly id: number; readonly item: WorkItem };

/** Messages from a worker to the builder. */
export type FromWorker =
  | { readonly kind: "ready"; readonly facts: TokenizerFacts }
  | { readonly kind: "encoded"; readonly id: number; readonly item: EncodedItem }
  | { readonly kind: "failed"; readonly id: number; readonly message: string }
  | { readonly kind: "unloaded"; readonly error: FileError | ConfigInvalid };
