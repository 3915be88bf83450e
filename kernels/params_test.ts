import * as tf from "@tensorflow/tfjs-core";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../tests/assert.ts";
import { type LlamaShape, paramCounts } from "../base/llama_shape.ts";
import { disposeParams, exportParams, importParams, initParams } from "./params.ts";
import { depthOf } from "../checkpoint/mod.ts";
import { backendTest } from "./_test_util.ts";
import {
  isAdapterName,
  layerOfName,
  loraNames,
  paramShapes,
  projectionWeight,
} from "../base/param_names.ts";

const shape: LlamaShape = {
  hidden: 32,
  intermediate: 64,
  heads: 4,
  kvHeads: 2,
  layers: 4,
  vocab: 50,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};

Deno.test("paramShapes() uses Hugging Face names with [in, out] linear weights", () => {
  const shapes = new Map(paramShapes(shape, 2));
  assertEquals(shapes.get("model.embed_tokens.weight"), [50, 32]);
  assertEquals(shapes.get("model.layers.1.self_attn.q_proj.weight"), [32, 32]);
  assertEquals(shapes.get("model.layers.1.self_attn.k_proj.weight"), [32, 16]);
  assertEquals(shapes.get("model.layers.0.mlp.down_proj.weight"), [64, 32]);
  assertEquals(shapes.get("model.layers.0.post_attention_layernorm.weight"), [32]);
  assertEquals(shapes.get("lm_head.weight"), [32, 50]);
  assertEquals(shapes.size, 1 + 2 * 9 + 2);
  assert(!new Map(paramShapes({ ...shape, tiedEmbeddings: true }, 2)).has("lm_head.weight"));
});

Deno.test("paramShapes() at full depth counts what the planner counts", () => {
  for (const s of [shape, { ...shape, tiedEmbeddings: true }, { ...shape, kvHeads: 4 }]) {
    const total = paramShapes(s, s.layers).reduce((n, [, d]) => n + d.reduce((a, b) => a * b), 0);
    assertEquals(total, paramCounts(s).total);
  }
});

Deno.test("names: projections, adapters and layer indices", () => {
  assertEquals(projectionWeight(3, "gate"), "model.layers.3.mlp.gate_proj.weight");
  assertEquals(loraNames(projectionWeight(3, "q")), {
    a: "model.layers.3.self_attn.q_proj.lora_A",
    b: "model.layers.3.self_attn.q_proj.lora_B",
  });
  assert(isAdapterName("model.layers.3.self_attn.q_proj.lora_B"));
  assert(!isAdapterName("model.layers.3.self_attn.q_proj.weight"));
  assertEquals(layerOfName("model.layers.12.input_layernorm.weight"), 12);
  assertEquals(layerOfName("model.norm.weight"), undefined);
});

backendTest(
  "initParams() draws N(0, 0.02²) matrices and unit norms, reproducibly per name",
  async () => {
    const a = initParams(shape, 2, 7);
    const b = initParams(shape, 3, 7);
    const c = initParams(shape, 2, 8);
    assertEquals(depthOf(a.keys()), 2);
    assertEquals(depthOf(b.keys()), 3);
    const up = projectionWeight(1, "up");
    const values = (await a.get(up)!.data()) as Float32Array;
    const mean = values.reduce((s, x) => s + x, 0) / values.length;
    const std = Math.sqrt(values.reduce((s, x) => s + (x - mean) ** 2, 0) / values.length);
    assertAlmostEquals(mean, 0, 0.002);
    assertAlmostEquals(std, 0.02, 0.001);
    // Layer 1 does not depend on the depth; another seed gives other values.
    assertEquals(await b.get(up)!.data(), values);
    assert((await c.get(up)!.data())[0] !== values[0]);
    assertEquals(
      [...(await a.get("model.layers.0.input_layernorm.weight")!.data())],
      Array(32).fill(1),
    );
    assertEquals([...(await a.get("model.norm.weight")!.data())], Array(32).fill(1));
    for (const p of [a, b, c]) disposeParams(p);
  },
);

backendTest("exportParams() and importParams() round-trip names, shapes and values", async () => {
  const before = tf.memory().numTensors;
  const params = initParams(shape, 1, 3);
  const records = await exportParams(params);
  assertEquals(records.map((r) => r.name), [...params.keys()]);
  const back = importParams(records);
  for (const [name, t] of params) {
    assertEquals(back.get(name)!.shape, t.shape);
    assertEquals(await back.get(name)!.data(), await t.data());
  }
  assertThrows(() => importParams([{ name: "x", shape: [2, 2], data: new Float32Array(3) }]));
  disposeParams(params);
  disposeParams(back);
  assertEquals(tf.memory().numTensors, before);
});
