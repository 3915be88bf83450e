import { assertEquals } from "../tests/assert.ts";
import { finetuneSummary } from "./finetune_summary.ts";
import type { FinetuneMetric } from "./metrics_records.ts";

function step(step: number, epoch: number, loss: number | null, tokens: number): FinetuneMetric {
  return {
    type: "train",
    step,
    epoch,
    loss,
    lr: 1e-4,
    gradNorm: loss === null ? null : 1,
    responseTokens: tokens,
    ...(loss === null ? { skipped: true } : {}),
  };
}

Deno.test("finetuneSummary() counts the steps that updated the weights, epoch by epoch", () => {
  const records: FinetuneMetric[] = [
    { type: "eval", set: "held-out", when: "before", step: 0, loss: 5 },
    step(1, 0, null, 7),
    step(2, 0, 4, 10),
    step(3, 0, 3, 30),
    step(4, 1, null, 11),
    step(5, 1, 2, 20),
    { type: "eval", set: "held-out", when: "after", step: 5, loss: 2.5 },
  ];
  assertEquals(finetuneSummary(records), {
    responseTokens: 60,
    firstLoss: 4,
    lastLoss: 2,
    epochLoss: [(4 * 10 + 3 * 30) / 40, 2],
    heldOut: { before: 5, after: 2.5 },
  });
  // Without the evaluation after (a run stopped early), there is no held-out pair.
  assertEquals(finetuneSummary(records.slice(0, 3)).heldOut, null);
  assertEquals(finetuneSummary([]), {
    responseTokens: 0,
    firstLoss: null,
    lastLoss: null,
    epochLoss: [],
    heldOut: null,
  });
});
