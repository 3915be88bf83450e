import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { builtinCorpus, floorNatsPerToken } from "./builtin_corpus.ts";
import { CorpusConfig, loadCorpus } from "./corpus.ts";
import { splitByFraction } from "./split.ts";
import { tokenizeDocuments } from "./token_cache.ts";
import { readAll } from "./token_stream.ts";
import { byteTokenizer, type Tokenizer } from "./tokenizer.ts";

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
  assert(E.isLeft(CorpusConfig.decode({ sources: ["a.txt"], tokenizer: 7 })));
  assert(
    E.isLeft(CorpusConfig.decode({ sources: [{ path: "a", format: "csv" }], tokenizer: "bytes" })),
  );
});

Deno.test("loadCorpus() names data.tokenizer when it is neither a built-in nor a file", async () => {
  const r = await loadCorpus({
    sources: [{ builtin: { seed: 1, documents: 4 } }],
    tokenizer: "llama",
  })();
  assert(E.isLeft(r) && r.left._tag === "IoFailed");
  assert(r.left.message.includes("data.tokenizer"), r.left.message);
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

/** The byte tokeniser, counting how many documents it encodes. */
function countingTokenizer(): Tokenizer & { calls: number } {
  const inner = byteTokenizer();
  const counter = {
    ...inner,
    calls: 0,
    encode: (text: string) => {
      counter.calls++;
      return inner.encode(text);
    },
  };
  return counter;
}

Deno.test("loadCorpus() reads its token shards on the second load, and misses them when a source, a field or the tokeniser changes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text":"first doc"}\n{"text":"second"}\n');
    await Deno.writeTextFile(`${dir}/b.txt`, "third");
    const cacheDir = `${dir}/.cache/tokens`;
    const tok = countingTokenizer();
    const load = async (
      sources: CorpusConfig["sources"] = ["a.jsonl", "b.txt"],
      tokenizer: Tokenizer = tok,
    ) => {
      const r = await loadCorpus({ sources, tokenizer: "bytes", validation: { fraction: 0 } }, {
        baseDir: dir,
        cacheDir,
        tokenizer,
        workers: 1,
      })();
      assert(E.isRight(r), E.isLeft(r) ? JSON.stringify(r.left) : "");
      return r.right;
    };
    const first = await load();
    assertEquals([first.fromCache, tok.calls > 0, first.trainDocuments], [false, true, 3]);
    const sets: string[] = [];
    for await (const e of Deno.readDir(cacheDir)) sets.push(e.name);
    assertEquals(sets.map((f) => f.replace(/^[0-9a-f]{32}$/, "<hash>")), ["<hash>"]);
    assert((await Deno.stat(`${cacheDir}/${sets[0]}/manifest.json`)).isFile);
    const calls = tok.calls;
    const second = await load();
    assertEquals([second.fromCache, tok.calls], [true, calls]); // nothing encoded
    assertEquals(readAll(second.train), readAll(first.train));
    assertEquals(
      byteTokenizer().decode(readAll(second.train)),
      "first doc<|endoftext|>second<|endoftext|>third<|endoftext|>",
    );
    await Deno.writeTextFile(`${dir}/b.txt`, "third, longer");
    const changed = await load();
    assert(!changed.fromCache);
    assertEquals(
      byteTokenizer().decode(readAll(changed.train)),
      "first doc<|endoftext|>second<|endoftext|>third, longer<|endoftext|>",
    );
    assert(
      !(await load([{ path: "a.jsonl", field: "text" }, { path: "b.txt", field: "body" }]))
        .fromCache,
    );
    assert(!(await load(undefined, { ...byteTokenizer(), name: "bytes-v2" })).fromCache);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCorpus() rebuilds a shard set whose document table is damaged", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    const config = { sources: [builtin40], tokenizer: "bytes" as const, seed: 5 };
    const first = await loadCorpus(config, { cacheDir, workers: 1 })();
    assert(E.isRight(first));
    const [set] = await Array.fromAsync(Deno.readDir(cacheDir));
    const docs = `${cacheDir}/${set!.name}/00000.docs`;
    const ends = new Float64Array((await Deno.readFile(docs)).buffer);
    ends[3] = ends[1]!; // same size, ends out of order
    await Deno.writeFile(docs, new Uint8Array(ends.buffer));
    const again = await loadCorpus(config, { cacheDir, workers: 1 })();
    assert(E.isRight(again));
    assert(!again.right.fromCache);
    assertEquals(readAll(again.right.train), readAll(first.right.train));
    assertEquals(again.right.validationDocIndices, first.right.validationDocIndices);
    const third = await loadCorpus(config, { cacheDir, workers: 1 })();
    assert(E.isRight(third) && third.right.fromCache);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("loadCorpus() with weights splits every source on its own and lists them as groups", async () => {
  const a = { builtin: { seed: 1, documents: 40 }, weight: 3 };
  const b = { builtin: { seed: 2, documents: 20 } };
  const r = await loadCorpus({ sources: [a, b], tokenizer: "bytes", seed: 4 })();
  assert(E.isRight(r));
  const groups = r.right.groups;
  assert(groups !== undefined && groups.length === 2);
  assertEquals(groups.map((g) => [g.weight, g.trainDocuments, g.validationDocuments]), [
    [3, 36, 4],
    [1, 18, 2],
  ]);
  // Each group is the source loaded alone, split by the same rule.
  for (const [i, source] of [a, b].entries()) {
    const alone = await loadCorpus({ sources: [source], tokenizer: "bytes", seed: 4 })();
    assert(E.isRight(alone) && alone.right.groups === undefined);
    assertEquals(readAll(groups[i]!.train), readAll(alone.right.train));
    assertEquals(readAll(groups[i]!.validation), readAll(alone.right.validation));
  }
  assertEquals(
    readAll(r.right.train),
    Int32Array.from([...readAll(groups[0]!.train), ...readAll(groups[1]!.train)]),
  );
  assertEquals(r.right.validationDocuments, 6);
  assert(r.right.floorNats !== undefined);
  const bad = await loadCorpus({ sources: [{ ...a, weight: -1 }, b], tokenizer: "bytes" })();
  assert(
    E.isLeft(bad) && bad.left._tag === "ConfigInvalid" &&
      bad.left.where === "data.sources[0].weight",
  );
  const heldWeight = await loadCorpus({
    sources: [a, b],
    tokenizer: "bytes",
    validation: { sources: [{ builtin: { seed: 3, documents: 5 }, weight: 2 }] },
  })();
  assert(E.isLeft(heldWeight) && heldWeight.left._tag === "ConfigInvalid");
  assertEquals(heldWeight.left.where, "data.validation.sources[0].weight");
});

Deno.test("loadCorpus() packs documents the same in memory and from shards, BOS included", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    const withBos = { ...byteTokenizer(), name: "bytes-with-bos", vocabSize: 258, bos: 257 };
    const config = { sources: [builtin40], tokenizer: "bytes" as const, seed: 2 };
    const inMemory = await loadCorpus(config, { tokenizer: withBos })();
    const sharded = await loadCorpus(config, { tokenizer: withBos, cacheDir, workers: 1 })();
    assert(E.isRight(inMemory) && E.isRight(sharded));
    const train = readAll(inMemory.right.train);
    assertEquals(readAll(sharded.right.train), train);
    assertEquals(readAll(sharded.right.validation), readAll(inMemory.right.validation));
    assertEquals([train[0], train.filter((t) => t === 257).length], [257, 36]);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});
