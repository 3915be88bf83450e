import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { loraNames, paramShapes, projectionWeight } from "../base/param_names.ts";
import { createRng } from "../base/prng.ts";
import { startBackend } from "../effects/tfjs_engine.ts";
import {
  decodeStep,
  disposeCache,
  emptyCache,
  extendCache,
  type KvCache,
  prefill,
} from "./decode.ts";
import { generate, type GenerateOptions } from "./generate.ts";
import { openRowDecoder } from "./row_decoder.ts";
import { forwardLogits, type Model } from "./model.ts";
import { disposeParams, importParams, type Params } from "./params.ts";
import { maxAbsDiff, TESTED_BACKENDS } from "./_test_util.ts";
import { type BackendName, initBackend, webGpuUnavailable } from "./backend.ts";

const GQA: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 3,
  vocab: 23,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 100,
  maxSeqLen: 12,
};
const TIED: LlamaShape = { ...GQA, heads: 2, kvHeads: 2, tiedEmbeddings: true };
const MQA: LlamaShape = { ...GQA, heads: 4, kvHeads: 1 };

/** Weights large enough that attention is far from uniform and greedy choices are clear. */
function randomParams(shape: LlamaShape, seed: number, lora: boolean): Params {
  const rng = createRng(seed);
  const u = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * scale);
  const records = paramShapes(shape, shape.layers).map(([name, dims]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = dims.length === 1 ? u(n, 0.3).map((x) => 1 + x) : u(n, 0.5);
    return { name, shape: dims, data };
  });
  if (lora) {
    for (const [layer, p] of [[0, "q"], [0, "v"], [1, "k"], [2, "down"], [1, "o"]] as const) {
      const name = projectionWeight(layer, p);
      const [din, dout] = records.find((r) => r.name === name)!.shape as [number, number];
      const ln = loraNames(name);
      records.push({ name: ln.a, shape: [din, 3], data: u(din * 3, 0.5) });
      records.push({ name: ln.b, shape: [3, dout], data: u(3 * dout, 0.5) });
    }
  }
  return importParams(records);
}

const NO_LORA = false;

const CASES: readonly { label: string; shape: LlamaShape; lora: boolean }[] = [
  { label: "grouped-query, untied", shape: GQA, lora: false },
  { label: "multi-head, tied", shape: TIED, lora: false },
  { label: "multi-query, LoRA adapters", shape: MQA, lora: true },
];

const SEQUENCE = [3, 17, 5, 0, 22, 9, 9, 14, 1, 6, 20, 11];

async function referenceRow(model: Model, prefix: readonly number[]): Promise<Float32Array> {
  const logits = forwardLogits(model, {
    tokens: Int32Array.from(prefix),
    batch: 1,
    seq: prefix.length,
  });
  const all = (await logits.data()) as Float32Array;
  logits.dispose();
  const v = model.shape.vocab;
  return all.slice((prefix.length - 1) * v, prefix.length * v);
}

async function take(logits: tf.Tensor1D): Promise<Float32Array> {
  const data = (await logits.data()) as Float32Array;
  logits.dispose();
  return data;
}

/**
 * Generation logic does not depend on the backend: on a software GPU driver it only costs time
 * (the kernels are covered by the logits tests).
 */
const CPU_BACKENDS = [...TESTED_BACKENDS.filter((b) => b !== "webgpu"), "auto"] as const;

/**
 * Runs `fn` on every tested backend (webgpu when an adapter exists) and on `auto` (wasm with
 * its fused attention kernel).
 */
function onBackends(
  name: string,
  fn: () => Promise<void> | void,
  backends: readonly (BackendName | "auto")[] = [...TESTED_BACKENDS, "auto"],
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      for (const backend of backends) {
        const why = backend === "webgpu" ? await webGpuUnavailable() : undefined;
        if (why !== undefined) {
          await t.step({ name: `${backend} (skipped: ${why})`, ignore: true, fn: () => {} });
          continue;
        }
        const got = backend === "auto" ? await startBackend("auto")() : await initBackend(backend);
        if (E.isLeft(got)) throw new Error(`${backend}: ${JSON.stringify(got.left)}`);
        await t.step(backend, fn);
      }
    },
  });
}

