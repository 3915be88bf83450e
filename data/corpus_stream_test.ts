/**
 * The streamed data path against the one it replaced: a corpus split into train and validation
 * and cut into batches gives byte-identical batches whether its tokens are in memory or in a
 * shard set on disk, and both equal a reference written the old way (documents gathered into
 * one array, windows sliced from it), which shares no code with the streams.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { deriveSeed, permutation } from "../base/mod.ts";
import { batchAt, type BatchPosition, batchStream, epochOffset, evalBatches } from "./batches.ts";
import { splitByFraction } from "./split.ts";
import { unigramEntropy } from "./entropy.ts";
import { openShardSet } from "./shard_set.ts";
import { shardStream } from "./token_stream.ts";
import { randomDocuments, seededRandom, writeShardSetForTest } from "./_test_util.ts";

/** The held-out choice as the old `splitByFraction` made it, and the two splits gathered. */
function referenceSplit(
  docs: readonly Int32Array[],
  fraction: number,
  seed: number,
): { train: Int32Array; validation: Int32Array } {
  const n = docs.length;
  const held = Math.round(fraction * n);
  const order = permutation(n, deriveSeed(seed, 0x5ba1));
  const isHeld = new Set(Array.from(order.subarray(0, held)));
  const gather = (keep: (i: number) => boolean) => {
    const parts = docs.filter((_, i) => keep(i));
    const out = new Int32Array(parts.reduce((a, d) => a + d.length, 0));
    let at = 0;
    for (const d of parts) {
      out.set(d, at);
      at += d.length;
    }
    return out;
  };
  return { train: gather((i) => !isHeld.has(i)), validation: gather((i) => isHeld.has(i)) };
}

/** The old `batchAt`: windows sliced from the whole array. */
function referenceBatch(
  tokens: Int32Array,
  order: (epoch: number) => Uint32Array,
  offset: (epoch: number) => number,
  wpe: number,
  p: BatchPosition,
  batch: number,
  seq: number,
): { tokens: number[]; targets: number[]; next: BatchPosition } {
  const inputs: number[] = [];
  const targets: number[] = [];
  let { epoch, cursor } = p;
  for (let b = 0; b < batch; b++) {
    if (cursor >= wpe) {
      epoch += Math.floor(cursor / wpe);
      cursor %= wpe;
    }
    const start = offset(epoch) + order(epoch)[cursor]! * seq;
    inputs.push(...tokens.subarray(start, start + seq));
    targets.push(...tokens.subarray(start + 1, start + seq + 1));
    cursor++;
  }
  if (cursor >= wpe) {
    epoch += Math.floor(cursor / wpe);
    cursor %= wpe;
  }
  return { tokens: inputs, targets, next: { epoch, cursor } };
}

Deno.test("batches from a corpus split by documents are the same in memory, from shards and the old way", async () => {
  const dir = await Deno.makeTempDir({ prefix: "step-corpus-stream-" });
  try {
    const rand = seededRandom(42);
    const docs = randomDocuments(120, 60, 257, 256, rand);
    await writeShardSetForTest(dir, docs, { vocabSize: 257, eot: 256, shardTokens: 500 });
    const set = await openShardSet(dir)();
    assert(E.isRight(set));
    assert(set.right.manifest.shards.length >= 5);
    const flat = new Uint16Array(set.right.manifest.tokens);
    let at = 0;
    for (const d of docs) {
      flat.set(d, at);
      at += d.length;
    }
    const inMemory = { tokens: flat, docEnds: Uint32Array.from(set.right.docEnds) };
    const onDisk = { tokens: shardStream(set.right), docEnds: set.right.docEnds };
    for (const seed of [0, 7]) {
      const ref = referenceSplit(docs, 0.1, seed);
      const a = splitByFraction(inMemory, { fraction: 0.1 }, seed);
      const b = splitByFraction(onDisk, { fraction: 0.1 }, seed);
      assert(E.isRight(a) && E.isRight(b));
      assertEquals(a.right.by, "documents");
      assertEquals(b.right.validationDocIndices, a.right.validationDocIndices);
      assertEquals([a.right.train.length, a.right.validation.length], [
        ref.train.length,
        ref.validation.length,
      ]);
      assertEquals(unigramEntropy(b.right.train), unigramEntropy(ref.train));
      const shape = { batch: 5, seq: 16, seed: seed + 3 };
      const sa = batchStream(a.right.train, shape);
      const sb = batchStream(b.right.train, shape);
      assert(E.isRight(sa) && E.isRight(sb));
      const s = sa.right;
      let p: BatchPosition = s.start;
      // Past three epochs: the offsets and shuffles of later epochs too.
      const steps = Math.ceil((3 * s.windowsPerEpoch) / shape.batch) + 2;
      for (let k = 0; k < steps; k++) {
        const x = batchAt(s, p);
        const y = batchAt(sb.right, p);
        const r = referenceBatch(
          ref.train,
          (e) => permutation(s.windowsPerEpoch, deriveSeed(shape.seed, e)),
          (e) => epochOffset(s, e),
          s.windowsPerEpoch,
          p,
          shape.batch,
          shape.seq,
        );
        assertEquals(y.batch, x.batch);
        assertEquals(y.next, x.next);
        assertEquals([Array.from(x.batch.tokens), Array.from(x.batch.targets), x.next], [
          r.tokens,
          r.targets,
          r.next,
        ]);
        p = x.next;
      }
      assertEquals(p.epoch, 3);
      const ea = evalBatches(a.right.validation, { batch: 4, seq: 16, split: "validation" });
      const eb = evalBatches(b.right.validation, { batch: 4, seq: 16, split: "validation" });
      assert(E.isRight(ea) && E.isRight(eb));
      assertEquals(eb.right, ea.right);
      const windows = Math.floor((ref.validation.length - 1) / 16);
      assertEquals(ea.right.reduce((n, x) => n + x.batch, 0), windows);
      const last = ea.right[ea.right.length - 1]!;
      const start = (windows - 1) * 16;
      assertEquals(
        Array.from(last.targets.subarray((last.batch - 1) * 16)),
        Array.from(ref.validation.subarray(start + 1, start + 17)),
      );
    }
    // The tail split: the stream's last tokens, cut inside a document.
    const ta = splitByFraction(inMemory, { fraction: 0.07, by: "tail" }, 0);
    const tb = splitByFraction(onDisk, { fraction: 0.07, by: "tail" }, 0);
    assert(E.isRight(ta) && E.isRight(tb));
    const cut = flat.length - Math.round(0.07 * flat.length);
    assertEquals(tb.right.train.length, cut);
    const ea = evalBatches(ta.right.validation, { batch: 3, seq: 8 });
    const eb = evalBatches(tb.right.validation, { batch: 3, seq: 8 });
    assert(E.isRight(ea) && E.isRight(eb));
    assertEquals(eb.right, ea.right);
    assertEquals(
      Array.from(eb.right[0]!.tokens.subarray(0, 8)),
      Array.from(flat.subarray(cut, cut + 8)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
