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

const LITTLE_ENDIAN = true;

/** Overwrites elements of an F32 tensor of a safetensors file in place. */
async function poison(path: string, tensor: string, value: number, at: readonly number[]) {
  const bytes = await Deno.readFile(path);
  const view = new DataView(bytes.buffer);
  const header = Number(view.getBigUint64(0, LITTLE_ENDIAN));
  const json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + header)));
  const [begin] = json[tensor].data_offsets as [number, number];
  for (const i of at) view.setFloat32(8 + header + begin + 4 * i, value, LITTLE_ENDIAN);
  await Deno.writeFile(path, bytes);
}

Deno.test("ckpt refuses an output folder that holds its input, and accepts report.json's model path", async () => {
  await withRun(async (dir) => {
    const before = names(`${dir}/run/final`);
    for (const [out, how] of [["run", "holds"], ["run/final", "is"], ["", "holds"]]) {
      const r = await run("export", `${dir}/run/final`, `${dir}/${out}`, "--force");
      assertEquals(r.code, 2, out);
      assertStringIncludes(r.err, `${how} the input "${dir}/run/final"`);
    }
    assertEquals(names(`${dir}/run/final`), before);
    // report.json gives `finalCheckpoint` as the model file; it opens the folder that holds it.
    const viaFile = await run("export", `${dir}/run/final/model.safetensors`, `${dir}/hf`);
    assertEquals(viaFile.code, 0, viaFile.err);
    assertEquals(names(`${dir}/hf`), ["config.json", "model.safetensors"]);
    const merge = await run("merge", `${dir}/hf`, `${dir}/hf/adapter`, `${dir}/hf`, "--force");
    assertEquals(merge.code, 2);
    assertStringIncludes(merge.err, `is the input "${dir}/hf"`);
    const adapter = await run("merge", `${dir}/run/final`, `${dir}/hf/adapter`, `${dir}/hf`);
    assertEquals(adapter.code, 2);
    assertStringIncludes(adapter.err, `holds the adapter "${dir}/hf/adapter"`);
  });
});

Deno.test("ckpt removes what killed writes left beside its output", async () => {
  await withRun(async (dir) => {
    // Two dead writers (pids 2^31 - 1 and 2^31 - 2) of the same output.
    for (const tmp of [".hf.tmp-2147483647-a1", ".hf.tmp-2147483646-b2"]) {
      await Deno.mkdir(`${dir}/${tmp}`);
      await Deno.writeFile(`${dir}/${tmp}/model.safetensors`, new Uint8Array(1024));
    }
    assertEquals((await run("export", `${dir}/run/final`, `${dir}/hf`)).code, 0);
    assertEquals(names(dir), ["hf", "run"]);
  });
});

Deno.test("ckpt import refuses non-finite weights by name unless --allow-non-finite", async () => {
  await withRun(async (dir) => {
    assertEquals((await run("export", `${dir}/run/final`, `${dir}/hf`)).code, 0);
    await poison(`${dir}/hf/model.safetensors`, "model.norm.weight", NaN, [1]);
    const refused = await run("import", `${dir}/hf`, `${dir}/back`);
    assertEquals(refused.code, 2, refused.err);
    assertStringIncludes(refused.err, 'tensor "model.norm.weight" holds NaN at element 1');
    assertEquals(names(dir), ["hf", "run"]);
    const allowed = await run("import", `${dir}/hf`, `${dir}/back`, "--allow-non-finite");
    assertEquals(allowed.code, 0, allowed.err);
  });
});

Deno.test("ckpt logits refuses an empty or out-of-vocabulary token and never writes null", async () => {
  await withRun(async (dir) => {
    const out = `${dir}/logits.json`;
    for (const tokens of ["", "1,,2", "1,x", "13"]) {
      const r = await run("logits", `${dir}/run/final`, "--tokens", tokens, "--out", out);
      assertEquals(r.code, 2, tokens);
      assertStringIncludes(r.err, "--tokens");
    }
    // A model with an infinite weight: refused, and no JSON with nulls is written.
    assertEquals((await run("export", `${dir}/run/final`, `${dir}/hf`)).code, 0);
    await poison(`${dir}/hf/model.safetensors`, "model.norm.weight", Infinity, [
      ...Array(8).keys(),
    ]);
    const r = await run("logits", `${dir}/hf`, "--tokens", "1,2", "--out", out);
    assertEquals(r.code, 2, r.err);
    assertStringIncludes(r.err, "not finite");
    assert(!(await Deno.stat(out).then(() => true, () => false)));
  });
});

Deno.test("ckpt refuses sizes no machine holds before building anything", async () => {
  await withRun(async (dir) => {
    assertEquals((await run("export", `${dir}/run/final`, `${dir}/hf`)).code, 0);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/hf/config.json`));
    await Deno.writeTextFile(
      `${dir}/hf/config.json`,
      JSON.stringify({ ...config, num_hidden_layers: 1_000_000_000 }),
    );
    const imported = await run("import", `${dir}/hf`, `${dir}/back`);
    assertEquals(imported.code, 2, imported.err);
    assertStringIncludes(imported.err, "65536");
    const grown = await run("grow", `${dir}/run/final`, `${dir}/big`, "--add", "1000000000");
    assertEquals(grown.code, 2, grown.err);
    assertStringIncludes(grown.err, "growing to 1000000002 layers");
    assertEquals(names(dir), ["hf", "run"]);
  });
});