for (const c of CASES) {
  onBackends(
    `extendCache() logits match forwardLogits of the whole prefix (${c.label})`,
    async () => {
      const model: Model = {
        shape: c.shape,
        params: randomParams(c.shape, 7, c.lora),
        loraScale: 0.75,
      };
      const before = tf.memory().numTensors;
      let worst = 0;
      let scale = 0;
      // Prefill 3, then one token at a time, then a chunk of 3 at an offset (the masked path).
      let r = prefill(model, SEQUENCE.slice(0, 3));
      let cache: KvCache = r.cache;
      const check = async (len: number, logits: tf.Tensor1D) => {
        const got = await take(logits);
        const want = await referenceRow(model, SEQUENCE.slice(0, len));
        worst = Math.max(worst, maxAbsDiff(got, want));
        for (const x of want) scale = Math.max(scale, Math.abs(x));
      };
      await check(3, r.logits);
      for (let len = 4; len <= 9; len++) {
        r = decodeStep(model, cache, SEQUENCE[len - 1]!);
        cache = r.cache;
        assertEquals(cache.length, len);
        await check(len, r.logits);
      }
      r = extendCache(model, cache, SEQUENCE.slice(9, 12));
      cache = r.cache;
      assertEquals(cache.length, 12);
      await check(12, r.logits);
      assertEquals(cache.layers[0]!.k.shape, [c.shape.kvHeads, 12, c.shape.hidden / c.shape.heads]);
      throwsWith(() => decodeStep(model, cache, 1), "maxSeqLen is 12");
      disposeCache(cache);
      assertEquals(tf.memory().numTensors, before, "tensors left by decoding");
      assert(scale > 1, `logits scale ${scale} too small to test`);
      assert(worst <= 1e-4 * scale, `max |cached − full| = ${worst} (logit scale ${scale})`);
      disposeParams(model.params);
    },
  );

  onBackends(
    `generate() gives the same tokens with and without the cache (${c.label})`,
    async () => {
      const model: Model = {
        shape: c.shape,
        params: randomParams(c.shape, 11, c.lora),
        loraScale: 0.75,
      };
      // 30 new tokens after a 5-token prompt in a window of 12: the window slides several times.
      const settings: readonly Omit<GenerateOptions, "cache">[] = [
        { maxNewTokens: 30, temperature: 0 },
        { maxNewTokens: 30, temperature: 1.3, seed: 5 },
        { maxNewTokens: 30, temperature: 0.9, topK: 5, topP: 0.9, seed: 8 },
        { maxNewTokens: 30, temperature: 1, slideKeep: 10, seed: 3 },
      ];
      const before = tf.memory().numTensors;
      for (const s of settings) {
        const streamed: number[] = [];
        const cached = await generate(model, [4, 8, 15, 16, 2], { ...s, cache: true }, (id) => {
          streamed.push(id);
        });
        const full = await generate(model, [4, 8, 15, 16, 2], { ...s, cache: false });
        assertEquals(cached.ids, full.ids, JSON.stringify(s));
        assertEquals(streamed, [...cached.ids]);
        assertEquals(cached.stop, "length");
        assert(cached.prefills > 1, "the window should have slid");
      }
      assertEquals(tf.memory().numTensors, before, "tensors left by generate");
      disposeParams(model.params);
    },
    CPU_BACKENDS,
  );
}

onBackends("generate() stops on a stop id, on the caller's word and at a full window", async () => {
  const model: Model = { shape: GQA, params: randomParams(GQA, 3, NO_LORA), loraScale: 1 };
  const free = await generate(model, [1, 2], { maxNewTokens: 20, temperature: 0 });
  const first = free.ids[0]!;
  const third = free.ids[2]!;
  const stopped = await generate(model, [1, 2], {
    maxNewTokens: 20,
    temperature: 0,
    stopIds: [third],
  });
  assertEquals(stopped.stop, "stop-id");
  assertEquals(stopped.stopId, third);
  assertEquals(stopped.ids, free.ids.slice(0, free.ids.indexOf(third)));
  const asked = await generate(
    model,
    [1, 2],
    { maxNewTokens: 20, temperature: 0 },
    (_, i) => i === 1,
  );
  assertEquals(asked, { ids: free.ids.slice(0, 2), stop: "caller", prefills: 1 });
  const full = await generate(model, [1, 2], {
    maxNewTokens: 20,
    temperature: 0,
    overflow: "stop",
  });
  assertEquals(full.stop, "context");
  assertEquals(full.ids, free.ids.slice(0, GQA.maxSeqLen - 1));
  assert(first >= 0 && first < GQA.vocab);
  // A prompt longer than the window keeps its last maxSeqLen tokens.
  const long = Array.from({ length: 20 }, (_, i) => (i * 7) % GQA.vocab);
  const a = await generate(model, long, { maxNewTokens: 3, temperature: 0 });
  const b = await generate(model, long.slice(-GQA.maxSeqLen), { maxNewTokens: 3, temperature: 0 });
  assertEquals(a.ids, b.ids);
  const limited = await generate(model, [1, 2], { maxNewTokens: 30, vocabLimit: 4, seed: 1 });
  assert(limited.ids.every((id) => id < 4), `${limited.ids}`);
  await assertRejects(() => generate(model, [], { maxNewTokens: 1 }), "no tokens");
  await assertRejects(() => generate(model, [1], { maxNewTokens: 1, topP: 0 }), "top-p");
  disposeParams(model.params);
}, CPU_BACKENDS);

function throwsWith(f: () => unknown, text: string): void {
  try {
    f();
  } catch (e) {
    assert(e instanceof Error && e.message.includes(text), `${e} does not mention "${text}"`);
    return;
  }
  throw new Error(`expected an error mentioning "${text}"`);
}

async function assertRejects(f: () => Promise<unknown>, text: string): Promise<void> {
  try {
    await f();
  } catch (e) {
    assert(e instanceof Error && e.message.includes(text), `${e} does not mention "${text}"`);
    return;
  }
  throw new Error(`expected a rejection mentioning "${text}"`);
}

