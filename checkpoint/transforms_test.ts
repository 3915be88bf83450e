import { assert, assertEquals } from "../tests/assert.ts";
import { grownLayout, insertionCounts } from "../base/growth_layout.ts";
import { attachAdapters, growCheckpoint, mergeAdapters } from "./transforms.ts";
import { grownSnapshot, mergeValues } from "./surgery.ts";
import {
  left,
  loadAll,
  memoryView,
  randomAdapters,
  randomWeights,
  right,
  TINY,
} from "./_test_util.ts";

Deno.test("mergeAdapters() changes exactly the adapted weights", async () => {
  const weights = randomWeights(TINY, 1);
  const adapters = randomAdapters(TINY, { rank: 2, alpha: 4, layers: [1], seed: 7 });
  const merged = mergeAdapters(memoryView(TINY, weights, adapters));
  assertEquals(merged.adapters, undefined);
  const got = await loadAll(merged);
  const lora = await loadAll({ ...memoryView(TINY, new Map()), adapters });
  for (const [name, v] of weights) {
    const base = name.slice(0, -".weight".length);
    const a = lora.get(`${base}.lora_A`);
    if (a === undefined) {
      assertEquals(got.get(name), v, name);
      continue;
    }
    const want = mergeValues(v, { a, b: lora.get(`${base}.lora_B`)!, rank: 2, scale: 2 });
    assertEquals(got.get(name), want, name);
    assert(!got.get(name)!.every((x, i) => x === v[i]), `${name} unchanged`);
  }
});

Deno.test("attachAdapters() refuses adapters that do not fit or a second set", () => {
  const view = memoryView(TINY, randomWeights(TINY, 1));
  const adapters = randomAdapters(TINY, { rank: 2, alpha: 4, layers: [1], seed: 7 });
  const attached = right(attachAdapters(view, adapters, () => {}));
  assert(left(attachAdapters(attached, adapters, () => {})).message.includes("already"));
  const deep = randomAdapters({ ...TINY, layers: 5 }, { rank: 2, alpha: 4, layers: [4], seed: 7 });
  assert(left(attachAdapters(view, deep, () => {})).message.includes("model.layers.4"));
  const wide = randomAdapters({ ...TINY, intermediate: 16 }, {
    rank: 2,
    alpha: 4,
    layers: [0],
    seed: 7,
  });
  assert(left(attachAdapters(view, wide, () => {})).message.includes("does not fit"));
});

Deno.test("growCheckpoint() keeps old layers and starts new ones as float32 neighbour means", async () => {
  const weights = randomWeights(TINY, 2);
  const grown = growCheckpoint(memoryView(TINY, weights), { add: 2, placement: "upper", seed: 0 });
  assertEquals(grown.shape.layers, 5);
  const names = grown.tensors.map((t) => t.name);
  assertEquals(names[0], "model.embed_tokens.weight");
  assertEquals(names.slice(-2), ["model.norm.weight", "lm_head.weight"]);
  assertEquals(names.length, weights.size + 2 * 9);
  const got = await loadAll(grown);
  const at = (layer: number, suffix: string) => `model.layers.${layer}.${suffix}`;
  // Layout [0, 1, new(1, 2), 2, new(2, top)].
  for (
    const suffix of ["self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"]
  ) {
    assertEquals(got.get(at(0, suffix)), weights.get(at(0, suffix)));
    assertEquals(got.get(at(1, suffix)), weights.get(at(1, suffix)));
    assertEquals(got.get(at(3, suffix)), weights.get(at(2, suffix)));
    assertEquals(got.get(at(4, suffix)), weights.get(at(2, suffix)));
    const lo = weights.get(at(1, suffix))!;
    const hi = weights.get(at(2, suffix))!;
    assertEquals(
      got.get(at(2, suffix)),
      lo.map((x, i) => Math.fround(Math.fround(x + hi[i]!) * 0.5)),
    );
  }
});

Deno.test("growCheckpoint() follows base/growth_layout for every placement", () => {
  for (const placement of ["upper", "uniform", "lower", "random"] as const) {
    const grown = growCheckpoint(memoryView(TINY, randomWeights(TINY, 2)), {
      add: 4,
      placement,
      seed: 5,
    });
    const layout = grownLayout(insertionCounts(3, 4, placement, 5));
    assertEquals(grown.shape.layers, layout.length);
    assertEquals(grown.tensors.filter((t) => t.name.endsWith("input_layernorm.weight")).length, 7);
  }
});

Deno.test("growCheckpoint() merges adapters before growing, as the engine does", async () => {
  const weights = randomWeights(TINY, 3);
  const adapters = randomAdapters(TINY, { rank: 2, alpha: 4, layers: [0, 1, 2], seed: 11 });
  const options = { add: 1, placement: "lower" as const, seed: 0 };
  const direct = await loadAll(growCheckpoint(memoryView(TINY, weights, adapters), options));
  const merged = await loadAll(
    growCheckpoint(mergeAdapters(memoryView(TINY, weights, adapters)), options),
  );
  assertEquals(direct, merged);
});

Deno.test("growCheckpoint() on a view equals grownSnapshot() on the same values, bit for bit", async () => {
  const weights = randomWeights(TINY, 4);
  const adapters = randomAdapters(TINY, { rank: 2, alpha: 4, layers: [0, 2], seed: 13 });
  const view = memoryView(TINY, weights, adapters);
  const tensors = [...view.tensors, ...adapters.tensors];
  const values = await loadAll({ ...view, tensors, adapters: undefined });
  const snapshot = {
    params: tensors.map((t) => ({ name: t.name, shape: t.shape, data: values.get(t.name)! })),
    moments: [],
    meta: { trainable: [], loraScale: adapters.scale, adamStep: 0 },
  };
  for (const placement of ["upper", "random"] as const) {
    const options = { add: 3, placement, seed: 9 };
    const lazy = await loadAll(growCheckpoint(view, options));
    const grown = grownSnapshot(snapshot, { ...options, trainable: [] });
    assert(grown._tag === "Right");
    assertEquals(new Map(grown.right.params.map((p) => [p.name, p.data])), lazy);
  }
});
