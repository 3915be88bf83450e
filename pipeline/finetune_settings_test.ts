import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import {
  decodeFinetune,
  FINETUNE_DEFAULTS,
  type FinetuneRecord,
  finetuneRecord,
  resumeProblem,
} from "./finetune_settings.ts";

const INPUTS = { base: "/runs/b/final", dataHash: "0231905f", records: 999, heldOut: 32 };

Deno.test("FINETUNE_DEFAULTS are the paper's settings, then Stanford Alpaca's", () => {
  const D = FINETUNE_DEFAULTS;
  assertEquals(
    [D.epochs, D.lr, D.warmup, D.beta1, D.beta2, D.eps, D.weightDecay, D.clip, D.batch],
    [2, 1e-4, 100, 0.9, 0.95, 1e-8, 0, 1, 8],
  );
  assertEquals([D.checkpointEvery, D.logEvery, D.seed, D.maxSkippedSteps], [100, 10, 0, 3]);
  assert(D.tensorboard);
  // Left unset, they are resolved against the data: the held-out count and the micro-batch.
  assertEquals([D.microBatch, D.evalExamples, D.limit], [undefined, undefined, undefined]);
  assertEquals(decodeFinetune({}), E.right(D));
});

Deno.test("finetuneRecord() keeps what fixes the steps, in report.json's order", () => {
  const r = finetuneRecord(FINETUNE_DEFAULTS, { ...INPUTS, microBatch: 8 });
  assertEquals(Object.keys(r), [
    "base",
    "dataHash",
    "records",
    "limit",
    "heldOut",
    "epochs",
    "batch",
    "microBatch",
    "lr",
    "warmup",
    "seed",
    "weightDecay",
    "beta1",
    "beta2",
    "eps",
    "clip",
  ]);
  assertEquals([r.limit, r.heldOut, r.microBatch, r.lr], [null, 32, 8, 1e-4]);
  // The order does not depend on which settings the caller gave.
  const given = decodeFinetune({ microBatch: 2, limit: 50, lr: 3e-3 });
  assert(E.isRight(given));
  const r2 = finetuneRecord(given.right, { ...INPUTS, microBatch: 2 });
  assertEquals(Object.keys(r2), Object.keys(r));
  assertEquals([r2.limit, r2.microBatch, r2.lr], [50, 2, 3e-3]);
});

Deno.test("resumeProblem() names the changed setting as the command spells it", () => {
  const was = finetuneRecord(FINETUNE_DEFAULTS, { ...INPUTS, microBatch: 8 });
  assertEquals(resumeProblem(was, was), undefined);
  const cases: readonly [Readonly<Record<string, unknown>>, string][] = [
    [{ lr: 1e-3 }, "written with --lr 0.0001, this command gives 0.001"],
    [{ weightDecay: 0.1 }, "written with --weight-decay 0, this command gives 0.1"],
    [{ microBatch: 4 }, "written with --micro-batch 8, this command gives 4"],
    [{ heldOut: 0 }, "written with --eval-examples 32, this command gives 0"],
    [{ limit: 10 }, "written with --limit null, this command gives 10"],
    [{ base: "/x" }, 'written with CHECKPOINT "/runs/b/final", this command gives "/x"'],
    [{ dataHash: "1" }, 'written with the records of --data "0231905f"'],
    [{ beta2: 0.99 }, "written with beta2 0.95, this command gives 0.99"],
  ];
  for (const [change, text] of cases) {
    const problem = resumeProblem(was, { ...was, ...change } as FinetuneRecord);
    assert(problem !== undefined && problem.message.includes(text), problem?.message ?? "none");
    assertEquals(problem.where, "--resume");
  }
});
