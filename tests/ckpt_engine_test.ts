/**
 * Checkpoints on disk against the engine: names and RoPE convention, the
 * round trip through Hugging Face's format (bit-exact weights, identical
 * logits), an independent float64 forward pass written in Hugging Face's
 * layout and conventions, and `ckpt grow` / `ckpt merge` against
 * the surgery on snapshots (`grownSnapshot` / `mergedSnapshot`), bit for bit.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "./assert.ts";
import { main as ckpt } from "../cli/ckpt.ts";
import { runDirStore } from "../effects/run_dir.ts";
import {
  attachAdapters,
  type LazyTensor,
  type ModelView,
  openCheckpoint,
  openPeftAdapter,
} from "../checkpoint/mod.ts";
import {
  disposeParams,
  forwardLogits,
  importParams,
  initBackend,
  type ParamRecord,
  rope,
  ropeTables,
} from "../kernels/mod.ts";
import {
  type EngineSnapshot,
  grownSnapshot,
  type GrowOptions,
  mergedSnapshot,
} from "../checkpoint/mod.ts";
import { createRng } from "../base/prng.ts";
import { type LlamaShape, projectionDims, PROJECTIONS } from "../base/llama_shape.ts";
import { openSafetensors, type SafetensorsReader, tensorToFloat32 } from "../store/mod.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { paramShapes } from "../base/param_names.ts";

const SHAPE: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 3,
  vocab: 19,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};
const TOKENS = { tokens: new Int32Array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]), batch: 2, seq: 6 };

function random(n: number, seed: number, scale: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * scale);
}

/** Every weight random (norms around 1), so layouts and means are all exercised. */
function records(shape: LlamaShape, seed: number): ParamRecord[] {
  return paramShapes(shape, shape.layers).map(([name, dims], i) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = random(n, seed * 997 + i, dims.length === 1 ? 0.5 : 0.3);
    if (dims.length === 1) data.forEach((x, k) => (data[k] = 1 + x));
    return { name, shape: dims, data };
  });
}

/** Adapters with non-zero B on `layers`, our layout. */
function adapterRecords(shape: LlamaShape, layers: number[], rank: number): ParamRecord[] {
  const out: ParamRecord[] = [];
  let seed = 500;
  for (const layer of layers) {
    for (const p of PROJECTIONS) {
      const d = projectionDims(shape, p);
      const block = p === "gate" || p === "up" || p === "down" ? "mlp" : "self_attn";
      const base = `model.layers.${layer}.${block}.${p}_proj`;
      out.push({
        name: `${base}.lora_A`,
        shape: [d.in, rank],
        data: random(d.in * rank, seed++, 0.3),
      });
      out.push({
        name: `${base}.lora_B`,
        shape: [rank, d.out],
        data: random(rank * d.out, seed++, 0.3),
      });
    }
  }
  return out;
}

function run(...args: string[]): Promise<Captured> {
  return capture(ckpt, args);
}

async function ok(...args: string[]): Promise<void> {
  const r = await run(...args);
  assertEquals(r.code, 0, r.err);
}

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ckpt-engine-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const EMPTY_META = { trainable: [], loraScale: 1, adamStep: 0 };

/** A run directory's final/ as the interpreter writes it. */
async function saveFinal(dir: string, shape: LlamaShape, params: ParamRecord[]): Promise<void> {
  const r = await runDirStore(dir).saveFinal({ params, moments: [], meta: EMPTY_META }, shape)();
  assert(E.isRight(r));
}

async function loadView(view: ModelView): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  const all: LazyTensor[] = [...view.tensors, ...(view.adapters?.tensors ?? [])];
  for (const t of all) {
    const v = await t.load()();
    assert(E.isRight(v), t.name);
    out.set(t.name, v.right);
  }
  return out;
}

async function readDir(dir: string): Promise<Map<string, Float32Array>> {
  const opened = await openCheckpoint(dir)();
  assert(E.isRight(opened), E.isLeft(opened) ? opened.left.message : "");
  try {
    return await loadView(opened.right.view);
  } finally {
    opened.right.view.close();
  }
}

