import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import * as TE from "fp-ts/lib/TaskEither.js";
import { bf16ToFloat32, float32ToBf16, LITTLE_ENDIAN } from "../store/mod.ts";
import {
  INDEX_FILE,
  openHfCheckpoint,
  planShards,
  shardName,
  writeHfCheckpoint,
} from "./hf_checkpoint.ts";
import { toHfConfig } from "./hf_config.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import {
  left,
  loadAll,
  memoryView,
  randomWeights,
  right,
  TINY,
  withTempDir,
} from "./_test_util.ts";

/** hidden 4, 2 heads of 2, 1 KV head, MLP 6, one layer, vocab 3, tied head. */
const HAND: LlamaShape = {
  hidden: 4,
  intermediate: 6,
  heads: 2,
  kvHeads: 1,
  layers: 1,
  vocab: 3,
  tiedEmbeddings: true,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxSeqLen: 8,
};

interface Entry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: number[];
  readonly bytes: Uint8Array;
}

/** F32 little-endian bytes of `value(row, col)` over a [rows, cols] matrix, by DataView. */
function f32(rows: number, cols: number, value: (r: number, c: number) => number): Uint8Array {
  const out = new Uint8Array(rows * cols * 4);
  const view = new DataView(out.buffer);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) view.setFloat32((r * cols + c) * 4, value(r, c), LITTLE_ENDIAN);
  }
  return out;
}

/** 16-bit patterns, little-endian. */
function u16(...bits: number[]): Uint8Array {
  const out = new Uint8Array(bits.length * 2);
  bits.forEach((b, i) => {
    out[2 * i] = b & 0xff;
    out[2 * i + 1] = b >>> 8;
  });
  return out;
}

/**
 * A safetensors file built by hand: the JSON header written as text with the offsets
 * computed here, padded with spaces to 8 bytes, its length as 8 little-endian bytes, then
 * the data in the order given.
 */
function handFile(entries: readonly Entry[], headerOrder?: readonly number[]): Uint8Array {
  const offsets: [number, number][] = [];
  let at = 0;
  for (const e of entries) {
    offsets.push([at, at + e.bytes.length]);
    at += e.bytes.length;
  }
  const order = headerOrder ?? entries.map((_, i) => i);
  let json = '{"__metadata__":{"format":"pt"}';
  for (const i of order) {
    const e = entries[i]!;
    const [b, end] = offsets[i]!;
    json += `,"${e.name}":{"dtype":"${e.dtype}","shape":[${
      e.shape.join(",")
    }],"data_offsets":[${b},${end}]}`;
  }
  json += "}";
  while (json.length % 8 !== 0) json += " ";
  const out = new Uint8Array(8 + json.length + at);
  let n = json.length;
  for (let i = 0; i < 8; i++) {
    out[i] = n & 0xff;
    n = Math.floor(n / 256);
  }
  for (let i = 0; i < json.length; i++) out[8 + i] = json.charCodeAt(i);
  let pos = 8 + json.length;
  for (const e of entries) {
    out.set(e.bytes, pos);
    pos += e.bytes.length;
  }
  return out;
}

const L = "model.layers.0.";

/** HF layout: a linear weight W[out][in] = 100·out + in (+ a per-tensor offset). */
function linear(name: string, out: number, inn: number, base: number): Entry {
  return {
    name,
    dtype: "F32",
    shape: [out, inn],
    bytes: f32(out, inn, (o, i) => base + 100 * o + i),
  };
}

