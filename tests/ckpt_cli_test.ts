/**
 * `deno task ckpt` end to end: usage, refusals of bad input (exit codes,
 * messages naming the file or flag, nothing written), and `logits`.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main as ckpt } from "../cli/ckpt.ts";
import { runDirStore } from "../effects/run_dir.ts";
import {
  disposeParams,
  exportParams,
  forwardLogits,
  initBackend,
  initParams,
} from "../kernels/mod.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { capture, type Captured } from "./cli_capture.ts";

const SHAPE: LlamaShape = {
  hidden: 8,
  intermediate: 12,
  heads: 2,
  kvHeads: 1,
  layers: 2,
  vocab: 13,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 8,
};

function run(...args: string[]): Promise<Captured> {
  return capture(ckpt, args);
}

async function withRun(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ckpt-cli-" });
  try {
    assert(E.isRight(await initBackend("cpu")));
    const params = initParams(SHAPE, 2, 1);
    const records = await exportParams(params);
    disposeParams(params);
    const saved = await runDirStore(`${dir}/run`).saveFinal({
      params: records,
      moments: [],
      meta: { trainable: [], loraScale: 1, adamStep: 0 },
    }, SHAPE)();
    assert(E.isRight(saved));
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("ckpt --help prints the commands; a bad command line exits 2", async () => {
  const help = await run("--help");
  assertEquals(help.code, 0);
  for (const c of ["export", "import", "grow", "merge", "logits"]) {
    assertStringIncludes(help.out, c);
  }
  const cases: [string[], string][] = [
    [["frobnicate", "a", "b"], "expected a command"],
    [["export", "a"], "export takes 2 path(s), got 1"],
    [["import", "a", "b", "--add", "2"], '--add: not an option of "import"'],
    [["grow", "a", "b"], "--add: is required"],
    [["grow", "a", "b", "--add", "0"], "--add: expected an integer ≥ 1"],
    [["grow", "a", "b", "--add", "1", "--placement", "top"], "--placement: expected one of upper"],
    [["export", "a", "b", "--dtype", "fp8"], "--dtype: expected one of float32, float16, bfloat16"],
    [["export", "a", "b", "--max-shard-size", "lots"], "--max-shard-size"],
    [["export", "a", "b", "--bogus"], "Unknown option"],
  ];
  for (const [args, fragment] of cases) {
    const r = await run(...args);
    assertEquals(r.code, 2, args.join(" "));
    assertStringIncludes(r.err, fragment);
  }
});

Deno.test("ckpt export writes a Hugging Face directory and says what it wrote", async () => {
  await withRun(async (dir) => {
    const r = await run("export", `${dir}/run/final`, `${dir}/hf`, "--dtype", "float16");
    assertEquals(r.code, 0, r.err);
    assertStringIncludes(r.out, "Exported");
    assertStringIncludes(r.out, `→ ${dir}/hf: model.safetensors, config.json`);
    assertEquals(names(`${dir}/hf`), ["config.json", "model.safetensors"]);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/hf/config.json`));
    assertEquals([config.torch_dtype, config.num_hidden_layers, config.num_key_value_heads], [
      "float16",
      2,
      1,
    ]);
  });
});

Deno.test("ckpt refuses bad inputs with a message naming them and writes nothing", async () => {
  await withRun(async (dir) => {
    const missing = await run("export", `${dir}/nope`, `${dir}/out`);
    assertEquals(missing.code, 4);
    assertStringIncludes(missing.err, `${dir}/nope`);
    const runDir = await run("export", `${dir}/run`, `${dir}/out`);
    assertStringIncludes(runDir.err, `try ${dir}/run/final`);
    // A config.json that disagrees with the weights.
    await Deno.mkdir(`${dir}/bad`);
    await Deno.copyFile(`${dir}/run/final/model.safetensors`, `${dir}/bad/model.safetensors`);
    await Deno.writeTextFile(`${dir}/bad/config.json`, JSON.stringify({ ...SHAPE, vocab: 12 }));
    const bad = await run("export", `${dir}/bad`, `${dir}/out`);
    assertEquals(bad.code, 2);
    assertStringIncludes(bad.err, '"model.embed_tokens.weight" has shape [13,8]');
    assertEquals(names(dir), ["bad", "run"]);
    // An existing output is kept unless --force.
    assertEquals((await run("export", `${dir}/run/final`, `${dir}/hf`)).code, 0);
    const again = await run("export", `${dir}/run/final`, `${dir}/hf`);
    assertEquals(again.code, 2);
    assertStringIncludes(again.err, "--force");
    assertEquals((await run("export", `${dir}/run/final`, `${dir}/hf`, "--force")).code, 0);
    assertEquals(names(dir), ["bad", "hf", "run"]);
    const merge = await run("merge", `${dir}/hf`, `${dir}/hf`, `${dir}/merged`);
    assertEquals(merge.code, 4);
    assertStringIncludes(merge.err, "adapter_config.json");
    assertEquals(names(dir), ["bad", "hf", "run"]);
  });
});

Deno.test("ckpt logits writes the engine's logits as JSON", async () => {
  await withRun(async (dir) => {
    const out = `${dir}/logits.json`;
    const r = await run("logits", `${dir}/run/final`, "--tokens", "1,2,3;4,5,6", "--out", out);
    assertEquals(r.code, 0, r.err);
    const json = JSON.parse(await Deno.readTextFile(out));
    assertEquals(json.shape, [2, 3, 13]);
    assertEquals(json.tokens, [[1, 2, 3], [4, 5, 6]]);
    const params = initParams(SHAPE, 2, 1);
    const t = forwardLogits({ shape: SHAPE, params, loraScale: 1 }, {
      tokens: new Int32Array([1, 2, 3, 4, 5, 6]),
      batch: 2,
      seq: 3,
    });
    const want = Array.from(await t.data());
    t.dispose();
    disposeParams(params);
    assertEquals(json.logits.flat(2), want);
    const tooLong = await run(
      "logits",
      `${dir}/run/final`,
      "--tokens",
      "1,2,3,4,5,6,7,8,9",
      "--out",
      out,
    );
    assertEquals(tooLong.code, 5);
    assertStringIncludes(tooLong.err, "maxSeqLen");
    const ragged = await run("logits", `${dir}/run/final`, "--tokens", "1,2;3", "--out", out);
    assertEquals(ragged.code, 2);
  });
});
