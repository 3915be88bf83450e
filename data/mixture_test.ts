import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { batchesFrom, batchStream } from "./batches.ts";
import {
  decodeMixturePosition,
  mixture,
  mixtureAt,
  type MixturePosition,
  nextSource,
  sourceSeed,
} from "./mixture.ts";
import { memoryStream } from "./token_stream.ts";

/** Source s holds ids s·1000 + i, so a row's first id tells its source and offset. */
function sourceTokens(s: number, n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => s * 1000 + i);
}

const LENGTHS = [600, 130, 300];
const WEIGHTS = [3, 1, 0.5];
const SHAPE = { batch: 4, seq: 8, seed: 11 };

function build() {
  const m = mixture(
    LENGTHS.map((n, s) => ({ tokens: memoryStream(sourceTokens(s, n)), weight: WEIGHTS[s]! })),
    SHAPE,
  );
  assert(E.isRight(m));
  return m.right;
}

Deno.test("mixtureAt() deals rows in proportion to the weights, each source in its own shuffled order", () => {
  const m = build();
  const total = WEIGHTS.reduce((a, b) => a + b, 0);
  const rows: number[][] = LENGTHS.map(() => []);
  let p: MixturePosition = m.start;
  let dealt = 0;
  for (let k = 0; k < 200; k++) {
    const step = mixtureAt(m, p);
    for (let r = 0; r < step.batch.batch; r++) {
      const first = step.batch.tokens[r * SHAPE.seq]!;
      const s = Math.floor(first / 1000);
      rows[s]!.push(first % 1000);
      dealt++;
      // Smooth weighted round-robin: every prefix within one row of its share.
      for (let i = 0; i < LENGTHS.length; i++) {
        assert(Math.abs(rows[i]!.length - (dealt * WEIGHTS[i]!) / total) < 1 + 1e-9);
      }
      // The window offset the batch reports indexes the sources laid end to end.
      const offset = LENGTHS.slice(0, s).reduce((a, b) => a + b, 0);
      assertEquals(step.batch.window!.starts[r], offset + (first % 1000));
      assertEquals(step.batch.targets[r * SHAPE.seq], first + 1);
    }
    p = step.next;
  }
  // Source s's rows are the windows its own stream gives, one at a time, across its epochs.
  for (let s = 0; s < LENGTHS.length; s++) {
    const own = batchStream(memoryStream(sourceTokens(s, LENGTHS[s]!)), {
      batch: 1,
      seq: SHAPE.seq,
      seed: sourceSeed(SHAPE.seed, s),
    });
    assert(E.isRight(own));
    const expected = [...batchesFrom(own.right, own.right.start, rows[s]!.length)].map((b) =>
      b.batch.tokens[0]! % 1000
    );
    assertEquals(rows[s], expected);
    assert(rows[s]!.length > own.right.windowsPerEpoch, `source ${s} did not wrap an epoch`);
  }
});

Deno.test("mixtureAt() resumes from a stored position exactly where the uninterrupted run is", () => {
  const m = build();
  const whole = [];
  let p: MixturePosition = m.start;
  for (let k = 0; k < 60; k++) {
    const step = mixtureAt(m, p);
    whole.push(step.batch);
    p = step.next;
  }
  for (const stop of [1, 17, 33]) {
    let q: MixturePosition = m.start;
    for (let k = 0; k < stop; k++) q = mixtureAt(m, q).next;
    const stored = JSON.parse(JSON.stringify(q));
    const decoded = decodeMixturePosition(stored, LENGTHS.length);
    assert(E.isRight(decoded));
    // A fresh mixture (a new process) from the stored position.
    let r = decoded.right;
    const again = build();
    for (let k = stop; k < 60; k++) {
      const step = mixtureAt(again, r);
      assertEquals(step.batch, whole[k]);
      r = step.next;
    }
  }
});

Deno.test("mixture() and decodeMixturePosition() refuse bad weights and positions, naming the field", () => {
  const bad = mixture([{ tokens: memoryStream(sourceTokens(0, 100)), weight: 0 }], SHAPE);
  assert(E.isLeft(bad) && bad.left.where === "data.sources[0].weight");
  const short = mixture([
    { tokens: memoryStream(sourceTokens(0, 100)), weight: 1 },
    { tokens: memoryStream(sourceTokens(1, 5)), weight: 1 },
  ], SHAPE);
  assert(E.isLeft(short) && short.left.where === "data.sources[1].seq");
  assert(E.isLeft(decodeMixturePosition({ epoch: 0, cursor: 0 }, 2)));
  assert(E.isLeft(decodeMixturePosition({ sources: [{ epoch: 0, cursor: 0 }] }, 2)));
  const neg = decodeMixturePosition({ sources: [{ epoch: 0, cursor: -1 }] }, 1);
  assert(E.isLeft(neg) && neg.left.where === "position.sources[0]");
  assertEquals(nextSource([1, 1], [0, 0]), 0);
  assertEquals(nextSource([1, 1], [1, 0]), 1);
});
