import * as E from "fp-ts/lib/Either.js";
import { byteTokenizer } from "../data/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import {
  findTokenizer,
  HF_TOKENIZER_FILES,
  loadFoundTokenizer,
  modelVocab,
  sha256Hex,
  TOKENIZER_FILE,
  tokenizerFiles,
  tokenizerRecordText,
  tokenizerSource,
  vocabProblem,
} from "./tokenizer_record.ts";

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tok-record-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a checkpoint's tokenizer: recorded, from the run around it, guessed, or unknown", () =>
  withDir(async (dir) => {
    await Deno.mkdir(`${dir}/run/final`, { recursive: true });
    await Deno.writeTextFile(`${dir}/run/pipeline.yaml`, "data:\n  tokenizer: gpt2\n");
    const fromRun = await findTokenizer(`${dir}/run/final`, 50257);
    assert(E.isRight(fromRun) && fromRun.right?.spec === "gpt2" && !fromRun.right.guessed);
    // A record written before the HF files travelled: the name alone.
    await Deno.writeTextFile(
      `${dir}/run/final/${TOKENIZER_FILE}`,
      tokenizerRecordText({ tokenizer: "bytes" }),
    );
    assertEquals(
      await Deno.readTextFile(`${dir}/run/final/${TOKENIZER_FILE}`),
      '{\n "tokenizer": "bytes"\n}\n',
    );
    const recorded = await findTokenizer(`${dir}/run/final`, 50257);
    assert(E.isRight(recorded) && recorded.right?.spec === "bytes", "the record wins over the run");
    assertStringIncludes(recorded.right!.how, TOKENIZER_FILE);

    await Deno.mkdir(`${dir}/hf`);
    const bare = await findTokenizer(`${dir}/hf`, 50304);
    assert(E.isRight(bare) && bare.right === undefined, "no files, no record: unknown");
    await Deno.writeTextFile(`${dir}/hf/vocab.json`, "{}");
    await Deno.writeTextFile(`${dir}/hf/merges.txt`, "");
    const bpe = await findTokenizer(`${dir}/hf`, 50304);
    assert(E.isRight(bpe) && bpe.right?.spec === "gpt2" && bpe.right.guessed);
    const bytes = await findTokenizer(`${dir}/elsewhere`, 257);
    assert(E.isRight(bytes) && bytes.right?.spec === "bytes" && bytes.right.guessed);
    assert(E.isRight(await findTokenizer(`${dir}/elsewhere`, 300)));

    // Too small a vocabulary is found, and refused once loaded, naming both sizes and files.
    const small = await findTokenizer(`${dir}/run/final`, 200);
    assert(E.isRight(small) && small.right !== undefined);
    const model = { vocab: 200, file: `${dir}/run/final/config.json: vocab` };
    const refused = await loadFoundTokenizer(small.right, model);
    assert(E.isLeft(refused) && refused.left._tag === "ConfigInvalid");
    assertEquals(refused.left.where, model.file);
    for (const s of ["200", "257", "the built-in bytes tokenizer"]) {
      assertStringIncludes(refused.left.message, s);
    }
    const fits = await loadFoundTokenizer(small.right, { ...model, vocab: 300 });
    assert(
      E.isRight(fits) && fits.right.tokenizer.vocabSize === 257,
      "a padded vocabulary is fine",
    );
    await Deno.writeTextFile(`${dir}/run/final/${TOKENIZER_FILE}`, '{"tokenizer": "sp"}');
    const bad = await findTokenizer(`${dir}/run/final`, 50257);
    assert(E.isLeft(bad) && bad.left._tag === "ConfigInvalid");
    assertEquals(bad.left.where, `${dir}/run/final/${TOKENIZER_FILE}: tokenizer`);
  }));

