import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tokenizeDocuments } from "./token_cache.ts";
import { byteTokenizer } from "./tokenizer.ts";

Deno.test("tokenizeDocuments() joins documents, each followed by end-of-text, and records their ends", () => {
  const d = tokenizeDocuments(["hi", "", "é"], byteTokenizer());
  assert(d.tokens instanceof Uint16Array);
  assertEquals(Array.from(d.tokens), [104, 105, 256, 256, 0xc3, 0xa9, 256]);
  assertEquals(Array.from(d.docEnds), [3, 4, 7]);
  const wide = tokenizeDocuments(["a"], { ...byteTokenizer(), vocabSize: 70000 });
  assert(wide.tokens instanceof Int32Array);
});
