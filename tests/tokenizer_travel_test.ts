/**
 * The tokenizer travels with the model: every checkpoint writer (a run's `final/` and
 * `checkpoint/`, `ckpt export`, `import`, `grow`, `merge`) puts Hugging Face's tokenizer files
 * and STEP's record beside the weights, and a tokenizer whose ids do not fit the model's
 * embedding is refused before anything runs (eval, generate, finetune, a run config).
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main as ckpt } from "../cli/ckpt.ts";
import { main as evalMain } from "../cli/eval.ts";
import { main as finetuneMain } from "../cli/finetune.ts";
import { main as generateMain } from "../cli/generate.ts";
import { main as runMain } from "../cli/run.ts";
import {
  attachedSnapshot,
  HF_TOKENIZER_FILES,
  initialSnapshot,
  TOKENIZER_FILE,
  tokenizerFiles,
} from "../checkpoint/mod.ts";
import { loraNames } from "../base/mod.ts";
import { byteTokenizer, gpt2Tokenizer } from "../data/mod.ts";
import { runDirStore, runTokenizer } from "../effects/mod.ts";
import { BYTES_FILES, COLORS_TASK, colorsData, TINY_SHAPE, withTempDir } from "./tiny_model.ts";
import { capture, type Captured } from "./cli_capture.ts";

const TOKENIZER_FILES = [
  HF_TOKENIZER_FILES.config,
  HF_TOKENIZER_FILES.tokenizer,
  TOKENIZER_FILE,
].sort();

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => e.name).sort();
}

/** Asserts that `dir` carries the byte tokenizer: HF's files and the record naming it. */
async function carriesBytes(dir: string): Promise<void> {
  for (const f of TOKENIZER_FILES) assert(names(dir).includes(f), `${dir}: ${names(dir)}`);
  assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/${TOKENIZER_FILE}`)), {
    tokenizer: "bytes",
  });
  const hf = byteTokenizer().hfFiles();
  assertEquals(
    await Deno.readTextFile(`${dir}/${HF_TOKENIZER_FILES.tokenizer}`),
    hf["tokenizer.json"],
  );
  assertEquals(
    await Deno.readTextFile(`${dir}/${HF_TOKENIZER_FILES.config}`),
    hf["tokenizer_config.json"],
  );
}

function ckptRun(...args: string[]): Promise<Captured> {
  return capture(ckpt, args);
}

async function ok(...args: string[]): Promise<Captured> {
  const r = await ckptRun(...args);
  assertEquals(r.code, 0, r.err);
  return r;
}

Deno.test("every checkpoint writer carries the tokenizer beside the weights", () =>
  withTempDir("tok-travel-", async (dir) => {
    // A run's final/ and a checkpoint/ taken during a PET stage (adapters on one projection).
    const store = runDirStore(`${dir}/run`, BYTES_FILES);
    const base = initialSnapshot(TINY_SHAPE, TINY_SHAPE.layers, 3);
    assert(E.isRight(await store.saveFinal(base, TINY_SHAPE)()));
    const q = "model.layers.0.self_attn.q_proj.weight";
    const attached = attachedSnapshot(base, {
      rank: 2,
      alpha: 4,
      seed: 1,
      adapted: [q],
      trainable: [loraNames(q).a, loraNames(q).b],
    });
    assert(E.isRight(attached), E.isLeft(attached) ? attached.left : "");
    // A non-zero B, so the merge changes the weights and the adapter is really carried.
    const b = attached.right.params.find((p) => p.name === loraNames(q).b)!;
    b.data.fill(0.01);
    assert(
      E.isRight(await store.saveCheckpoint({ snapshot: attached.right, progress: {} })()),
    );
    await carriesBytes(`${dir}/run/final`);
    await carriesBytes(`${dir}/run/checkpoint`);

    const exported = await ok("export", `${dir}/run/final`, `${dir}/hf`);
    assertEquals(
      names(`${dir}/hf`),
      ["config.json", "model.safetensors", ...TOKENIZER_FILES].sort(),
    );
    assertStringIncludes(exported.out, "Tokenizer bytes (257 ids; recorded in");
    await carriesBytes(`${dir}/hf`);
    // transformers takes generation's special ids from config.json: the byte tokenizer's.
    const config = JSON.parse(await Deno.readTextFile(`${dir}/hf/config.json`));
    assertEquals([config.bos_token_id, config.eos_token_id], [null, 256]);
    await ok("import", `${dir}/hf`, `${dir}/imported`);
    await carriesBytes(`${dir}/imported`);
    await ok("grow", `${dir}/run/final`, `${dir}/grown`, "--add", "1");
    await carriesBytes(`${dir}/grown`);
    await Deno.writeTextFile(`${dir}/shape.json`, JSON.stringify(TINY_SHAPE));
    const shape = ["--shape", `${dir}/shape.json`];
    await ok("export", `${dir}/run/checkpoint`, `${dir}/hf-pet`, ...shape);
    await carriesBytes(`${dir}/hf-pet`);
    assert(names(`${dir}/hf-pet/adapter`).includes("adapter_config.json"));
    await ok("merge", `${dir}/hf-pet`, `${dir}/hf-pet/adapter`, `${dir}/merged`);
    await carriesBytes(`${dir}/merged`);

    // An HF folder without a tokenizer: imported without one, and the command says so.
    await Deno.mkdir(`${dir}/bare`);
    for (const f of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(`${dir}/hf/${f}`, `${dir}/bare/${f}`);
    }
    const bare = await ok("import", `${dir}/bare`, `${dir}/bare-in`);
    // Exported on, still without one: config.json names no special ids it cannot know.
    await ok("export", `${dir}/bare-in`, `${dir}/bare-hf`);
    const bareConfig = JSON.parse(await Deno.readTextFile(`${dir}/bare-hf/config.json`));
    assert(!("bos_token_id" in bareConfig) && !("eos_token_id" in bareConfig));
    assertStringIncludes(bare.out, "No tokenizer");
    assertStringIncludes(bare.out, "--tokenizer");
    assertEquals(names(`${dir}/bare-in`), ["config.json", "model.safetensors"]);

    // A record naming a tokenizer larger than the model: refused, nothing written.
    await Deno.writeTextFile(`${dir}/bare/${TOKENIZER_FILE}`, '{"tokenizer": "gpt2"}\n');
    const big = await ckptRun("export", `${dir}/bare`, `${dir}/never`);
    assertEquals(big.code, 2);
    for (const s of ["257", "50257", `${dir}/bare/config.json: vocab_size`]) {
      assertStringIncludes(big.err, s);
    }
    assert(
      !names(dir).includes("never") && ![...Deno.readDirSync(dir)].some((e) => e.name === "never"),
    );
  }));

/** A byte-shaped model (vocab 257) whose checkpoint records GPT-2's 50,257-id tokenizer. */
async function mismatched(dir: string): Promise<string> {
  const gpt2 = await gpt2Tokenizer()();
  assert(E.isRight(gpt2));
  const files = tokenizerFiles("gpt2", gpt2.right);
  const saved = await runDirStore(`${dir}/run`, files).saveFinal(
    initialSnapshot(TINY_SHAPE, TINY_SHAPE.layers, 1),
    TINY_SHAPE,
  )();
  assert(E.isRight(saved));
  return `${dir}/run/final`;
}

/** The refusal names both vocabularies and both files. */
function namesBoth(r: { readonly code: number; readonly text: string }, final: string): void {
  assertEquals(r.code, 2, r.text);
  for (const s of ["257", "50257", `${final}/config.json: vocab`, "gpt2 tokenizer"]) {
    assertStringIncludes(r.text, s);
  }
}

Deno.test({
  name: "a tokenizer larger than the model's vocabulary is refused by eval, generate and finetune",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withTempDir("tok-vocab-", async (dir) => {
      const final = await mismatched(dir);
      await Deno.writeTextFile(`${dir}/colors.yaml`, COLORS_TASK);
      await Deno.writeTextFile(`${dir}/colors.jsonl`, colorsData(4));
      const ev = await capture(evalMain, [
        final,
        "--task-file",
        `${dir}/colors.yaml`,
        "--backend",
        "cpu",
      ]);
      namesBoth({ code: ev.code, text: ev.err }, final);

      const notes: string[] = [];
      const io = { write: () => {}, line: () => {}, note: (l: string) => notes.push(l) };
      const gen = await generateMain([final, "--prompt", "Hi", "--backend", "cpu"], io);
      namesBoth({ code: gen, text: notes.join("\n") }, final);

      await Deno.writeTextFile(
        `${dir}/alpaca.json`,
        JSON.stringify([{ instruction: "a", output: "b" }, { instruction: "c", output: "d" }]),
      );
      const ft = await capture(
        (a) => finetuneMain(a),
        [final, "--data", `${dir}/alpaca.json`, "--out", `${dir}/ft`, "--backend", "cpu"],
      );
      namesBoth({ code: ft.code, text: ft.err }, final);
      assert(![...Deno.readDirSync(dir)].some((e) => e.name === "ft"), "finetune wrote nothing");

      // --tokenizer given: the same refusal; a tokenizer that fits is used.
      const given = await capture(evalMain, [
        `${dir}/run/final`,
        "--task-file",
        `${dir}/colors.yaml`,
        "--tokenizer",
        "bytes",
        "--backend",
        "cpu",
      ]);
      assertEquals(given.code, 0, given.err);
      assertStringIncludes(given.err, "given with --tokenizer");
    }),
});

Deno.test({
  name: "run refuses a config whose model.vocab cannot hold data.tokenizer's ids, before any data",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withTempDir("tok-run-", async (dir) => {
      await Deno.writeTextFile(
        `${dir}/c.yaml`,
        YAML.stringify({
          model: { hidden: 16, intermediate: 32, heads: 2, layers: 1, vocab: 257, maxSeqLen: 32 },
          training: { backend: "cpu", seqLen: 16, microBatch: 2, batchTokens: 32, steps: 2 },
          // A source that does not exist: the vocabulary is refused before it is looked for.
          data: { source: `${dir}/absent.txt`, tokenizer: "gpt2" },
        }),
      );
      const r = await capture(runMain, [`${dir}/c.yaml`, "--out", `${dir}/out`]);
      assertEquals(r.code, 2, r.err);
      for (const s of [`${dir}/c.yaml: model.vocab`, "257", "50257", "gpt2 tokenizer"]) {
        assertStringIncludes(r.err, s);
      }
      assert(!r.err.includes("absent.txt"), r.err);
    }),
});

Deno.test("a resumed run keeps its tokenizer: another data.tokenizer is refused", () =>
  withTempDir("tok-resume-", async (dir) => {
    const store = runDirStore(`${dir}/run`, BYTES_FILES);
    const snap = initialSnapshot(TINY_SHAPE, TINY_SHAPE.layers, 1);
    assert(E.isRight(await store.saveCheckpoint({ snapshot: snap, progress: {} })()));
    const model = { vocab: 60000, file: "c.yaml: model.vocab" };
    const o = { out: `${dir}/run`, resume: true, model, where: "c.yaml: data.tokenizer" };
    const same = await runTokenizer("bytes", o);
    assert(E.isRight(same) && same.right.tokenizer.name === "bytes");
    const other = await runTokenizer("gpt2", o);
    assert(E.isLeft(other) && other.left._tag === "ConfigInvalid");
    assertEquals(other.left.where, "c.yaml: data.tokenizer");
    assertStringIncludes(other.left.message, "not the tokenizer the run was trained with");
    // A fresh run (or a resume with no checkpoint yet) takes data.tokenizer as it is.
    assert(E.isRight(await runTokenizer("gpt2", { ...o, resume: false })));
    assert(E.isRight(await runTokenizer("gpt2", { ...o, out: `${dir}/none` })));
  }));
