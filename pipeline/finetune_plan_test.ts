import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import type { SftExample } from "../data/mod.ts";
import { type FinetunePlan, finetunePlan, padExamples, plannedStep } from "./finetune_plan.ts";
import { decodeFinetune, type FinetuneSettings } from "./finetune_settings.ts";

const BASE = { evalExamples: 3, epochs: 2, batch: 6, seed: 5, lr: 1e-4, warmup: 2 };

function settings(o: Record<string, number> = {}): FinetuneSettings {
  const s = decodeFinetune({ ...BASE, ...o });
  assert(E.isRight(s), JSON.stringify(s));
  return s.right;
}

function plan(o: Record<string, number> = {}, examples = 23): FinetunePlan {
  const p = finetunePlan(settings(o), examples);
  assert(E.isRight(p), JSON.stringify(p));
  return p.right;
}

function example(tokens: number[], prompt: number): SftExample {
  const targets = Int32Array.from(
    tokens.slice(1).concat([99]),
    (t, i) => (i + 1 < prompt ? -1 : t),
  );
  return {
    tokens: Int32Array.from(tokens),
    targets,
    responseTokens: tokens.length - prompt + 1,
    truncated: false,
  };
}

Deno.test("finetunePlan() holds out a seeded subset and trains on the rest", () => {
  const p = plan();
  assertEquals(p.heldOut.length, 3);
  assertEquals(p.train.length, 20);
  assertEquals(
    [...p.heldOut, ...p.train].sort((a, b) => a - b),
    Array.from({ length: 23 }, (_, i) => i),
  );
  assertEquals(plan().heldOut, p.heldOut);
  assert(plan({ seed: 6 }).heldOut.join() !== p.heldOut.join());
  // 20 examples in steps of 6: 4 steps per epoch, the last one of 2.
  assertEquals([p.stepsPerEpoch, p.steps], [4, 8]);
});

Deno.test("plannedStep() visits every training example once per epoch, in a new order each epoch", () => {
  const p = plan();
  const epochs = [0, 1].map((e) =>
    Array.from({ length: p.stepsPerEpoch }, (_, k) => plannedStep(p, e * p.stepsPerEpoch + k))
  );
  for (const [e, steps] of epochs.entries()) {
    assertEquals(steps.map((s) => s.epoch), [e, e, e, e]);
    assertEquals(steps.map((s) => s.examples.length), [6, 6, 6, 2]);
    assertEquals(steps.flatMap((s) => s.examples).sort((a, b) => a - b), [...p.train]);
  }
  assert(
    epochs[0]!.flatMap((s) => s.examples).join() !== epochs[1]!.flatMap((s) => s.examples).join(),
  );
  // A pure function of the step: recomputing it gives the same batch (what resuming relies on).
  assertEquals(plannedStep(plan(), 5), plannedStep(p, 5));
});

Deno.test("finetunePlan() clamps a warmup longer than the run to its last step", () => {
  assertEquals([plan({ warmup: 2 }).warmup, plan({ warmup: 100 }).warmup], [2, 7]);
});

Deno.test("finetunePlan() resolves the held-out count and the micro-batch it was left to", () => {
  // Unset: a tenth of the usable examples, at most 32; the micro-batch is the batch.
  const defaults = settings();
  const { evalExamples: _, ...unset } = defaults;
  const held = (n: number) => E.map((p: FinetunePlan) => p.heldOut.length)(finetunePlan(unset, n));
  assertEquals([held(100), held(1000), held(5)], [E.right(10), E.right(32), E.right(0)]);
  assertEquals([plan().microBatch, plan({ microBatch: 4 }).microBatch], [6, 4]);
});

Deno.test("finetunePlan() refuses a held-out set that leaves nothing to train on", () => {
  const r = finetunePlan(settings({ evalExamples: 23 }), 23);
  assert(E.isLeft(r));
  assertEquals(r.left.where, "--eval-examples");
  assertEquals(r.left.message, "23 held out of 23 usable examples leaves none to train on");
});

Deno.test("decodeFinetune() refuses a bad setting, naming its field", () => {
  for (const [key, value] of [["epochs", 0], ["batch", 1.5], ["microBatch", -1], ["lr", 0]]) {
    const r = decodeFinetune({ [key!]: value });
    assert(E.isLeft(r));
    assert(r.left.message.startsWith(`${key}: `), r.left.message);
  }
  assert(E.isLeft(decodeFinetune({ warmup: -1 })));
  assert(E.isLeft(decodeFinetune({ lr: 1e-4, lrr: 1 })), "an unknown field is refused");
});

Deno.test("padExamples() pads each micro-batch to its longest row with ignored targets", () => {
  const xs = [example([1, 2, 3, 4], 2), example([5, 6], 1), example([7, 8, 9], 3)];
  const mbs = padExamples(xs, { microBatch: 2, pad: 0 });
  assertEquals(mbs.map((m) => [m.batch, m.seq]), [[2, 4], [1, 3]]);
  assertEquals(Array.from(mbs[0]!.tokens), [1, 2, 3, 4, 5, 6, 0, 0]);
  assertEquals(Array.from(mbs[0]!.targets), [-1, 3, 4, 99, 6, 99, -1, -1]);
  assertEquals(Array.from(mbs[1]!.targets), [-1, -1, 99]);
  // Every counted target of every example survives padding, and nothing else counts.
  const counted = mbs.reduce((n, m) => n + m.targets.filter((t) => t >= 0).length, 0);
  assertEquals(counted, xs.reduce((n, x) => n + x.responseTokens, 0));
});
