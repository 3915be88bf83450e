import { assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { fromHfConfig, toHfConfig } from "./hf_config.ts";
import { left, right, TINY } from "./_test_util.ts";

Deno.test("toHfConfig() writes the fields LlamaForCausalLM reads", () => {
  const c = toHfConfig(TINY, "bfloat16");
  assertEquals(c.architectures, ["LlamaForCausalLM"]);
  assertEquals(c.model_type, "llama");
  assertEquals(
    [
      c.hidden_size,
      c.intermediate_size,
      c.num_hidden_layers,
      c.num_attention_heads,
      c.num_key_value_heads,
      c.head_dim,
      c.vocab_size,
      c.max_position_embeddings,
    ],
    [8, 12, 3, 2, 1, 4, 11, 16],
  );
  assertEquals([c.rms_norm_eps, c.rope_theta, c.tie_word_embeddings], [1e-5, 10000, false]);
  assertEquals([c.hidden_act, c.attention_bias, c.mlp_bias, c.rope_scaling], [
    "silu",
    false,
    false,
    null,
  ]);
  assertEquals(c.torch_dtype, "bfloat16");
});

Deno.test("fromHfConfig() inverts toHfConfig() through JSON", () => {
  const json = JSON.parse(JSON.stringify(toHfConfig({ ...TINY, tiedEmbeddings: true }, "float32")));
  assertEquals(right(fromHfConfig(json, "config.json")), { ...TINY, tiedEmbeddings: true });
});

Deno.test("fromHfConfig() applies LlamaConfig's defaults", () => {
  const shape = right(fromHfConfig({
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    vocab_size: 7,
  }, "c.json"));
  assertEquals(shape, {
    hidden: 8,
    intermediate: 12,
    heads: 4,
    kvHeads: 4,
    layers: 2,
    vocab: 7,
    tiedEmbeddings: false,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    maxSeqLen: 2048,
  });
});

Deno.test("fromHfConfig() reads rope_theta from rope_parameters", () => {
  const json = {
    ...toHfConfig(TINY, "float32"),
    rope_theta: undefined,
    rope_parameters: { rope_type: "default", rope_theta: 500000 },
  };
  assertEquals(right(fromHfConfig(json, "c.json")).ropeTheta, 500000);
});

Deno.test("fromHfConfig() names the field it refuses", () => {
  const base = toHfConfig(TINY, "float32");
  const cases: [Record<string, unknown>, string, string][] = [
    [{ ...base, hidden_size: undefined }, "c.json: hidden_size", "missing"],
    [{ ...base, num_attention_heads: 2.5 }, "c.json: num_attention_heads", "positive integer"],
    [{ ...base, model_type: "mistral" }, "c.json: model_type", "llama"],
    [{ ...base, attention_bias: true }, "c.json: attention_bias", "not supported"],
    [{ ...base, hidden_act: "gelu" }, "c.json: hidden_act", "silu"],
    [
      { ...base, rope_scaling: { rope_type: "llama3", factor: 8 } },
      "c.json: rope_scaling",
      "llama3",
    ],
    [{ ...base, head_dim: 8 }, "c.json: head_dim", "hidden_size 8"],
    [{ ...base, tie_word_embeddings: "yes" }, "c.json: tie_word_embeddings", "true or false"],
    [{ ...base, num_key_value_heads: 3 }, "c.json", "kvHeads"],
  ];
  for (const [json, where, fragment] of cases) {
    const e = left(fromHfConfig(json, "c.json"));
    assertEquals(e.where, where);
    assertStringIncludes(e.message, fragment);
  }
});
