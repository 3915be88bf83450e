/**
 * The built-in tokenisers written as Hugging Face files, so an exported model folder is complete
 * for HF loaders and loads back to the same ids:
 *
 * - bytes: a byte-level BPE with no merges whose vocabulary gives byte b the id b, and
 *   `<|endoftext|>` = 256 as an added special token.
 * - gpt2: the byte-level BPE of `r50k_base`, vocabulary and merges derived from
 *   `gpt-tokenizer`'s ranks (the standard derivation: a token's merge is the pair of vocabulary
 *   tokens that byte-pair encoding with only the lower ranks leaves it as; merges in rank order).
 *
 * Both configs set `split_special_tokens: true`, so (as with the built-ins) a literal
 * `<|endoftext|>` inside a text stays text for `transformers` and for `hfTokenizer`; a
 * loader reading `tokenizer.json` alone (the Rust `tokenizers` library) encodes it as the
 * end-of-text id instead, and agrees with the built-ins on every other text.
 *
 * @module
 */
import type { HfTokenizerFiles } from "./tokenizer_types.ts";

/**
 * GPT-2's byte-level alphabet: byte b is written as the character `chars[b]` (printable Latin-1
 * bytes as themselves, the others shifted above U+0100), as every byte-level BPE's vocabulary is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteLevelChars } from "./hf_tokenizer_files.ts";
 * const chars = byteLevelChars();
 * assert(chars[65] === "A" && chars[32] === "Ġ" && chars[10] === "Ċ" && new Set(chars).size === 256);
 * ```
 */
export function byteLevelChars(): string[] {
  const chars: string[] = new Array(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    chars[b] = String.fromCharCode(printable(b) ? b : 256 + shifted++);
  }
  return chars;
}

const EOT = "<|endoftext|>";

function addedEot(id: number): Record<string, unknown> {
  return {
    id,
    content: EOT,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

function tokenizerJson(
  eotId: number,
  vocab: Record<string, number>,
  merges: readonly string[],
): string {
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [addedEot(eotId)],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", ...byteLevel },
    post_processor: { type: "ByteLevel", ...byteLevel, trim_offsets: false },
    decoder: { type: "ByteLevel", ...byteLevel },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  return JSON.stringify(json);
}

function tokenizerConfig(bos: string | null, eotId: number): string {
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    eos_token: EOT,
    bos_token: bos,
    unk_token: bos,
    pad_token: null,
    add_bos_token: false,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    split_special_tokens: true,
    added_tokens_decoder: { [String(eotId)]: addedEot(eotId) },
  };
  return JSON.stringify(config, null, 2) + "\n";
}

/**
 * The byte tokeniser as `tokenizer.json` + `tokenizer_config.json`: byte b has id b,
 * `<|endoftext|>` is 256, no merges.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizerFiles } from "./hf_tokenizer_files.ts";
 * const json = JSON.parse(byteTokenizerFiles()["tokenizer.json"]);
 * assert(json.model.vocab["A"] === 65 && json.added_tokens[0].id === 256);
 * ```
 */
export function byteTokenizerFiles(): HfTokenizerFiles {
  const chars = byteLevelChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => vocab[c] = b);
  vocab[EOT] = 256;
  return {
    "tokenizer.json": tokenizerJson(256, vocab, []),
    "tokenizer_config.json": tokenizerConfig(null, 256),
  };
}

/**
 * A byte-level BPE's vocabulary and merges from tiktoken-style ranks (`ranks[i]` is the token of
 * rank and id i: its text when its bytes are UTF-8, else the bytes). Throws if a token cannot be
 * reached by merging lower-ranked tokens (the ranks are not a BPE).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bpeFromRanks } from "./hf_tokenizer_files.ts";
 * const ranks = [..."abc"].concat(["ab", "abc"]);
 * assert.deepEqual(bpeFromRanks(ranks).merges, ["a b", "ab c"]);
 * ```
 */
export function bpeFromRanks(
  ranks: readonly (string | readonly number[])[],
): { vocab: Record<string, number>; merges: string[] } {
  const chars = byteLevelChars();
  const encoder = new TextEncoder();
  const tokens = ranks.map((r) =>
    Array.from(typeof r === "string" ? encoder.encode(r) : r, (b) => chars[b]!).join("")
  );
  const rankOf = new Map(tokens.map((s, i) => [s, i]));
  const merges: string[] = [];
  tokens.forEach((token, rank) => {
    if (token.length < 2) return;
    // Byte-pair encode the token with the ranks below its own: it must end as two tokens.
    const parts = [...token];
    for (;;) {
      let best = -1;
      let bestRank = rank;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = rankOf.get(parts[i]! + parts[i + 1]!);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      parts.splice(best, 2, parts[best]! + parts[best + 1]!);
    }
    if (parts.length !== 2) {
      throw new Error(`Token ${rank} ("${token}") is not reachable by merges of lower ranks`);
    }
    merges.push(`${parts[0]} ${parts[1]}`);
  });
  return { vocab: Object.fromEntries(rankOf), merges };
}

/**
 * GPT-2 (`r50k_base`) as `tokenizer.json` + `tokenizer_config.json`, from `gpt-tokenizer`'s ranks:
 * 50,257 ids, 50,000 merges, `<|endoftext|>` = 50256.
 */
export function gpt2TokenizerFiles(
  ranks: readonly (string | readonly number[])[],
): HfTokenizerFiles {
  const { vocab, merges } = bpeFromRanks(ranks);
  const eotId = ranks.length;
  vocab[EOT] = eotId;
  return {
    "tokenizer.json": tokenizerJson(eotId, vocab, merges),
    "tokenizer_config.json": tokenizerConfig(EOT, eotId),
  };
}
