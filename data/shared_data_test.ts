/**
 * Tests on the real public data in `../shared/data` (beside the repository root). A fresh
 * clone has no such folder: then every test here is skipped and says why.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { fileURLToPath } from "node:url";
import { loadCorpus } from "./corpus.ts";
import { readDocuments } from "./readers.ts";
import { type ResolvedFile, resolveSources } from "./sources.ts";
import { byteTokenizer, gpt2Tokenizer } from "./tokenizer.ts";
import { readAll, sliceStream } from "./token_stream.ts";

const SHARED = fileURLToPath(new URL("../../shared/data", import.meta.url));
const available = (() => {
  try {
    return Deno.statSync(SHARED).isDirectory;
  } catch {
    return false;
  }
})();
const skipNote = available
  ? ""
  : ` (skipped: ${SHARED} is absent; it holds the shared public data sets)`;
if (!available) {
  console.warn(`data/shared_data_test.ts: ${SHARED} not found, skipping real-data tests`);
}

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: name + skipNote, ignore: !available, fn });
}

async function documentsOf(path: string, field?: string): Promise<E.Either<string, string[]>> {
  const units = await resolveSources([field === undefined ? path : { path, field }], SHARED)();
  if (E.isLeft(units)) return E.left(units.left.message);
  const docs = await readDocuments(units.right[0]!)();
  return E.isLeft(docs) ? E.left(`${docs.left.path}: ${docs.left.message}`) : E.right(docs.right);
}

test("tinyshakespeare: GPT-2 gives 338,025 tokens (nanoGPT's figure) and a tail split", async () => {
  const gpt2 = await gpt2Tokenizer()();
  assert(E.isRight(gpt2));
  const r = await loadCorpus(
    { sources: ["tinyshakespeare/input.txt"], tokenizer: "gpt2", validation: { fraction: 0.1 } },
    { baseDir: SHARED, tokenizer: gpt2.right },
  )();
  assert(E.isRight(r));
  const c = r.right;
  assertEquals([c.split, c.trainDocuments, c.validationDocuments], ["tail", 1, 0]);
  assertEquals(c.train.length + c.validation.length, 338025 + 1); // + end-of-text
  assertEquals(c.validation.length, Math.round(0.1 * 338026));
  assert(gpt2.right.decode(readAll(sliceStream(c.train, 0, 4))).startsWith("First Citizen"));
});

test("c4-sample: JSONL and Parquet give the same 300 documents", async () => {
  const jsonl = await documentsOf("c4-sample/c4_demo.jsonl");
  const parquet = await documentsOf("c4-sample/c4_demo.parquet");
  assert(E.isRight(jsonl) && E.isRight(parquet));
  assertEquals(jsonl.right.length, 300);
  assertEquals(parquet.right, jsonl.right);
  assert(jsonl.right[0]!.startsWith("Don’t think you need all the bells and whistles?"));
});

test("c4-sample: a Parquet column or JSONL field that is absent is an error naming the file", async () => {
  const parquet = await documentsOf("c4-sample/c4_demo.parquet", "content");
  assertEquals(
    parquet,
    E.left(`${SHARED}/c4-sample/c4_demo.parquet: Column "content" not found (columns: text)`),
  );
  const jsonl = await documentsOf("mt-bench/question.jsonl");
  assertEquals(jsonl, E.left(`${SHARED}/mt-bench/question.jsonl: Line 1: field "text" is missing`));
});

test("c4-sample directory: both formats mix by extension and the corpus splits by documents", async () => {
  const r = await loadCorpus({ sources: ["c4-sample"], tokenizer: "bytes", seed: 1 }, {
    baseDir: SHARED,
  })();
  assert(E.isRight(r));
  assertEquals([r.right.split, r.right.trainDocuments + r.right.validationDocuments], [
    "documents",
    600,
  ]);
  assertEquals(r.right.validationDocuments, 60);
});

test("wikitext-2 validation: one document of tokenised text with <unk>", async () => {
  const docs = await documentsOf("wikitext-2/valid.txt");
  assert(E.isRight(docs));
  assertEquals(docs.right.length, 1);
  assert(
    docs.right[0]!.includes("<unk>") && docs.right[0]!.startsWith(" \n = Homarus gammarus = \n"),
  );
  const bytes = byteTokenizer().encode(docs.right[0]!);
  assertEquals(bytes.length, 1121681);
});

test("corpus-en: the SOURCE.md author split via exclude + validation sources, Gutenberg boilerplate stripped", async () => {
  const held = ["pg345.txt", "pg1260.txt"];
  const train = await resolveSources(
    [{ path: "corpus-en", exclude: held, gutenberg: true }],
    SHARED,
  )();
  assert(E.isRight(train));
  const names = train.right.map((u) => (u as ResolvedFile).path.split("/").at(-1)!);
  assertEquals(names.length, 66);
  assert(held.every((h) => !names.includes(h)) && !names.includes("SOURCE.md"));
  const r = await loadCorpus(
    {
      sources: held.map((h) => ({ path: `corpus-en/${h}`, gutenberg: true })),
      tokenizer: "bytes",
      validation: { sources: [{ path: "corpus-en/pg345.txt", gutenberg: true }] },
    },
    { baseDir: SHARED },
  )();
  assert(E.isRight(r));
  const dracula = byteTokenizer().decode(readAll(r.right.validation));
  assert(
    dracula.startsWith("Produced by") && dracula.slice(0, 2000).includes("DRACULA"),
    dracula.slice(0, 80),
  );
  assert(
    !dracula.includes("\r") && !dracula.includes("*** START OF") && !dracula.includes("*** END OF"),
  );
});
