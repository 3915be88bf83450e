import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";
import {
  bpeFromRanks,
  byteLevelChars,
  byteTokenizerFiles,
  gpt2TokenizerFiles,
} from "./hf_tokenizer_files.ts";

Deno.test("byteLevelChars() is GPT-2's byte alphabet: printable bytes as themselves, others from U+0100", () => {
  const chars = byteLevelChars();
  assertEquals(new Set(chars).size, 256);
  assertEquals([chars[0x21], chars[0x7e], chars[0xa1], chars[0xff]], ["!", "~", "¡", "ÿ"]);
  // The unprintable bytes in order: 0x00 → Ā (U+0100), …, space (0x20) → Ġ, 0xAD → Ń.
  assertEquals([chars[0x00], chars[0x20], chars[0x7f], chars[0xad]], ["Ā", "Ġ", "ġ", "Ń"]);
});

Deno.test("gpt2TokenizerFiles() derives GPT-2's published merges from r50k_base's ranks", () => {
  const json = JSON.parse(gpt2TokenizerFiles(ranks)["tokenizer.json"]);
  assertEquals(json.model.merges.length, 50_000);
  // The first ten and the last lines of OpenAI's GPT-2 vocab.bpe (HF's gpt2 merges.txt).
  assertEquals(json.model.merges.slice(0, 10), [
    "Ġ t",
    "Ġ a",
    "h e",
    "i n",
    "r e",
    "o n",
    "Ġt he",
    "e r",
    "Ġ s",
    "a t",
  ]);
  assertEquals(json.model.merges.at(-1), "Ġg azed");
  // encoder.json's ids: "!" is 0, "Ġthe" 262, and <|endoftext|> 50256 (also an added token).
  assertEquals(
    [json.model.vocab["!"], json.model.vocab["Ġthe"], json.model.vocab["<|endoftext|>"]],
    [0, 262, 50256],
  );
  assertEquals(Object.keys(json.model.vocab).length, 50257);
  assertEquals(json.added_tokens.map((a: { id: number }) => a.id), [50256]);
});

Deno.test("byteTokenizerFiles() gives byte b the id b and <|endoftext|> 256, with no merges", () => {
  const files = byteTokenizerFiles();
  const json = JSON.parse(files["tokenizer.json"]);
  const chars = byteLevelChars();
  assert(chars.every((c, b) => json.model.vocab[c] === b));
  assertEquals(json.model.merges, []);
  assertEquals(json.added_tokens[0].content, "<|endoftext|>");
  const config = JSON.parse(files["tokenizer_config.json"]);
  assertEquals([config.eos_token, config.add_bos_token, config.split_special_tokens], [
    "<|endoftext|>",
    false,
    true,
  ]);
});

Deno.test("bpeFromRanks() refuses a token that lower ranks cannot build", () => {
  assertEquals(bpeFromRanks(["a", "b", "ab", "bab"]).merges, ["a b", "b ab"]);
  throws(() => bpeFromRanks(["a", "b", "c", "abc"]), /Token 3 \("abc"\) is not reachable/);
});