async function logits(
  shape: LlamaShape,
  params: ParamRecord[],
  loraScale = 1,
): Promise<Float32Array> {
  const p = importParams(params);
  const t = forwardLogits({ shape, params: p, loraScale }, TOKENS);
  const v = (await t.data()) as Float32Array;
  t.dispose();
  disposeParams(p);
  return v;
}

function bits(v: Float32Array): Uint32Array {
  return new Uint32Array(v.buffer, v.byteOffset, v.length);
}

Deno.test("checkpoint/ names and shapes are the engine's paramShapes", () => {
  for (const s of [SHAPE, { ...SHAPE, tiedEmbeddings: true, kvHeads: 4 }]) {
    assertEquals(paramShapes(s), paramShapes(s, s.layers));
  }
});

Deno.test("the engine's RoPE is Hugging Face's rotate_half, computed by hand", async () => {
  assert(E.isRight(await initBackend("cpu")));
  const d = 8;
  const seq = 5;
  const theta = 10000;
  const x = random(seq * d, 42, 1);
  const tables = ropeTables(seq, { headDim: d, theta });
  const y = rope(tf.tensor4d(x, [1, seq, 1, d]), tables);
  const got = (await y.data()) as Float32Array;
  tf.dispose([y, tables.cos, tables.sin]);
  // transformers: inv_freq = 1/θ^(2i/d); emb = cat(freqs, freqs);
  // x·cos(emb) + rotate_half(x)·sin(emb), rotate_half(x) = cat(−x[d/2:], x[:d/2]).
  let interleavedDiffers = false;
  for (let t = 0; t < seq; t++) {
    const row = Array.from(x.subarray(t * d, (t + 1) * d));
    const angle = (j: number) => t / Math.pow(theta, (2 * (j % (d / 2))) / d);
    const rotated = [...row.slice(d / 2).map((v) => -v), ...row.slice(0, d / 2)];
    for (let j = 0; j < d; j++) {
      const want = row[j]! * Math.cos(angle(j)) + rotated[j]! * Math.sin(angle(j));
      assert(
        Math.abs(got[t * d + j]! - want) < 1e-6,
        `t=${t} j=${j}: ${got[t * d + j]} vs ${want}`,
      );
      // The GPT-J/Meta convention rotates neighbouring pairs instead; it gives other values.
      const pair = j % 2 === 0 ? -row[j + 1]! : row[j - 1]!;
      const meta = row[j]! * Math.cos(t / Math.pow(theta, (2 * Math.floor(j / 2)) / d)) +
        pair * Math.sin(t / Math.pow(theta, (2 * Math.floor(j / 2)) / d));
      if (Math.abs(meta - want) > 1e-3) interleavedDiffers = true;
    }
  }
  assert(interleavedDiffers, "the check cannot tell the two conventions apart");
});

Deno.test("ckpt export → import is bit-exact in float32 and the logits are identical", async () => {
  assert(E.isRight(await initBackend("cpu")));
  await withDir(async (dir) => {
    for (const shape of [SHAPE, { ...SHAPE, tiedEmbeddings: true }]) {
      const params = records(shape, 1);
      await saveFinal(`${dir}/run`, shape, params);
      await ok("export", `${dir}/run/final`, `${dir}/hf`, "--max-shard-size", "4KB", "--force");
      const files = [...Deno.readDirSync(`${dir}/hf`)].map((e) => e.name).sort();
      assert(files.includes("model.safetensors.index.json"), files.join());
      await ok("import", `${dir}/hf`, `${dir}/back`, "--force");
      const back = await readDir(`${dir}/back`);
      assertEquals(back.size, params.length);
      for (const p of params) assertEquals(bits(back.get(p.name)!), bits(p.data), p.name);
      const again = [...back].map(([name, data]) => ({
        name,
        shape: params.find((p) => p.name === name)!.shape,
        data,
      }));
      assertEquals(bits(await logits(shape, again)), bits(await logits(shape, params)));
      const config = JSON.parse(await Deno.readTextFile(`${dir}/back/config.json`));
      assertEquals(config, shape);
    }
  });
});

