import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { openShardSet } from "./shard_set.ts";
import { randomDocuments, seededRandom, writeShardSetForTest } from "./_test_util.ts";

function concat(docs: readonly Int32Array[]): Int32Array {
  const out = new Int32Array(docs.reduce((a, d) => a + d.length, 0));
  let at = 0;
  for (const d of docs) {
    out.set(d, at);
    at += d.length;
  }
  return out;
}

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "step-shards-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const vocabSize of [300, 70000]) {
  Deno.test(`openShardSet() reads windows across shard boundaries (vocabulary ${vocabSize})`, () =>
    withDir(async (dir) => {
      const rand = seededRandom(vocabSize);
      const docs = randomDocuments(60, 40, vocabSize, vocabSize - 1, rand);
      await writeShardSetForTest(dir, docs, { vocabSize, eot: vocabSize - 1, shardTokens: 150 });
      const set = await openShardSet(dir)();
      assert(E.isRight(set), E.isLeft(set) ? set.left.message : "");
      const all = concat(docs);
      assert(set.right.manifest.shards.length > 4);
      assertEquals(set.right.manifest.dtype, vocabSize > 65536 ? "uint32" : "uint16");
      assertEquals(set.right.shardStarts[set.right.shardStarts.length - 1], all.length);
      // Global document ends: the running sum of the documents' lengths.
      let end = 0;
      assertEquals(Array.from(set.right.docEnds), docs.map((d) => (end += d.length)));
      for (let k = 0; k < 300; k++) {
        const start = Math.floor(rand() * all.length);
        const count = Math.floor(rand() * Math.min(400, all.length - start + 1));
        const out = new Int32Array(count + 3).fill(-7);
        set.right.read(start, count, out, 2);
        assertEquals(
          Array.from(out.subarray(2, 2 + count)),
          Array.from(all.subarray(start, start + count)),
        );
        assertEquals([out[0], out[1], out[count + 2]], [-7, -7, -7]);
      }
      const whole = new Int32Array(all.length);
      set.right.read(0, all.length, whole);
      assertEquals(whole, all);
      let threw = false;
      try {
        set.right.read(all.length - 2, 3, new Int32Array(3));
      } catch (e) {
        threw = e instanceof RangeError;
      }
      assert(threw, "a read past the end did not throw");
    }));
}

Deno.test("openShardSet() names the damaged file: truncated tokens, a short document table, a bad manifest", () =>
  withDir(async (dir) => {
    const docs = randomDocuments(20, 30, 257, 256, seededRandom(3));
    const fresh = () =>
      writeShardSetForTest(dir, docs, { vocabSize: 257, eot: 256, shardTokens: 100 });

    await fresh();
    const tok = `${dir}/00001.tok`;
    const bytes = await Deno.readFile(tok);
    await Deno.writeFile(tok, bytes.subarray(0, bytes.length - 2));
    const truncated = await openShardSet(dir)();
    assert(E.isLeft(truncated) && truncated.left._tag === "ContentInvalid");
    assertEquals(truncated.left.path, tok);
    assert(
      /Damaged token shard set: the file has \d+ bytes, the manifest says \d+/.test(
        truncated.left.message,
      ),
    );

    await fresh();
    await Deno.remove(`${dir}/00002.docs`);
    const missing = await openShardSet(dir)();
    assert(E.isLeft(missing) && missing.left._tag === "ContentInvalid");
    assertEquals(missing.left.path, `${dir}/00002.docs`);

    await fresh();
    const ends = new Float64Array((await Deno.readFile(`${dir}/00000.docs`)).buffer);
    ends[ends.length - 1] = ends[ends.length - 1]! - 1;
    await Deno.writeFile(`${dir}/00000.docs`, new Uint8Array(ends.buffer));
    const table = await openShardSet(dir)();
    assert(E.isLeft(table) && table.left._tag === "ContentInvalid");
    assertEquals(table.left.path, `${dir}/00000.docs`);
    assert(
      /the documents end at \d+, the shard holds \d+ tokens/.test(table.left.message),
      table.left.message,
    );

    await fresh();
    const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    for (
      const [change, pattern] of [
        [{ version: 2 }, /version 2 is not the version/],
        [{ dtype: "uint32" }, /dtype uint32 does not fit vocabSize 257/],
        [{ tokens: m.tokens + 1 }, /the shards hold \d+ tokens in 20 documents, the totals say/],
        [{ shards: [{ ...m.shards[0], file: "../x.tok" }, ...m.shards.slice(1)] }, /plain names/],
        [{ format: "other" }, /Not a token shard manifest: format/],
      ] as const
    ) {
      await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify({ ...m, ...change }));
      const r = await openShardSet(dir)();
      assert(E.isLeft(r) && r.left._tag === "ContentInvalid", JSON.stringify(change));
      assertEquals(r.left.path, `${dir}/manifest.json`);
      assert(pattern.test(r.left.message), r.left.message);
    }
    await Deno.writeTextFile(`${dir}/manifest.json`, "{ not json");
    const garbled = await openShardSet(dir)();
    assert(E.isLeft(garbled) && garbled.left._tag === "ContentInvalid");

    await Deno.remove(`${dir}/manifest.json`);
    const none = await openShardSet(dir)();
    assert(E.isLeft(none) && none.left._tag === "IoFailed");
    assertEquals(none.left.path, `${dir}/manifest.json`);
  }));
