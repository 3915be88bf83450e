import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { openShardSet } from "./shard_set.ts";
import {
  concatStreams,
  documentsStream,
  type FileSegment,
  forEachChunk,
  memoryStream,
  readAll,
  shardStream,
  sliceStream,
  type TokenStream,
} from "./token_stream.ts";
import { randomDocuments, seededRandom, writeShardSetForTest } from "./_test_util.ts";

function concat(docs: readonly ArrayLike<number>[]): Int32Array {
  const out = new Int32Array(docs.reduce((a, d) => a + d.length, 0));
  let at = 0;
  for (const d of docs) {
    out.set(Array.from(d), at);
    at += d.length;
  }
  return out;
}

const LE = true;

/** The ids a list of file segments names, read straight from the files. */
function segmentTokens(segments: readonly FileSegment[]): number[] {
  const out: number[] = [];
  for (const s of segments) {
    const bytes = Deno.readFileSync(s.file);
    const view = new DataView(bytes.buffer);
    for (let i = s.start; i < s.start + s.length; i++) {
      out.push(s.dtype === "uint16" ? view.getUint16(i * 2, LE) : view.getUint32(i * 4, LE));
    }
  }
  return out;
}

/** Random windows of `s` against the same windows of `expected`. */
function checkWindows(s: TokenStream, expected: Int32Array, rand: () => number): void {
  assertEquals(s.length, expected.length);
  for (let k = 0; k < 200; k++) {
    const start = Math.floor(rand() * (expected.length + 1));
    const count = Math.floor(rand() * Math.min(300, expected.length - start + 1));
    const out = new Int32Array(count + 1).fill(-1);
    s.read(start, count, out, 1);
    assertEquals(out.subarray(1), expected.subarray(start, start + count));
    assertEquals(out[0], -1);
  }
  assertEquals(readAll(s), expected);
}

for (const vocabSize of [257, 100000]) {
  Deno.test(`documentsStream(), sliceStream(), concatStreams() read the documents chosen, in memory and from shards (vocabulary ${vocabSize})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "step-stream-" });
    try {
      const rand = seededRandom(vocabSize + 1);
      const eot = vocabSize - 1;
      const docs = randomDocuments(80, 50, vocabSize, eot, rand);
      await writeShardSetForTest(dir, docs, { vocabSize, eot, shardTokens: 200 });
      const set = await openShardSet(dir)();
      assert(E.isRight(set));
      const all = concat(docs);
      const inMemory = memoryStream(vocabSize > 65536 ? all : Uint16Array.from(all));
      const onDisk = shardStream(set.right);
      assertEquals(segmentTokens(onDisk.segments!()), Array.from(all));
      for (const base of [inMemory, onDisk]) {
        checkWindows(base, all, rand);
        for (let trial = 0; trial < 4; trial++) {
          const keep = Uint8Array.from(docs, () => (rand() < 0.3 ? 1 : 0));
          const kept = documentsStream(base, set.right.docEnds, keep);
          const dropped = documentsStream(base, set.right.docEnds, keep.map((k) => 1 - k));
          const expectKept = concat(docs.filter((_, i) => keep[i]));
          checkWindows(kept, expectKept, rand);
          checkWindows(dropped, concat(docs.filter((_, i) => !keep[i])), rand);
          assertEquals(kept.dtype, base.dtype);
          // A view of a view, and views put back together.
          const cut = Math.floor(rand() * expectKept.length);
          checkWindows(sliceStream(kept, cut, expectKept.length), expectKept.subarray(cut), rand);
          const both = concatStreams([
            sliceStream(kept, 0, cut),
            dropped,
            sliceStream(kept, cut, kept.length),
          ]);
          checkWindows(
            both,
            concat([expectKept.subarray(0, cut), readAll(dropped), expectKept.subarray(cut)]),
            rand,
          );
          if (base === onDisk) {
            assertEquals(segmentTokens(kept.segments!()), Array.from(expectKept));
            assertEquals(segmentTokens(both.segments!()), Array.from(readAll(both)));
          } else assertEquals(kept.segments, undefined);
        }
      }
      let sum = 0;
      let next = 0;
      forEachChunk(onDisk, (chunk, offset) => {
        assertEquals(offset, next);
        next += chunk.length;
        for (const id of chunk) sum += id;
      }, 37);
      assertEquals([next, sum], [all.length, all.reduce((a, b) => a + b, 0)]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("memoryStream() refuses a read outside the stream or the buffer", () => {
  const s = memoryStream(new Uint16Array(10));
  for (
    const [start, count, size, at] of [[8, 3, 5, 0], [-1, 1, 5, 0], [0, 4, 4, 1], [0.5, 1, 4, 0]]
  ) {
    let threw = false;
    try {
      s.read(start!, count!, new Int32Array(size!), at);
    } catch (e) {
      threw = e instanceof RangeError;
    }
    assert(threw, `${start}, ${count}, ${size}, ${at}`);
  }
  assertEquals(documentsStream(s, [4, 10], [0, 0]).length, 0);
});