onBackends("extendCache() rejects bad ids and leaves the cache it was given usable", () => {
  const model: Model = { shape: TIED, params: randomParams(TIED, 2, NO_LORA), loraScale: 1 };
  const r = prefill(model, [1, 2, 3]);
  r.logits.dispose();
  throwsWith(() => decodeStep(model, r.cache, TIED.vocab), "outside");
  throwsWith(() => extendCache(model, r.cache, []), "no tokens");
  const next = decodeStep(model, r.cache, 4);
  assertEquals(next.cache.length, 4);
  next.logits.dispose();
  disposeCache(next.cache);
  disposeCache(emptyCache());
  disposeParams(model.params);
});

for (const c of CASES) {
  for (const pack of [true, false]) {
    onBackends(
      `the row decoder's logits match forwardLogits of the whole prefix (${c.label}, ${
        pack ? "packed" : "in place"
      })`,
      async () => {
        const model: Model = {
          shape: c.shape,
          params: randomParams(c.shape, 13, c.lora),
          loraScale: 0.75,
        };
        const opened = openRowDecoder(model, { pack });
        // On "auto" (wasm with OpenBLAS) the row decoder must open: generate() relies on it there.
        if (E.isLeft(opened)) throw new Error(`the row decoder did not open: ${opened.left}`);
        const rows = opened.right;
        assertEquals(rows.packed, pack);
        const before = tf.memory().numTensors;
        const r = prefill(model, SEQUENCE.slice(0, 3));
        await take(r.logits);
        rows.load(r.cache);
        disposeCache(r.cache);
        let worst = 0;
        let scale = 0;
        for (let len = 4; len <= 12; len++) {
          const got = rows.step(SEQUENCE[len - 1]!);
          assertEquals(rows.length, len);
          const want = await referenceRow(model, SEQUENCE.slice(0, len));
          worst = Math.max(worst, maxAbsDiff(got, want));
          for (const x of want) scale = Math.max(scale, Math.abs(x));
        }
        throwsWith(() => rows.step(1), "maxSeqLen 12");
        throwsWith(() => rows.step(c.shape.vocab), "outside");
        assertEquals(tf.memory().numTensors, before, "tensors left by the row decoder");
        assert(scale > 1, `logits scale ${scale} too small to test`);
        assert(worst <= 1e-4 * scale, `max |row decoder − full| = ${worst} (logit scale ${scale})`);
        disposeParams(model.params);
      },
      ["auto"],
    );
  }
}

onBackends(
  "a packed row decoder follows its weights: a replaced weight tensor is packed again",
  async () => {
    const model: Model = { shape: GQA, params: randomParams(GQA, 21, NO_LORA), loraScale: 1 };
    const stepOnce = async () => {
      const opened = openRowDecoder(model, { pack: true });
      if (E.isLeft(opened)) throw new Error(opened.left);
      const r = prefill(model, SEQUENCE.slice(0, 3));
      await take(r.logits);
      opened.right.load(r.cache);
      disposeCache(r.cache);
      const got = opened.right.step(SEQUENCE[3]!);
      const want = await referenceRow(model, SEQUENCE.slice(0, 4));
      return maxAbsDiff(got, want) / Math.max(...want.map(Math.abs));
    };
    assert(await stepOnce() <= 1e-4, "first packing");
    assert(await stepOnce() <= 1e-4, "packing reused");
    // A caller holding the Map may swap tensors under the same names; the copy must not go stale.
    const params = model.params as Map<string, tf.Tensor>;
    for (const p of ["q", "up", "down"] as const) {
      const name = projectionWeight(1, p);
      const old = model.params.get(name)!;
      params.set(name, tf.mul(old, -1.5));
      old.dispose();
    }
    const lm = model.params.get("lm_head.weight")!;
    params.set("lm_head.weight", tf.mul(lm, 2));
    lm.dispose();
    assert(await stepOnce() <= 1e-4, "after replacing weights");
    disposeParams(model.params);
  },
  ["auto"],
);

onBackends(
  "the row decoder packs its weights only within a quarter of the memory it is told is free",
  () => {
    const model: Model = { shape: GQA, params: randomParams(GQA, 5, NO_LORA), loraScale: 1 };
    const opened = (availableBytes: number) => {
      const r = openRowDecoder(model, { availableBytes });
      if (E.isLeft(r)) throw new Error(r.left);
      return r.right.packed;
    };
    // The GQA test model's products and head hold a few thousand floats: 4 bytes each.
    assert(!opened(1000), "packed with 1000 bytes free");
    assert(opened(1e9), "not packed with 1 GB free");
    disposeParams(model.params);
  },
  ["auto"],
);

onBackends("the row decoder declines backends whose weights are not in a wasm heap", () => {
  const model: Model = { shape: GQA, params: randomParams(GQA, 3, NO_LORA), loraScale: 1 };
  const opened = openRowDecoder(model);
  assert(E.isLeft(opened) && opened.left.includes("not wasm"), JSON.stringify(opened));
  disposeParams(model.params);
}, ["cpu"]);