Deno.test("ckpt export --dtype bfloat16 rounds once; import widens exactly", async () => {
  assert(E.isRight(await initBackend("cpu")));
  await withDir(async (dir) => {
    const params = records(SHAPE, 2);
    await saveFinal(`${dir}/run`, SHAPE, params);
    await ok("export", `${dir}/run/final`, `${dir}/hf`, "--dtype", "bfloat16");
    assertEquals(
      JSON.parse(await Deno.readTextFile(`${dir}/hf/config.json`)).torch_dtype,
      "bfloat16",
    );
    const back = await readDir(`${dir}/hf`);
    for (const p of params) {
      const b = bits(back.get(p.name)!);
      // BF16 keeps the top 16 bits, rounded to nearest even.
      for (let i = 0; i < b.length; i++) assertEquals(b[i]! & 0xffff, 0);
      const maxRel = p.data.reduce(
        (m, x, i) => Math.max(m, Math.abs(back.get(p.name)![i]! - x) / Math.abs(x)),
        0,
      );
      assert(maxRel <= 2 ** -8, `${p.name}: ${maxRel}`);
    }
  });
});

/** A tensor of an HF directory, in HF's layout, as float64. */
async function hfTensors(dir: string): Promise<Map<string, { shape: number[]; v: Float64Array }>> {
  const out = new Map<string, { shape: number[]; v: Float64Array }>();
  const r = await openSafetensors(`${dir}/model.safetensors`)();
  assert(E.isRight(r));
  const reader: SafetensorsReader = r.right;
  for (const [name, info] of reader.header.tensors) {
    const raw = await reader.read(name)();
    assert(E.isRight(raw));
    const f = tensorToFloat32(raw.right, name);
    assert(E.isRight(f));
    out.set(name, { shape: [...info.shape], v: Float64Array.from(f.right) });
  }
  reader.close();
  return out;
}

/**
 * LlamaForCausalLM's forward pass, written from its definition in float64 over HF-layout
 * weights (y = W·x with W [out, in]; rotate_half RoPE; repeat_kv grouping; SiLU MLP).
 */
function hfForward(
  shape: LlamaShape,
  w: Map<string, { v: Float64Array }>,
  tokens: number[],
): Float64Array[] {
  const h = shape.hidden;
  const d = h / shape.heads;
  const group = shape.heads / shape.kvHeads;
  const get = (n: string) => w.get(n)!.v;
  const lin = (W: Float64Array, x: Float64Array, out: number) =>
    Float64Array.from(
      { length: out },
      (_, o) => x.reduce((s, xi, i) => s + W[o * x.length + i]! * xi, 0),
    );
  const norm = (x: Float64Array, g: Float64Array) => {
    const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + shape.rmsNormEps)) * g[i]!);
  };
  const ropeAt = (x: Float64Array, t: number) => {
    const y = new Float64Array(x.length);
    for (let head = 0; head < x.length / d; head++) {
      for (let j = 0; j < d; j++) {
        const a = t / Math.pow(shape.ropeTheta, (2 * (j % (d / 2))) / d);
        const rot = j < d / 2 ? -x[head * d + j + d / 2]! : x[head * d + j - d / 2]!;
        y[head * d + j] = x[head * d + j]! * Math.cos(a) + rot * Math.sin(a);
      }
    }
    return y;
  };
  let xs = tokens.map((tok) =>
    Float64Array.from(get("model.embed_tokens.weight").subarray(tok * h, (tok + 1) * h))
  );
  for (let l = 0; l < shape.layers; l++) {
    const p = (n: string) => get(`model.layers.${l}.${n}.weight`);
    const a = xs.map((x) => norm(x, p("input_layernorm")));
    const q = a.map((x, t) => ropeAt(lin(p("self_attn.q_proj"), x, h), t));
    const k = a.map((x, t) => ropeAt(lin(p("self_attn.k_proj"), x, shape.kvHeads * d), t));
    const v = a.map((x) => lin(p("self_attn.v_proj"), x, shape.kvHeads * d));
    xs = xs.map((x, t) => {
      const att = new Float64Array(h);
      for (let head = 0; head < shape.heads; head++) {
        const kv = Math.floor(head / group);
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let dot = 0;
          for (let j = 0; j < d; j++) dot += q[t]![head * d + j]! * k[s]![kv * d + j]!;
          return dot / Math.sqrt(d);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((s, x) => s + x, 0);
        for (let s = 0; s <= t; s++) {
          for (let j = 0; j < d; j++) att[head * d + j]! += (e[s]! / z) * v[s]![kv * d + j]!;
        }
      }
      const h1 = x.map((xi, i) => xi + lin(p("self_attn.o_proj"), att, h)[i]!);
      const m = norm(h1, p("post_attention_layernorm"));
      const gate = lin(p("mlp.gate_proj"), m, shape.intermediate);
      const up = lin(p("mlp.up_proj"), m, shape.intermediate);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const down = lin(p("mlp.down_proj"), act, h);
      return h1.map((v, i) => v + down[i]!);
    });
  }
  const head = shape.tiedEmbeddings ? get("model.embed_tokens.weight") : get("lm_head.weight");
  return xs.map((x) => lin(head, norm(x, get("model.norm.weight")), shape.vocab));
}

