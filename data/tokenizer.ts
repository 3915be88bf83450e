/**
 * Tokenisers: GPT-2's byte-level BPE (`r50k_base`, the vocabulary the STEP
 * paper trains with: 50,257 ids, `<|endoftext|>` = 50256) and a plain byte
 * tokeniser for tiny models (ids 0–255 are UTF-8 bytes, 256 is end-of-text).
 *
 * Both treat text as text: a literal `<|endoftext|>` inside a document is
 * encoded as ordinary characters, so the only end-of-text ids in a stream are
 * the ones the packer inserts between documents.
 *
 * @module
 */
import * as t from "io-ts";
import * as TE from "fp-ts/lib/TaskEither.js";
import { describeUnknown, type ext, type IoFailed, ioFailed } from "../base/mod.ts";

/** Names of the built-in tokenisers; the codec a config decodes them with. */
export const TokenizerName: ext.KeyofC<{ gpt2: null; bytes: null }> = t.keyof({
  gpt2: null,
  bytes: null,
});
/** `"gpt2"` (r50k_base BPE) or `"bytes"` (UTF-8 bytes + end-of-text). */
export type TokenizerName = ext.TypeOf<typeof TokenizerName>;

/** The vocabulary size of each built-in tokeniser (known without loading its tables). */
export const TOKENIZER_VOCAB: Readonly<Record<TokenizerName, number>> = { gpt2: 50257, bytes: 257 };

/** What every tokeniser offers. Ids are small non-negative integers below `vocabSize`. */
export interface Tokenizer {
  /** Stable name, part of the token-cache key. */
  readonly name: string;
  /** Number of ids: every id is below it. */
  readonly vocabSize: number;
  /** The end-of-text id placed between documents. */
  readonly eot: number;
  /** Ids of `text`, with no end-of-text added. */
  encode(text: string): Int32Array;
  /** Text of the ids; `eot` appears as `<|endoftext|>`. */
  decode(ids: ArrayLike<number>): string;
}

/** The text GPT-2 prints for its end-of-text id; the byte tokeniser uses the same. */
export const EOT_TEXT = "<|endoftext|>";

/**
 * The byte tokeniser: vocab 257, ids 0–255 are the UTF-8 bytes, 256 is end-of-text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "./tokenizer.ts";
 * const tok = byteTokenizer();
 * assert(tok.decode(tok.encode("héllo")) === "héllo" && tok.encode("é").length === 2);
 * ```
 */
export function byteTokenizer(): Tokenizer {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  return {
    name: "bytes",
    vocabSize: 257,
    eot: 256,
    encode: (text) => Int32Array.from(encoder.encode(text)),
    decode: (ids) => {
      // Split at end-of-text so a document's bytes decode on their own.
      let out = "";
      let run: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        if (id === 256) {
          out += decoder.decode(new Uint8Array(run)) + EOT_TEXT;
          run = [];
        } else run.push(id);
      }
      return out + decoder.decode(new Uint8Array(run));
    },
  };
}

/**
 * GPT-2's tokeniser (`r50k_base` from `gpt-tokenizer`). The BPE tables are
 * loaded on first call (tens of milliseconds), not at import.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gpt2Tokenizer } from "./tokenizer.ts";
 * const r = await gpt2Tokenizer()();
 * if (r._tag === "Right") assert(r.right.eot === 50256 && r.right.encode("hello").length === 1);
 * ```
 */
export function gpt2Tokenizer(): ext.TaskEither<IoFailed, Tokenizer> {
  return TE.tryCatch(
    async () => {
      const bpe = await import("gpt-tokenizer/encoding/r50k_base");
      // An empty disallow list makes special-token strings plain text instead of an error.
      const options = { disallowedSpecial: new Set<string>() };
      return {
        name: "gpt2-r50k_base",
        vocabSize: bpe.vocabularySize,
        eot: 50256,
        encode: (text: string) => Int32Array.from(bpe.encode(text, options)),
        decode: (ids: ArrayLike<number>) => bpe.decode(Array.from(ids)),
      };
    },
    (e) => ioFailed("npm:gpt-tokenizer", `Cannot load the GPT-2 tokeniser: ${describeUnknown(e)}`),
  );
}

/**
 * The tokeniser a config names.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenizerFor } from "./tokenizer.ts";
 * const r = await tokenizerFor("bytes")();
 * assert(r._tag === "Right" && r.right.vocabSize === 257);
 * ```
 */
export function tokenizerFor(name: TokenizerName): ext.TaskEither<IoFailed, Tokenizer> {
  switch (name) {
    case "gpt2":
      return gpt2Tokenizer();
    case "bytes":
      return TE.right(byteTokenizer());
  }
}
