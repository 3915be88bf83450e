import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { resolveSources } from "./sources.ts";
import { loadTokenized, tokenizeDocuments } from "./token_cache.ts";
import { byteTokenizer, type Tokenizer } from "./tokenizer.ts";

/** The byte tokeniser, counting how many documents it encodes. */
function countingTokenizer(): Tokenizer & { calls: number } {
  const inner = byteTokenizer();
  const counter = {
    ...inner,
    calls: 0,
    encode: (text: string) => {
      counter.calls++;
      return inner.encode(text);
    },
  };
  return counter;
}

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tokenizeDocuments() joins documents, each followed by end-of-text, and records their ends", () => {
  const d = tokenizeDocuments(["hi", "", "é"], byteTokenizer());
  assert(d.tokens instanceof Uint16Array);
  assertEquals(Array.from(d.tokens), [104, 105, 256, 256, 0xc3, 0xa9, 256]);
  assertEquals(Array.from(d.docEnds), [3, 4, 7]);
  const wide = tokenizeDocuments(["a"], { ...byteTokenizer(), vocabSize: 70000 });
  assert(wide.tokens instanceof Int32Array);
});

Deno.test("loadTokenized() reads the cache on the second load instead of tokenising again", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text":"first doc"}\n{"text":"second"}\n');
    await Deno.writeTextFile(`${dir}/b.txt`, "third");
    const cacheDir = `${dir}/.cache/tokens`;
    const units = await resolveSources(["a.jsonl", "b.txt"], dir)();
    assert(E.isRight(units));
    const tok = countingTokenizer();
    const first = await loadTokenized(units.right, tok, { cacheDir })();
    assert(E.isRight(first));
    assertEquals([first.right.fromCache, tok.calls], [false, 3]);
    const files: string[] = [];
    for await (const e of Deno.readDir(cacheDir)) files.push(e.name);
    assertEquals(files.map((f) => f.replace(/^[0-9a-f]{32}/, "<hash>")).sort(), [
      "<hash>.bin",
      "<hash>.json",
    ]);

    const second = await loadTokenized(units.right, tok, { cacheDir })();
    assert(E.isRight(second));
    assertEquals([second.right.fromCache, tok.calls], [true, 3]); // no encode call
    assertEquals(Array.from(second.right.docs.tokens), Array.from(first.right.docs.tokens));
    assertEquals(Array.from(second.right.docs.docEnds), Array.from(first.right.docs.docEnds));
    assertEquals(second.right.cacheFile, first.right.cacheFile);
  });
});

Deno.test("loadTokenized() misses the cache when a source, the tokeniser or a reader option changes", async () => {
  await withTempDir(async (dir) => {
    const cacheDir = `${dir}/cache`;
    await Deno.writeTextFile(`${dir}/a.txt`, "v1");
    const tok = countingTokenizer();
    const load = async (field?: string) => {
      const units = await resolveSources(
        [field === undefined ? "a.txt" : { path: "a.txt", field }],
        dir,
      )();
      assert(E.isRight(units));
      const r = await loadTokenized(units.right, tok, { cacheDir })();
      assert(E.isRight(r));
      return r.right;
    };
    assert(!(await load()).fromCache);
    assert((await load()).fromCache);
    await Deno.writeTextFile(`${dir}/a.txt`, "v2 longer");
    const changed = await load();
    assert(!changed.fromCache);
    assertEquals(byteTokenizer().decode(changed.docs.tokens), "v2 longer<|endoftext|>");
    assert(!(await load("body")).fromCache);
    const units = await resolveSources(["a.txt"], dir)();
    assert(E.isRight(units));
    const other = await loadTokenized(units.right, { ...byteTokenizer(), name: "bytes-v2" }, {
      cacheDir,
    })();
    assert(E.isRight(other) && !other.right.fromCache);
  });
});

Deno.test("loadTokenized() ignores a damaged cache entry and rebuilds it", async () => {
  await withTempDir(async (dir) => {
    const cacheDir = `${dir}/cache`;
    const units = [{ kind: "builtin" as const, seed: 1, documents: 3, version: 1 }];
    const tok = countingTokenizer();
    const first = await loadTokenized(units, tok, { cacheDir })();
    assert(E.isRight(first) && first.right.cacheFile !== undefined);
    await Deno.writeFile(first.right.cacheFile, new Uint8Array(7)); // truncated
    const again = await loadTokenized(units, tok, { cacheDir })();
    assert(E.isRight(again));
    assert(!again.right.fromCache);
    assertEquals(Array.from(again.right.docs.tokens), Array.from(first.right.docs.tokens));
    const third = await loadTokenized(units, tok, { cacheDir })();
    assert(E.isRight(third) && third.right.fromCache);
  });
});