function handEntries(): Entry[] {
  return [
    {
      name: "model.embed_tokens.weight",
      dtype: "F32",
      shape: [3, 4],
      bytes: f32(3, 4, (v, h) => v * 10 + h),
    },
    linear(`${L}self_attn.q_proj.weight`, 4, 4, 1000),
    linear(`${L}self_attn.k_proj.weight`, 2, 4, 2000),
    linear(`${L}self_attn.v_proj.weight`, 2, 4, 3000),
    linear(`${L}self_attn.o_proj.weight`, 4, 4, 4000),
    linear(`${L}mlp.gate_proj.weight`, 6, 4, 5000),
    linear(`${L}mlp.up_proj.weight`, 6, 4, 6000),
    linear(`${L}mlp.down_proj.weight`, 4, 6, 7000),
    // F16: 1, 2, −1, 0.5
    {
      name: `${L}input_layernorm.weight`,
      dtype: "F16",
      shape: [4],
      bytes: u16(0x3c00, 0x4000, 0xbc00, 0x3800),
    },
    {
      name: `${L}post_attention_layernorm.weight`,
      dtype: "F32",
      shape: [4],
      bytes: f32(1, 4, (_, h) => h + 0.25),
    },
    // BF16: 1, 2, −3, 0.5
    {
      name: "model.norm.weight",
      dtype: "BF16",
      shape: [4],
      bytes: u16(0x3f80, 0x4000, 0xc040, 0x3f00),
    },
  ];
}

async function writeHand(
  dir: string,
  entries: readonly Entry[],
  config: Record<string, unknown> = toHfConfig(HAND, "float32"),
): Promise<void> {
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  // Header order differs from data order: readers must go by the offsets.
  await Deno.writeFile(
    `${dir}/model.safetensors`,
    handFile(entries, entries.map((_, i) => entries.length - 1 - i)),
  );
}

Deno.test("openHfCheckpoint() reads hand-built bytes into our layout", async () => {
  await withTempDir(async (dir) => {
    await writeHand(dir, handEntries());
    const view = right(await openHfCheckpoint(dir)());
    try {
      assertEquals(view.shape, HAND);
      assertEquals(view.tensors.map((t) => t.name).length, 11);
      const w = await loadAll(view);
      assertEquals([...w.get("model.embed_tokens.weight")!], [
        0,
        1,
        2,
        3,
        10,
        11,
        12,
        13,
        20,
        21,
        22,
        23,
      ]);
      // Ours is [in, out]: element (i, o) is HF's (o, i) = 2000 + 100·o + i.
      const k = w.get(`${L}self_attn.k_proj.weight`)!;
      assertEquals(view.tensors[2]!.shape, [4, 2]);
      assertEquals([...k], [2000, 2100, 2001, 2101, 2002, 2102, 2003, 2103]);
      const down = w.get(`${L}mlp.down_proj.weight`)!;
      assertEquals(down[5 * 4 + 3], 7000 + 300 + 5);
      assertEquals([...w.get(`${L}input_layernorm.weight`)!], [1, 2, -1, 0.5]);
      assertEquals([...w.get("model.norm.weight")!], [1, 2, -3, 0.5]);
      assertEquals([...w.get(`${L}post_attention_layernorm.weight`)!], [0.25, 1.25, 2.25, 3.25]);
    } finally {
      view.close();
    }
  });
});

Deno.test("openHfCheckpoint() rejects a truncated file naming it", async () => {
  await withTempDir(async (dir) => {
    await writeHand(dir, handEntries());
    const full = await Deno.readFile(`${dir}/model.safetensors`);
    await Deno.writeFile(`${dir}/model.safetensors`, full.subarray(0, full.length - 3));
    const e = left(await openHfCheckpoint(dir)());
    assertEquals(e._tag, "ContentInvalid"); // exit 2: the file was read, its content is wrong
    assertStringIncludes(renderWhere(e), "model.safetensors");
    assertStringIncludes(e.message, "past the");
  });
});

function renderWhere(e: { _tag: string; path?: string; where?: string }): string {
  return e.path ?? e.where ?? "";
}

Deno.test("openHfCheckpoint() rejects unknown and non-float dtypes", async () => {
  await withTempDir(async (dir) => {
    const entries = handEntries();
    entries[9] = { ...entries[9]!, dtype: "F8_E4M3" };
    await writeHand(dir, entries);
    const unknown = left(await openHfCheckpoint(dir)());
    assertStringIncludes(unknown.message, 'unknown dtype "F8_E4M3"');
    assertStringIncludes(unknown.message, "post_attention_layernorm");
    entries[9] = { ...entries[9]!, dtype: "I32" };
    await writeHand(dir, entries);
    const ints = left(await openHfCheckpoint(dir)());
    assertEquals(ints._tag, "ConfigInvalid");
    assertStringIncludes(renderWhere(ints), `tensor "${L}post_attention_layernorm.weight"`);
    assertStringIncludes(ints.message, "dtype I32 is not supported");
  });
});

