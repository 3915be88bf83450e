import { assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { openSafetensors, tensorValues } from "../store/mod.ts";
import { transpose } from "./layout.ts";
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  openPeftAdapter,
  peftConfig,
  peftTensorName,
  writePeftAdapter,
} from "./peft.ts";
import { left, loadAll, randomAdapters, right, TINY, withTempDir } from "./_test_util.ts";

const ADAPTERS = randomAdapters(TINY, { rank: 2, alpha: 6, layers: [0, 2], seed: 9 });
const OPTIONS = { baseModel: "out/hf", depth: 3, dtype: "float32" as const };

Deno.test("peftConfig() restricts the adapters to STEP's frozen layers", () => {
  const c = peftConfig(ADAPTERS, OPTIONS);
  assertEquals(c.peft_type, "LORA");
  assertEquals(c.task_type, "CAUSAL_LM");
  assertEquals([c.r, c.lora_alpha, c.lora_dropout, c.bias], [2, 6, 0, "none"]);
  assertEquals(c.target_modules, [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
  ]);
  assertEquals([c.layers_to_transform, c.layers_pattern], [[0, 2], "layers"]);
  assertEquals([c.use_rslora, c.use_dora, c.fan_in_fan_out], [false, false, false]);
  assertEquals(c.base_model_name_or_path, "out/hf");
  const all = peftConfig({ ...ADAPTERS, layers: [0, 1, 2] }, OPTIONS);
  assertEquals([all.layers_to_transform, all.layers_pattern], [null, null]);
});

Deno.test("peftConfig() lists full module names when the pairs are not a product", () => {
  const partial = { ...ADAPTERS, tensors: ADAPTERS.tensors.slice(0, 4) };
  const c = peftConfig(partial, OPTIONS);
  assertEquals(c.target_modules, [
    "model.layers.0.self_attn.k_proj",
    "model.layers.0.self_attn.q_proj",
  ]);
  assertEquals(c.layers_to_transform, null);
});

Deno.test("writePeftAdapter() stores PEFT names with A [r, in] and B [out, r]", async () => {
  await withTempDir(async (dir) => {
    assertEquals(right(await writePeftAdapter(ADAPTERS, dir, OPTIONS)()), [
      ADAPTER_CONFIG,
      ADAPTER_WEIGHTS,
    ]);
    const reader = right(await openSafetensors(`${dir}/${ADAPTER_WEIGHTS}`)());
    const ours = await loadAll({
      shape: TINY,
      dtype: "F32",
      tensors: [],
      adapters: ADAPTERS,
      source: "",
      close: () => {},
    });
    try {
      assertEquals(reader.header.metadata, { format: "pt" });
      assertEquals(reader.header.tensors.length, 2 * 7 * 2);
      const a = "base_model.model.model.layers.2.mlp.down_proj.lora_A.weight";
      const b = "base_model.model.model.layers.2.mlp.down_proj.lora_B.weight";
      assertEquals(peftTensorName("model.layers.2.mlp.down_proj.lora_A"), a);
      assertEquals(reader.info(a)?.shape, [2, 12]);
      assertEquals(reader.info(b)?.shape, [8, 2]);
      const stored = tensorValues(right(await reader.read(a)())) as Float32Array;
      assertEquals(stored, transpose(ours.get("model.layers.2.mlp.down_proj.lora_A")!, 12, 2));
    } finally {
      reader.close();
    }
  });
});

Deno.test("openPeftAdapter() reads back what writePeftAdapter() wrote", async () => {
  await withTempDir(async (dir) => {
    right(await writePeftAdapter(ADAPTERS, dir, OPTIONS)());
    const opened = right(await openPeftAdapter(dir, TINY)());
    try {
      assertEquals([opened.rank, opened.alpha, opened.scale], [2, 6, 3]);
      assertEquals(opened.layers, [0, 2]);
      assertEquals(opened.targets.length, 7);
      const want = await loadAll({
        shape: TINY,
        dtype: "F32",
        tensors: [],
        adapters: ADAPTERS,
        source: "",
        close: () => {},
      });
      const got = await loadAll({
        shape: TINY,
        dtype: "F32",
        tensors: [],
        adapters: opened,
        source: "",
        close: () => {},
      });
      assertEquals(got, want);
    } finally {
      opened.close();
    }
  });
});

Deno.test("openPeftAdapter() refuses configs and tensors it cannot merge", async () => {
  await withTempDir(async (dir) => {
    right(await writePeftAdapter(ADAPTERS, dir, OPTIONS)());
    const config = JSON.parse(await Deno.readTextFile(`${dir}/${ADAPTER_CONFIG}`));
    const cases: [Record<string, unknown>, string, string][] = [
      [{ ...config, peft_type: "IA3" }, "peft_type", '"LORA"'],
      [{ ...config, r: 0 }, "r", "positive integer"],
      [{ ...config, use_dora: true }, "use_dora", "cannot merge"],
      [{ ...config, rank_pattern: { q_proj: 4 } }, "rank_pattern", "not supported"],
    ];
    for (const [json, key, fragment] of cases) {
      await Deno.writeTextFile(`${dir}/${ADAPTER_CONFIG}`, JSON.stringify(json));
      const e = left(await openPeftAdapter(dir, TINY)());
      assertEquals((e as { where: string }).where, `${dir}/${ADAPTER_CONFIG}: ${key}`);
      assertStringIncludes(e.message, fragment);
    }
    await Deno.writeTextFile(`${dir}/${ADAPTER_CONFIG}`, JSON.stringify({ ...config, r: 3 }));
    assertStringIncludes(left(await openPeftAdapter(dir, TINY)()).message, "r = 3");
    await Deno.writeTextFile(`${dir}/${ADAPTER_CONFIG}`, JSON.stringify(config));
    assertStringIncludes(
      left(await openPeftAdapter(dir, { ...TINY, layers: 2 })()).message,
      'unexpected tensor "base_model.model.model.layers.2.',
    );
  });
});

Deno.test("openPeftAdapter() scales rank-stabilised LoRA by α/√r", async () => {
  await withTempDir(async (dir) => {
    right(await writePeftAdapter(ADAPTERS, dir, OPTIONS)());
    const config = JSON.parse(await Deno.readTextFile(`${dir}/${ADAPTER_CONFIG}`));
    await Deno.writeTextFile(
      `${dir}/${ADAPTER_CONFIG}`,
      JSON.stringify({ ...config, use_rslora: true }),
    );
    const opened = right(await openPeftAdapter(dir, TINY)());
    assertEquals(opened.scale, 6 / Math.sqrt(2));
    opened.close();
  });
});
