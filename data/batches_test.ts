import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import {
  batchAt,
  batchesFrom,
  type BatchStream,
  batchStream,
  decodeBatchPosition,
  epochOffset,
  evalBatches,
} from "./batches.ts";

/** Tokens 0..n-1, so a window's content tells where it starts. */
function ramp(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

function stream(n: number, batch: number, seq: number, seed = 1): BatchStream {
  const s = batchStream(ramp(n), { batch, seq, seed });
  assert(E.isRight(s));
  return s.right;
}

Deno.test("batchAt() gives seq inputs and the targets shifted by one, row-major", () => {
  const s = stream(1000, 3, 16);
  const { batch } = batchAt(s, s.start);
  assertEquals([batch.batch, batch.seq, batch.tokens.length, batch.targets.length], [
    3,
    16,
    48,
    48,
  ]);
  for (let b = 0; b < 3; b++) {
    const row = batch.tokens.subarray(b * 16, b * 16 + 16);
    const tgt = batch.targets.subarray(b * 16, b * 16 + 16);
    for (let i = 0; i < 16; i++) assertEquals(tgt[i], row[i]! + 1);
    assertEquals(row[0]! % 16, 0); // epoch 0 has no offset
  }
});

Deno.test("an epoch visits every window once, and epochs reshuffle deterministically", () => {
  const s = stream(1001, 4, 10, 7);
  assertEquals(s.windowsPerEpoch, 99); // one window given up for the per-epoch offset
  const starts = (epoch: number) => {
    const seen: number[] = [];
    for (const { batch } of batchesFrom(s, { epoch, cursor: 0 }, Math.ceil(99 / 4))) {
      for (let b = 0; b < batch.batch; b++) seen.push(batch.tokens[b * 10]!);
    }
    return seen.slice(0, 99);
  };
  const e0 = starts(0);
  assertEquals([...e0].sort((a, b) => a - b), Array.from({ length: 99 }, (_, k) => k * 10));
  const e1 = starts(1);
  const off = epochOffset(s, 1);
  assertEquals([...e1].sort((a, b) => a - b), Array.from({ length: 99 }, (_, k) => off + k * 10));
  assert(
    e0.map((x) => (x - 0) / 10).join() !== e1.map((x) => (x - off) / 10).join(),
    "epoch 1 reshuffles",
  );
  assertEquals(starts(1), e1);
  const again = stream(1001, 4, 10, 7);
  assertEquals(batchAt(again, { epoch: 3, cursor: 5 }), batchAt(s, { epoch: 3, cursor: 5 }));
  // Every window of every epoch stays inside the data.
  for (let e = 0; e < 20; e++) assert(epochOffset(s, e) + 99 * 10 + 1 <= 1001);
});

Deno.test("a run resumed from a JSON-saved position draws exactly the same batches", () => {
  const s = stream(5000, 8, 32, 11);
  const straight = [...batchesFrom(s, s.start, 60)];
  // Stop after 23 batches, save the position as JSON, rebuild everything, resume.
  const saved = JSON.stringify(straight[22]!.next);
  const restored = decodeBatchPosition(JSON.parse(saved));
  assert(E.isRight(restored));
  const resumed = [...batchesFrom(stream(5000, 8, 32, 11), restored.right, 37)];
  assertEquals(
    resumed.map((x) => Array.from(x.batch.tokens)),
    straight.slice(23).map((x) => Array.from(x.batch.tokens)),
  );
  assertEquals(resumed.at(-1)!.next, straight.at(-1)!.next);
  assert(straight.at(-1)!.next.epoch >= 2, "60 batches of 8 cross epochs of 155 windows");
});

Deno.test("batches larger than an epoch carry over into the next epoch", () => {
  const built = batchStream(ramp(31), { batch: 5, seq: 10, seed: 1, shiftWindows: false });
  assert(E.isRight(built));
  const s = built.right;
  assertEquals(s.windowsPerEpoch, 3);
  const step = batchAt(s, s.start);
  assertEquals(step.next, { epoch: 1, cursor: 2 });
  const firsts = Array.from({ length: 5 }, (_, b) => step.batch.tokens[b * 10]!);
  assertEquals([...firsts.slice(0, 3)].sort((a, b) => a - b), [0, 10, 20]);
});

Deno.test("batchStream() refuses a sequence longer than the data and bad shapes, naming the field", () => {
  const long = batchStream(ramp(100), { batch: 2, seq: 100, seed: 1 });
  assertEquals(
    long,
    E.left({
      _tag: "ConfigInvalid",
      where: "data.seq",
      message: "sequence length 100 needs at least 101 tokens, the training split has 100",
    }),
  );
  const zero = batchStream(ramp(100), { batch: 0, seq: 8, seed: 1, where: "train" });
  assert(E.isLeft(zero) && zero.left.where === "train.batch");
  assert(E.isLeft(decodeBatchPosition({ epoch: 0.5, cursor: 0 })));
  assert(E.isLeft(decodeBatchPosition({ epoch: 0 })));
});

Deno.test("evalBatches() covers consecutive windows in order with a short last batch", () => {
  const r = evalBatches(ramp(101), { batch: 4, seq: 10 });
  assert(E.isRight(r));
  assertEquals(r.right.map((b) => b.batch), [4, 4, 2]);
  assertEquals(
    Array.from(r.right[2]!.tokens.subarray(10, 20)),
    Array.from({ length: 10 }, (_, i) => 90 + i),
  );
  assertEquals(r.right[2]!.targets[19], 100);
  const capped = evalBatches(ramp(101), { batch: 4, seq: 10, maxBatches: 1 });
  assert(E.isRight(capped) && capped.right.length === 1);
  const short = evalBatches(ramp(5), { batch: 1, seq: 8 });
  assert(E.isLeft(short) && /the validation split has 5/.test(short.left.message));
});