Deno.test("openHfCheckpoint() rejects a shape that disagrees with config.json", async () => {
  await withTempDir(async (dir) => {
    const entries = handEntries();
    entries[5] = linear(`${L}mlp.gate_proj.weight`, 5, 4, 5000);
    await writeHand(dir, entries);
    const e = left(await openHfCheckpoint(dir)());
    assertEquals(e._tag, "ConfigInvalid");
    assertStringIncludes(e.message, `"${L}mlp.gate_proj.weight" has shape [5,4]`);
    assertStringIncludes(e.message, "config.json");
    assertStringIncludes(e.message, "[6,4]");
  });
});

Deno.test("openHfCheckpoint() rejects missing and unexpected tensors", async () => {
  await withTempDir(async (dir) => {
    const entries = handEntries();
    await writeHand(dir, entries.slice(0, -1));
    assertStringIncludes(
      left(await openHfCheckpoint(dir)()).message,
      '"model.norm.weight" is missing',
    );
    await writeHand(dir, [...entries, {
      ...entries[9]!,
      name: "model.layers.1.input_layernorm.weight",
    }]);
    const extra = left(await openHfCheckpoint(dir)());
    assertStringIncludes(
      extra.message,
      'unexpected tensor "model.layers.1.input_layernorm.weight"',
    );
    assertStringIncludes(extra.message, "1 layers");
  });
});

Deno.test("openHfCheckpoint() ignores a tied lm_head and old rotary buffers", async () => {
  await withTempDir(async (dir) => {
    const entries = handEntries();
    await writeHand(dir, [
      ...entries,
      { ...entries[0]!, name: "lm_head.weight" },
      {
        name: `${L}self_attn.rotary_emb.inv_freq`,
        dtype: "F32",
        shape: [1],
        bytes: f32(1, 1, () => 1),
      },
    ]);
    const view = right(await openHfCheckpoint(dir)());
    assert(!view.tensors.some((t) => t.name === "lm_head.weight"));
    view.close();
  });
});

Deno.test("openHfCheckpoint() rejects bad config.json and missing weights", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, "{ not json");
    const bad = left(await openHfCheckpoint(dir)());
    assertEquals(bad._tag, "ContentInvalid");
    assertStringIncludes(bad.message, "not valid JSON");
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(toHfConfig(HAND, "float32")));
    const missing = left(await openHfCheckpoint(dir)());
    assertEquals(missing._tag, "IoFailed"); // exit 4: there is no file to read
    assertStringIncludes(missing.message, "no model.safetensors");
    await Deno.writeFile(`${dir}/pytorch_model.bin`, new Uint8Array(1));
    assertStringIncludes(left(await openHfCheckpoint(dir)()).message, "safe_serialization");
  });
});

Deno.test("openHfCheckpoint() checks that the index and the shards agree", async () => {
  await withTempDir(async (dir) => {
    const entries = handEntries();
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(toHfConfig(HAND, "float32")));
    await Deno.writeFile(`${dir}/${shardName(1, 2)}`, handFile(entries.slice(0, 5)));
    await Deno.writeFile(`${dir}/${shardName(2, 2)}`, handFile(entries.slice(5)));
    const map = Object.fromEntries(entries.map((e, i) => [e.name, shardName(i < 5 ? 1 : 2, 2)]));
    const index = (m: Record<string, string>) =>
      JSON.stringify({ metadata: { total_size: 1 }, weight_map: m });
    await Deno.writeTextFile(`${dir}/${INDEX_FILE}`, index(map));
    const view = right(await openHfCheckpoint(dir)());
    assertEquals((await loadAll(view)).get("model.norm.weight")?.[2], -3);
    view.close();
    await Deno.writeTextFile(
      `${dir}/${INDEX_FILE}`,
      index({ ...map, [`${L}self_attn.q_proj.weight`]: shardName(2, 2) }),
    );
    const wrong = left(await openHfCheckpoint(dir)());
    assertStringIncludes(
      wrong.message,
      `puts "${L}self_attn.q_proj.weight" in ${shardName(2, 2)}, which lacks it`,
    );
    const { [`${L}mlp.up_proj.weight`]: _, ...fewer } = map;
    await Deno.writeTextFile(`${dir}/${INDEX_FILE}`, index(fewer));
    assertStringIncludes(
      left(await openHfCheckpoint(dir)()).message,
      "which weight_map does not list",
    );
  });
});

