import { assert, assertEquals } from "../tests/assert.ts";
import { hfShape, isLinearWeight, transpose } from "./layout.ts";
import { TINY } from "./_test_util.ts";
import { LM_HEAD, paramShapes, parseProjectionName, renumber } from "../base/param_names.ts";

Deno.test("transpose() moves every 32-bit pattern, NaN payloads included", () => {
  const bits = new Uint32Array([0x7fa00001, 0xffc12345, 0x00000001, 0x80000000, 1, 2]);
  const t = transpose(new Float32Array(bits.buffer), 2, 3);
  const got = new Uint32Array(t.buffer);
  assertEquals([...got], [0x7fa00001, 0x80000000, 0xffc12345, 1, 0x00000001, 2]);
});

Deno.test("transpose() of a large non-square matrix is its transpose", () => {
  const rows = 130;
  const cols = 67;
  const v = Float32Array.from({ length: rows * cols }, (_, i) => i);
  const t = transpose(v, rows, cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) assertEquals(t[c * rows + r], v[r * cols + c]);
  }
  assertEquals(transpose(t, cols, rows), v);
});

Deno.test("paramShapes() lists HF's state-dict order with our [in, out] shapes", () => {
  const names = paramShapes(TINY);
  assertEquals(names.length, 1 + 9 * 3 + 2);
  assertEquals(names[0], ["model.embed_tokens.weight", [11, 8]]);
  assertEquals(names.slice(1, 10).map(([n]) => n.replace("model.layers.0.", "")), [
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
  ]);
  // kvHeads 1 of 2 heads, head dim 4: k and v map 8 → 4.
  assertEquals(names[2]![1], [8, 4]);
  assertEquals(names[7]![1], [12, 8]);
  assertEquals(names.at(-1), [LM_HEAD, [8, 11]]);
  assertEquals(paramShapes({ ...TINY, tiedEmbeddings: true }).at(-1)?.[0], "model.norm.weight");
});

Deno.test("hfShape() reverses linear weights only", () => {
  assertEquals(hfShape("model.layers.2.mlp.down_proj.weight", [12, 8]), [8, 12]);
  assertEquals(hfShape(LM_HEAD, [8, 11]), [11, 8]);
  assertEquals(hfShape("model.embed_tokens.weight", [11, 8]), [11, 8]);
  assertEquals(hfShape("model.layers.0.input_layernorm.weight", [8]), [8]);
  assert(!isLinearWeight("model.layers.0.self_attn.q_proj.lora_A"));
});

Deno.test("parseProjectionName() rejects a projection under the wrong block", () => {
  assertEquals(parseProjectionName("model.layers.12.mlp.up_proj.lora_B"), {
    layer: 12,
    p: "up",
    rest: "lora_B",
  });
  assertEquals(parseProjectionName("model.layers.1.mlp.q_proj.weight"), undefined);
  assertEquals(
    renumber("model.layers.3.mlp.up_proj.weight", 7),
    "model.layers.7.mlp.up_proj.weight",
  );
});
