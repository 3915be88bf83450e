import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { PROJECTIONS } from "../base/llama_shape.ts";
import { stageModules, type StageModulesOptions, stageModulesText } from "./plan_modules.ts";

const OPTIONS: StageModulesOptions = {
  placement: "upper",
  seed: 0,
  targets: PROJECTIONS,
  rank: 4,
  alpha: 8,
  trainEmbeddingsAfterStage1: false,
  tiedEmbeddings: false,
};

Deno.test("stageModules() trains everything in stage 1", () => {
  const [s1] = stageModules([2], OPTIONS);
  assertEquals(s1!.trainable.length, 1 + 2 * 9 + 2);
  assertEquals(s1!.trainable[0], "model.embed_tokens");
  assertEquals(s1!.trainable.slice(1, 3), [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.k_proj",
  ]);
  assertEquals(s1!.trainable.slice(-2), ["model.norm", "lm_head"]);
  assertEquals([s1!.frozen, s1!.adapted, s1!.peft], [[], [], null]);
});

Deno.test("stageModules() freezes and adapts the old layers where growth puts the new ones", () => {
  // 3 layers + 2 upper: [0, 1, new, 2, new]; then + 1 upper: [0, 1, 2, 3, 4, new].
  const [, s2, s3] = stageModules([3, 2, 1], OPTIONS);
  assertEquals(s2!.newLayers, [2, 4]);
  assertEquals(s2!.layers, 5);
  assertEquals(s2!.trainable.filter((m) => m.endsWith("q_proj")), [
    "model.layers.2.self_attn.q_proj",
    "model.layers.4.self_attn.q_proj",
  ]);
  assertEquals(s2!.frozen[0], "model.embed_tokens");
  assertEquals(s2!.frozen.slice(-2), ["model.norm", "lm_head"]);
  assertEquals(s2!.frozen.length, 1 + 3 * 9 + 2);
  assertEquals(s2!.adapted.length, 3 * 7);
  assert(s2!.adapted.every((m) => s2!.frozen.includes(m)));
  assertEquals(s2!.peft?.layers_to_transform, [0, 1, 3]);
  assertEquals(s2!.peft?.target_modules, [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
  ]);
  assertEquals(s3!.newLayers, [5]);
  assertEquals(s3!.peft?.layers_to_transform, [0, 1, 2, 3, 4]);
});

Deno.test("stageModules() keeps embeddings trainable when asked and drops a tied lm_head", () => {
  const [, s2] = stageModules([2, 2], {
    ...OPTIONS,
    trainEmbeddingsAfterStage1: true,
    tiedEmbeddings: true,
    targets: ["v", "q"],
    placement: "lower",
  });
  assertEquals(s2!.newLayers, [1, 3]);
  assertEquals(s2!.trainable[0], "model.embed_tokens");
  assertEquals(s2!.trainable.at(-1), "model.norm");
  assert(!s2!.trainable.includes("lm_head") && !s2!.frozen.includes("lm_head"));
  assertEquals(s2!.adapted, [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.2.self_attn.q_proj",
    "model.layers.2.self_attn.v_proj",
  ]);
  assertEquals(s2!.peft?.target_modules, ["q_proj", "v_proj"]);
});

Deno.test("stageModulesText() prints one module per line and the PEFT arguments", () => {
  const text = stageModulesText(stageModules([1, 1], OPTIONS));
  assertStringIncludes(text, "Stage 2: 2 layers, new: 1");
  assertStringIncludes(text, "  adapted (7):\n    model.layers.0.self_attn.q_proj\n");
  assertStringIncludes(text, 'layers_to_transform=[0], layers_pattern="layers")');
});
