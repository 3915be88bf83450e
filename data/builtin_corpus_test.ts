import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { allTables, END, lex } from "./_grammar.ts";
import {
  builtinCorpus,
  DEFAULT_BUILTIN_BYTES,
  floorNatsPerToken,
  scoreBuiltinDocument,
} from "./builtin_corpus.ts";
import { unigramEntropy } from "./entropy.ts";
import { byteTokenizer, gpt2Tokenizer } from "./tokenizer.ts";
import { tokenizeDocuments } from "./token_cache.ts";

Deno.test("builtinCorpus() is deterministic by seed and a few hundred KB by default", () => {
  const t0 = performance.now();
  const a = builtinCorpus({ seed: 1 });
  const ms = performance.now() - t0;
  assert(ms < 1000, `generation took ${ms} ms`);
  assert(
    a.bytes >= DEFAULT_BUILTIN_BYTES && a.bytes < DEFAULT_BUILTIN_BYTES + 20_000,
    String(a.bytes),
  );
  assertEquals(a.bytes, a.documents.reduce((s, d) => s + new TextEncoder().encode(d).length, 0));
  const b = builtinCorpus({ seed: 1 });
  assertEquals(b.documents, a.documents);
  assertEquals(b.nllNats, a.nllNats);
  const c = builtinCorpus({ seed: 2, documents: 5 });
  assertEquals(c.documents.length, 5);
  assert(c.documents[0] !== a.documents[0]);
  assert(Math.abs(a.nllNats - a.docNllNats.reduce((s, x) => s + x, 0)) < 1e-6);
});

Deno.test("grammar tables obey the decodability rules: distinct single-lexeme options", () => {
  const tables = allTables();
  assert(tables.length > 20);
  for (const t of tables) {
    assertEquals(new Set(t.texts).size, t.texts.length, t.key);
    for (const text of t.texts) {
      if (text === END) continue;
      assertEquals(lex(text), [text], `${t.key}: "${text}" must be exactly one lexeme`);
    }
    assert(Math.abs(t.cumulative[t.cumulative.length - 1]! - 1) < 1e-12);
    const probs = Array.from(t.nll, (x) => Math.exp(-x));
    assert(Math.abs(probs.reduce((s, p) => s + p, 0) - 1) < 1e-9, t.key);
  }
});

Deno.test("scoreBuiltinDocument() replays every document to exactly the generator's NLL", () => {
  const c = builtinCorpus({ seed: 3, bytes: 100_000 });
  for (let i = 0; i < c.documents.length; i++) {
    const s = scoreBuiltinDocument(c.documents[i]!);
    assert(E.isRight(s), `document ${i}: ${E.isLeft(s) ? s.left : ""}`);
    assert(Math.abs(s.right - c.docNllNats[i]!) < 1e-9 * Math.max(1, s.right));
  }
});

Deno.test("scoreBuiltinDocument() rejects text the grammar cannot produce", () => {
  const c = builtinCorpus({ seed: 4, documents: 1 });
  const doc = c.documents[0]!;
  assert(E.isLeft(scoreBuiltinDocument(doc + " extra")));
  assert(E.isLeft(scoreBuiltinDocument(doc.replace(/\.$/, "?") + "!")));
  assert(E.isLeft(scoreBuiltinDocument("The cat sleep. The cat sleeps. The cat sleeps.")));
  assert(E.isRight(scoreBuiltinDocument("The cat sleeps. The cats sleep. They sleep.")));
  assert(E.isLeft(scoreBuiltinDocument("The cats sleep. It sleeps. The cat sleeps.")));
  assert(E.isLeft(scoreBuiltinDocument("Does the cats sleep? The cat sleeps. The cat sleeps.")));
  assert(
    E.isLeft(scoreBuiltinDocument("The cat sleeps.")),
    "fewer sentences than a document needs",
  );
});

Deno.test("the loss floor lies far below the unigram entropy (bytes and GPT-2 tokens)", async () => {
  const c = builtinCorpus({ seed: 1 });
  const bytes = byteTokenizer();
  const floorBytes = floorNatsPerToken(c, bytes);
  const unigramBytes = unigramEntropy(tokenizeDocuments(c.documents, bytes).tokens);
  const g = await gpt2Tokenizer()();
  assert(E.isRight(g));
  const floorGpt2 = floorNatsPerToken(c, g.right);
  const unigramGpt2 = unigramEntropy(tokenizeDocuments(c.documents, g.right).tokens);
  console.log(
    `builtin corpus seed 1: ${c.documents.length} documents, ${c.bytes} bytes; ` +
      `bytes: floor ${floorBytes.toFixed(4)} nats/token, unigram ${unigramBytes.toFixed(4)}; ` +
      `gpt2: floor ${floorGpt2.toFixed(4)}, unigram ${unigramGpt2.toFixed(4)}`,
  );
  assert(floorBytes > 0.45 && floorBytes < 0.75, String(floorBytes));
  assert(unigramBytes - floorBytes > 2, "bytes: a model that learns the grammar gains over 2 nats");
  assert(floorGpt2 > 2 && floorGpt2 < 3.5, String(floorGpt2));
  assert(unigramGpt2 - floorGpt2 > 1.5);
  // A held-out subset has its own floor, close to the whole corpus's.
  const held = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90];
  assert(Math.abs(floorNatsPerToken(c, bytes, held) - floorBytes) < 0.1);
});
