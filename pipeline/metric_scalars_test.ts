import { assert, assertEquals } from "../tests/assert.ts";
import { metricScalars } from "./metric_scalars.ts";
import type { FinetuneMetric, RunMetric } from "./metrics_records.ts";

Deno.test("metricScalars() plots a train record at its global step, its step in the node a scalar, null left out", () => {
  const r: RunMetric = {
    type: "train",
    node: "s2.continue",
    stage: 2,
    step: 3,
    loss: null,
    lr: 1e-3,
    gradNorm: null,
    tokens: 4096,
    memoryBytes: 1000,
    skipped: true,
    globalStep: 15,
  };
  assertEquals(metricScalars(r), {
    step: 15,
    values: [
      { tag: "train/stage", value: 2 },
      { tag: "train/step", value: 3 },
      { tag: "train/lr", value: 1e-3 },
      { tag: "train/tokens", value: 4096 },
      { tag: "train/memoryBytes", value: 1000 },
      { tag: "train/skipped", value: 1 },
    ],
  });
});

Deno.test("metricScalars() goes into a stage record's accounted state by role", () => {
  const roles = {
    trainableWeights: 1,
    gradients: 2,
    optimizer: 3,
    frozen: 4,
    adapters: 5,
    total: 15,
  };
  const r: RunMetric = {
    type: "stage",
    stage: 1,
    node: "s1.train",
    layers: 2,
    trainableParams: 10,
    frozenParams: 0,
    adapterParams: 0,
    steps: 12,
    valLoss: 3.5,
    merges: 0,
    accountedStateBytes: 15,
    accountedState: roles,
    measuredPeakBytes: 40,
    bufferPeakBytes: 40,
    tensorCountPeakBytes: 44,
    heapBytes: null,
    gpuPeakBytes: null,
    processPeakBytes: 900,
    predictedStateBytes: 15,
    predictedPeakBytes: 42,
    predictedPeakAt: "backward head cross-entropy",
    globalStep: 12,
  };
  const s = metricScalars(r);
  assertEquals(s.step, 12);
  assertEquals(s.values.map((v) => v.tag).filter((t) => t.startsWith("stage/accountedState/")), [
    "stage/accountedState/trainableWeights",
    "stage/accountedState/gradients",
    "stage/accountedState/optimizer",
    "stage/accountedState/frozen",
    "stage/accountedState/adapters",
    "stage/accountedState/total",
  ]);
  assertEquals(s.values.find((v) => v.tag === "stage/measuredPeakBytes")?.value, 40);
  assertEquals(s.values.find((v) => v.tag === "stage/predictedPeakBytes")?.value, 42);
  assert(!s.values.some((v) => v.tag === "stage/heapBytes"));
  assertEquals(s.values.length, 21);
});

Deno.test("metricScalars() plots fine-tuning records at their step, the held-out loss under its set", () => {
  const train: FinetuneMetric = {
    type: "train",
    step: 4,
    epoch: 1,
    loss: 2.5,
    lr: 1e-4,
    gradNorm: 0.5,
    responseTokens: 60,
  };
  assertEquals(metricScalars(train), {
    step: 4,
    values: [
      { tag: "train/epoch", value: 1 },
      { tag: "train/loss", value: 2.5 },
      { tag: "train/lr", value: 1e-4 },
      { tag: "train/gradNorm", value: 0.5 },
      { tag: "train/responseTokens", value: 60 },
    ],
  });
  const heldOut: FinetuneMetric = {
    type: "eval",
    set: "held-out",
    when: "before",
    step: 0,
    loss: 3,
  };
  assertEquals(metricScalars(heldOut), {
    step: 0,
    values: [{ tag: "eval/held-out/loss", value: 3 }],
  });
});