Deno.test("an exported checkpoint run by Hugging Face's conventions gives the engine's logits", async () => {
  assert(E.isRight(await initBackend("cpu")));
  await withDir(async (dir) => {
    for (const shape of [SHAPE, { ...SHAPE, tiedEmbeddings: true, kvHeads: 1 }]) {
      const params = records(shape, 3);
      await saveFinal(`${dir}/run`, shape, params);
      await ok("export", `${dir}/run/final`, `${dir}/hf`, "--force");
      const hf = await hfTensors(`${dir}/hf`);
      const ours = await logits(shape, params);
      let worst = 0;
      for (let b = 0; b < TOKENS.batch; b++) {
        const seqTokens = Array.from(TOKENS.tokens.subarray(b * TOKENS.seq, (b + 1) * TOKENS.seq));
        hfForward(shape, hf, seqTokens).forEach((row, t) =>
          row.forEach((want, v) => {
            worst = Math.max(worst, Math.abs(ours[(b * TOKENS.seq + t) * shape.vocab + v]! - want));
          })
        );
      }
      assert(worst < 1e-4, `max |engine − HF reference| = ${worst}`);
    }
  });
});

/** The snapshot of `params` (nothing trains) grown by the surgery. */
function snapshotGrow(
  params: ParamRecord[],
  options: GrowOptions,
  loraScale = 1,
): readonly ParamRecord[] {
  const snap: EngineSnapshot = {
    params,
    moments: [],
    meta: { trainable: [], loraScale, adamStep: 0 },
  };
  const grown = grownSnapshot(snap, { ...options, trainable: [] });
  if (E.isLeft(grown)) throw new Error(grown.left);
  return grown.right.params;
}

Deno.test("ckpt grow on an exported checkpoint equals grownSnapshot, tensor for tensor", async () => {
  assert(E.isRight(await initBackend("cpu")));
  await withDir(async (dir) => {
    const params = records(SHAPE, 4);
    await saveFinal(`${dir}/run`, SHAPE, params);
    await ok("export", `${dir}/run/final`, `${dir}/hf`);
    for (
      const [placement, add] of [["upper", 2], ["uniform", 4], ["lower", 1], ["random", 5]] as const
    ) {
      await ok(
        "grow",
        `${dir}/hf`,
        `${dir}/grown`,
        "--add",
        String(add),
        "--placement",
        placement,
        "--seed",
        "7",
        "--force",
      );
      const config = JSON.parse(await Deno.readTextFile(`${dir}/grown/config.json`));
      assertEquals(config.num_hidden_layers, SHAPE.layers + add);
      const disk = await readDir(`${dir}/grown`);
      const engine = snapshotGrow(params, { add, placement, seed: 7 });
      assertEquals([...disk.keys()].sort(), engine.map((p) => p.name).sort());
      for (const p of engine) {
        assertEquals(bits(disk.get(p.name)!), bits(p.data), `${placement}: ${p.name}`);
      }
    }
  });
});

