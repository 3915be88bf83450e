import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { builtinCorpus, floorNatsPerToken } from "../data/builtin_corpus.ts";
import { type Corpus, loadCorpus } from "../data/corpus.ts";
import { dataEffect } from "./data_effect.ts";
import { byteTokenizer } from "../data/tokenizer.ts";

async function builtin(documents: number): Promise<Corpus> {
  const r = await loadCorpus({
    sources: [{ builtin: { seed: 4, documents } }],
    tokenizer: "bytes",
    seed: 1,
  })();
  assert(E.isRight(r));
  return r.right;
}

Deno.test("dataEffect() serves micro-batches by JSON position and resumes exactly", async () => {
  const d = dataEffect(await builtin(60), { batch: 3, seq: 24, seed: 2 });
  assert(E.isRight(d));
  const all = d.right.next(d.right.start, 10);
  const half = d.right.next(d.right.start, 4);
  const rest = d.right.next(JSON.parse(JSON.stringify(half.next)), 6);
  assertEquals(
    [...half.batches, ...rest.batches].map((b) => Array.from(b.tokens)),
    all.batches.map((b) => Array.from(b.tokens)),
  );
  assertEquals(rest.next, all.next);
  assertEquals([all.batches[0]!.batch, all.batches[0]!.seq], [3, 24]);
  throws(() => d.right.next({ epoch: "x" }, 1), RangeError);
});

Deno.test("dataEffect() has a fixed validation set, the unigram entropy and the built-in floor", async () => {
  const corpus = await builtin(60);
  const d = dataEffect(corpus, { batch: 4, seq: 32, seed: 2 });
  assert(E.isRight(d));
  assertEquals(
    d.right.validation(2).map((b) => Array.from(b.tokens)),
    d.right.validation(2).map((b) => Array.from(b.tokens)),
  );
  assertEquals(d.right.validation(2).length, 2);
  assertEquals(d.right.vocabSize, 257);
  assert(d.right.unigramNats! > 2.5 && d.right.unigramNats! < 3.5);
  // The validation floor is the held-out documents' exact NLL over their tokens.
  const c = builtinCorpus({ seed: 4, documents: 60 });
  const expected = floorNatsPerToken(c, byteTokenizer(), corpus.validationDocIndices);
  assert(Math.abs(d.right.floorNats! - expected) < 1e-12, `${d.right.floorNats} vs ${expected}`);
  assert(d.right.floorNats! < d.right.unigramNats! - 2);
  assert(
    /bytes tokens: \d+ train \/ \d+ validation \(split by documents\)/.test(d.right.description),
  );
});

Deno.test("dataEffect() refuses a sequence longer than the training split", async () => {
  const d = dataEffect(await builtin(3), { batch: 1, seq: 100000, seed: 0, where: "run.data" });
  assert(E.isLeft(d) && d.left.where === "run.data.seq");
});
