import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { byteTokenizer, EOT_TEXT, gpt2Tokenizer, tokenizerFor } from "./tokenizer.ts";

Deno.test("byteTokenizer() encodes UTF-8 bytes, has vocab 257 and decodes back", () => {
  const tok = byteTokenizer();
  assertEquals([tok.name, tok.vocabSize, tok.eot], ["bytes", 257, 256]);
  assertEquals(Array.from(tok.encode("Aé\n")), [65, 0xc3, 0xa9, 10]);
  assertEquals(tok.decode(tok.encode("naïve — ok")), "naïve — ok");
  assertEquals(tok.decode([104, 105, 256, 0xc3, 0xa9]), `hi${EOT_TEXT}é`);
  // The literal marker is text, not the end-of-text id.
  assert(!Array.from(tok.encode(EOT_TEXT)).includes(256));
});

Deno.test("gpt2Tokenizer() is r50k_base: 50257 ids, <|endoftext|> = 50256, known ids", async () => {
  const r = await gpt2Tokenizer()();
  assert(E.isRight(r));
  const tok = r.right;
  assertEquals([tok.vocabSize, tok.eot], [50257, 50256]);
  // GPT-2's ids for "Hello world" and " the" (as in OpenAI's encoder.json).
  assertEquals(Array.from(tok.encode("Hello world")), [15496, 995]);
  assertEquals(Array.from(tok.encode(" the")), [262]);
  assertEquals(tok.decode([50256]), EOT_TEXT);
  const literal = tok.encode(`a${EOT_TEXT}b`);
  assert(!Array.from(literal).includes(50256));
  assertEquals(tok.decode(literal), `a${EOT_TEXT}b`);
  const text =
    "Thou art more lovely and more temperate:\nRough winds do shake the darling buds of May.";
  assertEquals(tok.decode(tok.encode(text)), text);
});

Deno.test("tokenizerFor() builds each named tokeniser", async () => {
  const b = await tokenizerFor("bytes")();
  const g = await tokenizerFor("gpt2")();
  assert(E.isRight(b) && E.isRight(g));
  assertEquals([b.right.vocabSize, g.right.vocabSize], [257, 50257]);
});