/** A snapshot of `params` in which nothing trains. */
function frozenSnapshot(params: ParamRecord[], loraScale: number): EngineSnapshot {
  return { params, moments: [], meta: { trainable: [], loraScale, adamStep: 0 } };
}

Deno.test("ckpt grow of a checkpoint/ with adapters equals grownSnapshot (which merges first)", async () => {
  await withDir(async (dir) => {
    const rank = 3;
    const scale = 16 / rank;
    const params = [...records(SHAPE, 5), ...adapterRecords(SHAPE, [0, 2], rank)];
    const snap = frozenSnapshot(params, scale);
    assert(
      E.isRight(await runDirStore(`${dir}/run`).saveCheckpoint({ snapshot: snap, progress: {} })()),
    );
    await Deno.writeTextFile(`${dir}/shape.json`, JSON.stringify(SHAPE));
    await ok(
      "grow",
      `${dir}/run/checkpoint`,
      `${dir}/grown`,
      "--add",
      "2",
      "--shape",
      `${dir}/shape.json`,
    );
    const disk = await readDir(`${dir}/grown`);
    const grown = snapshotGrow(params, { add: 2, placement: "upper", seed: 0 }, scale);
    assertEquals(disk.size, grown.length);
    for (const p of grown) assertEquals(bits(disk.get(p.name)!), bits(p.data), p.name);
  });
});

Deno.test("ckpt export writes PEFT adapters; ckpt merge equals mergedSnapshot", async () => {
  assert(E.isRight(await initBackend("cpu")));
  await withDir(async (dir) => {
    const rank = 2;
    const scale = 8 / rank;
    const params = [...records(SHAPE, 6), ...adapterRecords(SHAPE, [1, 2], rank)];
    const snap = frozenSnapshot(params, scale);
    assert(
      E.isRight(await runDirStore(`${dir}/run`).saveCheckpoint({ snapshot: snap, progress: {} })()),
    );
    await Deno.writeTextFile(`${dir}/shape.json`, JSON.stringify(SHAPE));
    await ok(
      "export",
      `${dir}/run/checkpoint`,
      `${dir}/hf`,
      "--shape",
      `${dir}/shape.json`,
      "--base-name",
      "org/base",
    );
    const config = JSON.parse(await Deno.readTextFile(`${dir}/hf/adapter/adapter_config.json`));
    assertEquals([config.r, config.lora_alpha, config.layers_to_transform], [2, 8, [1, 2]]);
    assertEquals(config.base_model_name_or_path, "org/base");

    // Base + PEFT adapter, loaded back into the engine unmerged, compute what the state computes.
    const base = await openCheckpoint(`${dir}/hf`)();
    assert(E.isRight(base));
    const adapter = await openPeftAdapter(`${dir}/hf/adapter`, base.right.view.shape)();
    assert(E.isRight(adapter));
    const attached = attachAdapters(base.right.view, adapter.right, adapter.right.close);
    assert(E.isRight(attached));
    const loaded = await loadView(attached.right);
    attached.right.close();
    const reloaded = params.map((p) => ({ ...p, data: loaded.get(p.name)! }));
    assertEquals(
      bits(await logits(SHAPE, reloaded, scale)),
      bits(await logits(SHAPE, params, scale)),
    );

    await ok("merge", `${dir}/hf`, `${dir}/hf/adapter`, `${dir}/merged`);
    const disk = await readDir(`${dir}/merged`);
    const merged = mergedSnapshot(snap).params;
    assertEquals(disk.size, merged.length);
    for (const p of merged) assertEquals(bits(disk.get(p.name)!), bits(p.data), p.name);
  });
});
