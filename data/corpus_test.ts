import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { builtinCorpus, floorNatsPerToken } from "./builtin_corpus.ts";
import { CorpusConfig, loadCorpus, splitByFraction } from "./corpus.ts";
import { tokenizeDocuments } from "./token_cache.ts";
import { readAll } from "./token_stream.ts";
import { byteTokenizer } from "./tokenizer.ts";

const builtin40 = { builtin: { seed: 1, documents: 40 } };

Deno.test("CorpusConfig decodes a YAML-like data section and rejects a bad one", () => {
  const good = CorpusConfig.decode({
    sources: ["../shared/data/corpus-en", { builtin: { seed: 3 } }, {
      path: "x.jsonl",
      field: "body",
    }],
    tokenizer: "gpt2",
    validation: { fraction: 0.05, by: "documents" },
    seed: 7,
  });
  assert(E.isRight(good));
  assert(E.isLeft(CorpusConfig.decode({ sources: ["a.txt"], tokenizer: "llama" })));
  assert(
    E.isLeft(CorpusConfig.decode({ sources: [{ path: "a", format: "csv" }], tokenizer: "bytes" })),
  );
});

Deno.test("splitByFraction() by documents holds out whole documents, disjoint and seeded", () => {
  const c = builtinCorpus({ seed: 9, documents: 50 });
  const docs = tokenizeDocuments(c.documents, byteTokenizer());
  const a = splitByFraction(docs, { fraction: 0.2, by: "documents" }, 1);
  const b = splitByFraction(docs, { fraction: 0.2, by: "documents" }, 1);
  const other = splitByFraction(docs, { fraction: 0.2, by: "documents" }, 2);
  assert(E.isRight(a) && E.isRight(b) && E.isRight(other));
  assertEquals(a.right.validationDocIndices, b.right.validationDocIndices);
  assert(a.right.validationDocIndices.join() !== other.right.validationDocIndices.join());
  assertEquals(a.right.validationDocIndices.length, 10);
  assertEquals(a.right.train.length + a.right.validation.length, docs.tokens.length);
  // The validation stream is exactly the held-out documents, in order, each with its end-of-text.
  const tok = byteTokenizer();
  const expected = a.right.validationDocIndices.map((i) => c.documents[i] + "<|endoftext|>").join(
    "",
  );
  assertEquals(tok.decode(readAll(a.right.validation)), expected);
  const held = new Set(a.right.validationDocIndices.map((i) => c.documents[i]));
  for (
    const d of tok.decode(readAll(a.right.train)).split("<|endoftext|>").filter((s) => s !== "")
  ) {
    assert(!held.has(d));
  }
});

Deno.test("splitByFraction() by tail cuts the last tokens; auto picks tail for one document", () => {
  const docs = tokenizeDocuments(["x".repeat(999)], byteTokenizer());
  const tail = splitByFraction(docs, { fraction: 0.1 }, 0);
  assert(E.isRight(tail));
  assertEquals([tail.right.by, tail.right.train.length, tail.right.validation.length], [
    "tail",
    900,
    100,
  ]);
  const none = splitByFraction(docs, { fraction: 0, by: "tail" }, 0);
  assert(E.isRight(none) && none.right.validation.length === 0);
  const bad = splitByFraction(docs, { fraction: 1 }, 0);
  assert(E.isLeft(bad) && bad.left.where === "data.validation.fraction");
  const tooFew = splitByFraction(docs, { fraction: 0.5, by: "documents" }, 0);
  assert(
    E.isLeft(tooFew) && /leaves 1 for validation and 0 for training/.test(tooFew.left.message),
  );
});

Deno.test("loadCorpus() splits the built-in corpus by documents and caches it", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    const config = { sources: [builtin40], tokenizer: "bytes" as const, seed: 5 };
    const first = await loadCorpus(config, { cacheDir })();
    assert(E.isRight(first));
    assertEquals([first.right.split, first.right.trainDocuments, first.right.validationDocuments], [
      "documents",
      36,
      4,
    ]);
    assert(!first.right.fromCache);
    const second = await loadCorpus(config, { cacheDir })();
    assert(E.isRight(second) && second.right.fromCache);
    assertEquals(readAll(second.right.validation), readAll(first.right.validation));
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("loadCorpus() takes validation from separate sources when given", async () => {
  const r = await loadCorpus({
    sources: [builtin40],
    tokenizer: "bytes",
    validation: { sources: [{ builtin: { seed: 2, documents: 5 } }] },
  })();
  assert(E.isRight(r));
  assertEquals([r.right.split, r.right.trainDocuments, r.right.validationDocuments], [
    "sources",
    40,
    5,
  ]);
  const expected = tokenizeDocuments(
    builtinCorpus({ seed: 2, documents: 5 }).documents,
    byteTokenizer(),
  );
  assertEquals(Array.from(readAll(r.right.validation)), Array.from(expected.tokens));
});

Deno.test("loadCorpus() reports an empty corpus and a missing source", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    const empty = await loadCorpus({ sources: ["empty.txt"], tokenizer: "bytes" }, {
      baseDir: dir,
    })();
    assertEquals(
      empty,
      E.left({
        _tag: "ConfigInvalid",
        where: "data.sources",
        message: `"${dir}/empty.txt" hold no non-empty documents`,
      }),
    );
    const missing = await loadCorpus({ sources: ["gone.jsonl"], tokenizer: "bytes" }, {
      baseDir: dir,
    })();
    assert(
      E.isLeft(missing) && missing.left._tag === "IoFailed" &&
        missing.left.path === `${dir}/gone.jsonl`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCorpus() reports the built-in corpus's floor per split, and none for files", async () => {
  const r = await loadCorpus({ sources: [builtin40], tokenizer: "bytes", seed: 3 })();
  assert(E.isRight(r) && r.right.floorNats !== undefined);
  const c = builtinCorpus({ seed: 1, documents: 40 });
  const trainIdx = c.documents.map((_, i) => i).filter((i) =>
    !r.right.validationDocIndices.includes(i)
  );
  const f = floorNatsPerToken(c, byteTokenizer(), trainIdx);
  assert(Math.abs(r.right.floorNats.train - f) < 1e-12);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.txt`, "some text here");
    const files = await loadCorpus({ sources: ["a.txt"], tokenizer: "bytes" }, { baseDir: dir })();
    assert(E.isRight(files) && files.right.floorNats === undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
