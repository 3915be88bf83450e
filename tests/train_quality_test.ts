/**
 * Standard pre-training through `deno task run CONFIG`: a tiny model learns
 * the built-in corpus and tinyshakespeare (validation loss well below the
 * unigram entropy), and bad input fails with a message naming it.
 */
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main } from "../cli/run.ts";
import { capture, type Captured } from "./cli_capture.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SHAKESPEARE = `${ROOT}../shared/data/tinyshakespeare/input.txt`;

function config(data: Record<string, unknown>, training: Record<string, unknown> = {}): string {
  return YAML.stringify({
    name: "quality",
    model: { hidden: 64, intermediate: 176, heads: 4, layers: 2, vocab: 257, maxSeqLen: 128 },
    training: {
      backend: "wasm",
      seqLen: 64,
      microBatch: 16,
      batchTokens: 2048,
      lr: 3e-3,
      warmup: 10,
      steps: 80,
      evalEvery: 40,
      evalBatches: 4,
      checkpointEvery: 40,
      logEvery: 20,
      seed: 1,
      ...training,
    },
    data: { tokenizer: "bytes", cacheDir: `${ROOT}.cache/tokens`, ...data },
  });
}

async function run(text: string, ...flags: string[]): Promise<Captured & { dir: string }> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/c.yaml`, text);
  return { ...(await capture(main, [`${dir}/c.yaml`, "--out", `${dir}/out`, ...flags])), dir };
}

/** A short finished run, whose checkpoint the resume tests then damage. */
async function finishedRun(): Promise<string> {
  const text = config({ source: "builtin", builtinBytes: 50000 }, { steps: 4, checkpointEvery: 2 });
  const first = await run(text);
  assertEquals(first.code, 0, first.err);
  return first.dir;
}

function resume(dir: string): Promise<Captured> {
  return capture(main, [`${dir}/c.yaml`, "--out", `${dir}/out`, "--resume"]);
}

async function learns(
  data: Record<string, unknown>,
  training: Record<string, unknown> = {},
): Promise<void> {
  const r = await run(config(data, training));
  assertEquals(r.code, 0, r.err);
  const report = JSON.parse(await Deno.readTextFile(`${r.dir}/out/report.json`));
  const unigram: number = report.unigramNats;
  assert(unigram > 2, `unigram entropy ${unigram}`);
  assert(
    report.finalValLoss < 0.7 * unigram,
    `val loss ${report.finalValLoss} is not well below the unigram entropy ${unigram}`,
  );
  if (report.floorNats !== null) {
    assert(report.finalValLoss > report.floorNats, "no model beats the floor");
  }
}

const OPTS = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  ...OPTS,
  name: "run CONFIG: a tiny model learns the built-in corpus well below its unigram entropy",
  fn: () => learns({ source: "builtin", builtinBytes: 200000 }),
});

Deno.test({
  ...OPTS,
  name: "run CONFIG: a tiny model learns tinyshakespeare well below its unigram entropy",
  ignore: !(() => {
    try {
      return Deno.statSync(SHAKESPEARE).isFile;
    } catch {
      console.log(`skipping: ${SHAKESPEARE} is absent`);
      return false;
    }
  })(),
  // Characters of English text take longer than the grammar: more steps at a higher rate.
  fn: () => learns({ source: SHAKESPEARE }, { steps: 120, lr: 6e-3 }),
});

const BAD: readonly [string, string, string[], string][] = [
  [
    "an unknown backend",
    config({ source: "builtin" }),
    ["--backend", "tpu"],
    'unknown backend "tpu"',
  ],
  [
    "a missing data path",
    config({ source: "/nonexistent/corpus.txt" }),
    [],
    "/nonexistent/corpus.txt",
  ],
  ["a sequence longer than the data", config({ source: "builtin", builtinBytes: 300 }), [], "seq"],
  [
    "a vocabulary smaller than the tokenizer",
    config({ source: "builtin" }).replace("vocab: 257", "vocab: 100"),
    [],
    "model.vocab",
  ],
  [
    "an inconsistent batch",
    config({ source: "builtin" }, { batchTokens: 1000 }),
    [],
    "training.batchTokens",
  ],
];

for (const [what, text, flags, fragment] of BAD) {
  Deno.test({
    ...OPTS,
    name: `run CONFIG rejects ${what} with a message naming it`,
    fn: async () => {
      const r = await run(text, ...flags);
      assert(r.code !== 0);
      assertStringIncludes(r.err, fragment);
    },
  });
}

Deno.test({
  ...OPTS,
  name: "run CONFIG rejects an empty corpus",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    const r = await run(config({ source: `${dir}/empty.txt` }));
    assert(r.code !== 0);
    assertStringIncludes(r.err, "empty.txt");
  },
});

Deno.test({
  ...OPTS,
  name: "run --resume rejects a corrupted checkpoint by name",
  fn: async () => {
    const dir = await finishedRun();
    await Deno.writeFile(`${dir}/out/checkpoint/model.safetensors`, new Uint8Array([1, 2, 3]));
    const r = await resume(dir);
    assert(r.code !== 0);
    assertStringIncludes(r.err, "model.safetensors");
  },
});

Deno.test({
  ...OPTS,
  name: "run --resume rejects a checkpoint whose progress record is damaged",
  fn: async () => {
    const dir = await finishedRun();
    const path = `${dir}/out/checkpoint/state.json`;
    const state = JSON.parse(await Deno.readTextFile(path));
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...state, progress: { ...state.progress, stepInNode: -3 } }),
    );
    const r = await resume(dir);
    assert(r.code !== 0);
    assertStringIncludes(r.err, "progress.stepInNode");
  },
});