Deno.test("planShards() fills shards in order and gives an oversized tensor its own", () => {
  assertEquals(planShards([["a", 4], ["b", 4], ["c", 20], ["d", 1]], 10), [["a", "b"], ["c"], [
    "d",
  ]]);
  assertEquals(shardName(3, 12), "model-00003-of-00012.safetensors");
});

Deno.test("writeHfCheckpoint() then openHfCheckpoint() is bit-exact in float32, sharded", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(TINY, 3);
    const written = right(
      await writeHfCheckpoint(memoryView(TINY, weights), dir, {
        dtype: "float32",
        maxShardBytes: 1500,
      })(),
    );
    const shards = written.files.filter((f) => f.startsWith("model-"));
    assert(shards.length > 2, `${written.files}`);
    assertEquals(shards[0], shardName(1, shards.length));
    const index = JSON.parse(await Deno.readTextFile(`${dir}/${INDEX_FILE}`));
    assertEquals(
      index.metadata.total_size,
      [...weights.values()].reduce((s, v) => s + 4 * v.length, 0),
    );
    assertEquals(Object.keys(index.weight_map).length, weights.size);
    assertEquals(index.weight_map["model.embed_tokens.weight"], shardName(1, shards.length));
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    assertEquals(config.torch_dtype, "float32");
    const view = right(await openHfCheckpoint(dir)());
    const back = await loadAll(view);
    view.close();
    for (const [name, v] of weights) {
      assertEquals(new Uint32Array(back.get(name)!.buffer), new Uint32Array(v.buffer), name);
    }
  });
});

Deno.test("writeHfCheckpoint() in bfloat16 stores BF16 rounded to nearest even", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(TINY, 4);
    right(
      await writeHfCheckpoint(memoryView(TINY, weights), dir, {
        dtype: "bfloat16",
        maxShardBytes: 5e9,
      })(),
    );
    const header = await Deno.readFile(`${dir}/model.safetensors`);
    const text = new TextDecoder().decode(
      header.subarray(8, 8 + Number(new DataView(header.buffer).getBigUint64(0, LITTLE_ENDIAN))),
    );
    assertStringIncludes(text, '"format":"pt"');
    assert(!text.includes('"F32"'));
    const view = right(await openHfCheckpoint(dir)());
    assertEquals(view.dtype, "BF16");
    const back = await loadAll(view);
    view.close();
    for (const [name, v] of weights) {
      assertEquals(back.get(name), bf16ToFloat32(float32ToBf16(v)), name);
    }
  });
});

Deno.test("writeHfCheckpoint() reports a tensor that fails to load", async () => {
  await withTempDir(async (dir) => {
    const view = memoryView(TINY, randomWeights(TINY, 5));
    const broken = {
      ...view,
      tensors: view.tensors.map((t, i) =>
        i === 4
          ? {
            ...t,
            load: () => TE.left({ _tag: "IoFailed" as const, path: "x", message: "boom" }),
          }
          : t
      ),
    };
    assertEquals(
      left(await writeHfCheckpoint(broken, dir, { dtype: "float32", maxShardBytes: 5e9 })())
        .message,
      "boom",
    );
    assertEquals([...Deno.readDirSync(dir)].length, 0);
  });
});
