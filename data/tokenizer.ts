/**
 * Tokenisers: GPT-2's byte-level BPE (`r50k_base`, the vocabulary the STEP
 * paper trains with: 50,257 ids, `<|endoftext|>` = 50256), a plain byte
 * tokeniser for tiny models (ids 0–255 are UTF-8 bytes, 256 is end-of-text),
 * and any Hugging Face `tokenizer.json` ({@link loadTokenizer}).
 *
 * The two built-ins treat text as text: a literal `<|endoftext|>` inside a
 * document is encoded as ordinary characters, so the only end-of-text ids in a
 * stream are the ones the packer inserts between documents. Each can write
 * itself as HF files (`hfFiles()`) that load back to exactly its ids.
 *
 * @module
 */
import * as t from "io-ts";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  type ConfigInvalid,
  configInvalid,
  describeUnknown,
  type ext,
  type FileError,
  type IoFailed,
  ioFailed,
} from "../base/mod.ts";
import { loadHfTokenizer } from "./hf_tokenizer.ts";
import { byteTokenizerFiles, gpt2TokenizerFiles } from "./hf_tokenizer_files.ts";
import {
  EOT_TEXT,
  type HfTokenizerFiles,
  type Tokenizer,
  type TokenizerSpec,
} from "./tokenizer_types.ts";

export {
  EOT_TEXT,
  type HfTokenizerFiles,
  type Tokenizer,
  type TokenizerSpec,
} from "./tokenizer_types.ts";

/** Names of the built-in tokenisers; the codec a config decodes them with. */
export const TokenizerName: ext.KeyofC<{ gpt2: null; bytes: null }> = t.keyof({
  gpt2: null,
  bytes: null,
});
/** `"gpt2"` (r50k_base BPE) or `"bytes"` (UTF-8 bytes + end-of-text). */
export type TokenizerName = ext.TypeOf<typeof TokenizerName>;

/** The vocabulary size of each built-in tokeniser (known without loading its tables). */
export const TOKENIZER_VOCAB: Readonly<Record<TokenizerName, number>> = { gpt2: 50257, bytes: 257 };

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
  let files: HfTokenizerFiles | undefined;
  return {
    name: "bytes",
    spec: "bytes",
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
    hfFiles: () => files ??= byteTokenizerFiles(),
  };
}

/** Unicode's White_Space characters, as a regex class body (what tiktoken's `\s` means). */
const WHITE_SPACE = String.raw`\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000`;

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
      const { default: ranks } = await import("gpt-tokenizer/bpeRanks/r50k_base");
      const { BytePairEncodingCore } = await import("gpt-tokenizer/BytePairEncodingCore");
      // GPT-2's split pattern with Unicode's White_Space where gpt-tokenizer has JavaScript's \s
      // (which adds U+FEFF and leaves out U+0085): tiktoken and HF split by White_Space, and a
      // "\n\n\u0085" encoded 198,198,… here against their 628,… (found by the property test).
      const pieces = new RegExp(
        String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^${WHITE_SPACE}\p{L}\p{N}]+|` +
          String.raw`[${WHITE_SPACE}]+(?![^${WHITE_SPACE}])|[${WHITE_SPACE}]+`,
        "gu",
      );
      // No special tokens: a special token's text is plain text.
      const core = new BytePairEncodingCore({
        bytePairRankDecoder: ranks,
        specialTokensEncoder: new Map(),
        tokenSplitRegex: pieces,
      });
      // Each piece of the split pattern is encoded on its own; remembering the ids of each piece
      // met (most words repeat) took it from ~5.5 to ~15 MB/s on English books, one thread (npm
      // tiktoken: ~7; bench/tokenize_bench.ts). Long pieces rarely repeat: not kept.
      const words = new Map<string, readonly number[]>();
      const idsOf = (piece: string): readonly number[] => {
        let ids = words.get(piece);
        if (ids === undefined) {
          ids = core.encodeNative(piece);
          if (piece.length <= 64) {
            if (words.size >= 100_000) words.clear();
            words.set(piece, ids);
          }
        }
        return ids;
      };
      let files: HfTokenizerFiles | undefined;
      const tokenizer: Tokenizer = {
        name: "gpt2-r50k_base",
        spec: "gpt2",
        vocabSize: bpe.vocabularySize,
        eot: 50256,
        encode: (text: string) => {
          const out: number[] = [];
          for (const piece of text.match(pieces) ?? []) {
            const ids = idsOf(piece);
            for (let k = 0; k < ids.length; k++) out.push(ids[k]!);
          }
          return Int32Array.from(out);
        },
        decode: (ids: ArrayLike<number>) => bpe.decode(Array.from(ids)),
        hfFiles: () => files ??= gpt2TokenizerFiles(ranks),
      };
      return tokenizer;
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

/**
 * A document as training packs it: `[bos] + encode(text) + [eot]` (no `bos` when the tokeniser
 * has none).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer, encodeDocument } from "./tokenizer.ts";
 * assert.deepEqual(Array.from(encodeDocument(byteTokenizer(), "hi")), [104, 105, 256]);
 * ```
 */
export function encodeDocument(t: Tokenizer, text: string): Int32Array {
  const ids = t.encode(text);
  const head = t.bos === undefined ? 0 : 1;
  const out = new Int32Array(head + ids.length + 1);
  if (t.bos !== undefined) out[0] = t.bos;
  out.set(ids, head);
  out[out.length - 1] = t.eot;
  return out;
}

/**
 * The tokeniser a config names: `"bytes"`, `"gpt2"`, or a path to a Hugging Face
 * `tokenizer.json` or to a folder holding one (with its `tokenizer_config.json` where present;
 * see `hf_tokenizer.ts` for how EOS and BOS are chosen). `where` is the config field the spec
 * came from, named in errors (default `data.tokenizer`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer } from "./tokenizer.ts";
 * const bytes = await loadTokenizer("bytes")();
 * assert(bytes._tag === "Right" && bytes.right.eot === 256 && bytes.right.bos === undefined);
 * const missing = await loadTokenizer("no/such/tokenizer.json")();
 * assert(missing._tag === "Left" && missing.left._tag === "IoFailed");
 * ```
 */
export function loadTokenizer(
  spec: TokenizerSpec,
  where = "data.tokenizer",
): ext.TaskEither<FileError | ConfigInvalid, Tokenizer> {
  if (TokenizerName.is(spec)) return tokenizerFor(spec);
  if (spec.trim() === "") {
    return TE.left(configInvalid(where, 'expected "bytes", "gpt2" or a path to a tokenizer.json'));
  }
  return TE.mapLeft((e: FileError) =>
    e._tag === "IoFailed"
      ? ioFailed(
        e.path,
        `${e.message} (${where} takes "bytes", "gpt2", or a path to a tokenizer.json or to a ` +
          "folder holding one)",
      )
      : e
  )(loadHfTokenizer(spec));
}