Deno.test("a tokenizer.json beside the weights is the model's tokenizer, recorded or not", () =>
  withDir(async (dir) => {
    const json = '{"version":"1.0","model":{"type":"BPE"}}\n';
    await Deno.writeTextFile(`${dir}/${HF_TOKENIZER_FILES.tokenizer}`, json);
    // An HF folder without our record: HF's convention says which tokenizer it is.
    const hf = await findTokenizer(dir, 32000);
    assert(E.isRight(hf) && hf.right?.spec === dir && !hf.right.guessed, JSON.stringify(hf));
    assertStringIncludes(hf.right.how, HF_TOKENIZER_FILES.tokenizer);

    await Deno.writeTextFile(
      `${dir}/${TOKENIZER_FILE}`,
      tokenizerRecordText({ tokenizer: "tokenizer.json", sha256: sha256Hex(json) }),
    );
    const recorded = await findTokenizer(dir, 32000);
    assert(E.isRight(recorded) && recorded.right?.spec === dir);
    assertStringIncludes(recorded.right.how, `recorded in ${dir}/${TOKENIZER_FILE}`);

    // Replaced after the checkpoint was written: named, with both hashes.
    await Deno.writeTextFile(`${dir}/${HF_TOKENIZER_FILES.tokenizer}`, json.replace("BPE", "WPM"));
    const changed = await findTokenizer(dir, 32000);
    assert(E.isLeft(changed) && changed.left._tag === "ContentInvalid");
    assertStringIncludes(changed.left.message, sha256Hex(json));
    assertStringIncludes(changed.left.message, "replaced after the checkpoint was written");

    await Deno.remove(`${dir}/${HF_TOKENIZER_FILES.tokenizer}`);
    const gone = await findTokenizer(dir, 32000);
    assert(E.isLeft(gone) && gone.left._tag === "IoFailed");
    assertStringIncludes(gone.left.message, "no such file");

    await Deno.writeTextFile(`${dir}/${TOKENIZER_FILE}`, '{"tokenizer": "tokenizer.json"}');
    const noHash = await findTokenizer(dir, 32000);
    assert(E.isLeft(noHash) && noHash.left._tag === "ConfigInvalid");
    assertEquals(noHash.left.where, `${dir}/${TOKENIZER_FILE}: sha256`);
  }));

Deno.test("a run's data.tokenizer path in ../pipeline.yaml is the checkpoint's tokenizer", () =>
  withDir(async (dir) => {
    await Deno.mkdir(`${dir}/run/checkpoint`, { recursive: true });
    await Deno.writeTextFile(`${dir}/run/pipeline.yaml`, `data:\n  tokenizer: ${dir}/tok\n`);
    const found = await findTokenizer(`${dir}/run/checkpoint`, 128256);
    assert(E.isRight(found) && found.right?.spec === `${dir}/tok` && !found.right.guessed);
    assertStringIncludes(found.right.how, "data.tokenizer");
  }));

Deno.test("sha256Hex agrees with WebCrypto and the FIPS 180-2 example", async () => {
  assertEquals(
    sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  const text = "tokenizer 🙂 ü\n".repeat(100);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  assertEquals(sha256Hex(text), hex);
  assertEquals(sha256Hex(new TextEncoder().encode(text)), hex);
});

Deno.test("tokenizerFiles: HF's two files and the record naming a built-in", () => {
  const t = byteTokenizer();
  const files = tokenizerFiles("bytes", t);
  assertEquals(
    Object.keys(files).sort(),
    [
      TOKENIZER_FILE,
      HF_TOKENIZER_FILES.tokenizer,
      HF_TOKENIZER_FILES.config,
    ].sort(),
  );
  assertEquals(JSON.parse(files[TOKENIZER_FILE]!), { tokenizer: "bytes" });
  assertEquals(files[HF_TOKENIZER_FILES.tokenizer], t.hfFiles()["tokenizer.json"]);
  // A file-based tokenizer is recorded by the hash of the tokenizer.json written beside it.
  const fromFile = tokenizerFiles("/models/x/tokenizer.json", t);
  assertEquals(JSON.parse(fromFile[TOKENIZER_FILE]!), {
    tokenizer: "tokenizer.json",
    sha256: sha256Hex(t.hfFiles()["tokenizer.json"]),
  });
});

Deno.test("vocabProblem names both sizes and both files; a padded model vocabulary is fine", async () => {
  const model = { vocab: 32000, file: "/m/config.json: vocab_size" };
  assertEquals(vocabProblem({ vocabSize: 32000 }, "/t", model), undefined);
  assertEquals(vocabProblem({ vocabSize: 31999 }, "/t", model), undefined);
  const p = vocabProblem({ vocabSize: 128256 }, "/t", model)!;
  assertEquals(p.where, "/m/config.json: vocab_size");
  for (const s of ["32000", "128256", "/t/tokenizer.json"]) assertStringIncludes(p.message, s);
  assertEquals(tokenizerSource("gpt2"), "the built-in gpt2 tokenizer");
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, "{}");
    const shape = { vocab: 9 };
    assertEquals(await modelVocab({ source: dir, shape }, "hf"), {
      vocab: 9,
      file: `${dir}/config.json: vocab_size`,
    });
    assertEquals(
      (await modelVocab({ source: dir, shape }, "step")).file,
      `${dir}/config.json: vocab`,
    );
    assertEquals(
      (await modelVocab({ source: `${dir}/checkpoint`, shape }, "step")).file,
      `${dir}/checkpoint/../pipeline.yaml: model.vocab`,
    );
  });
});
