import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { exitCode } from "../base/mod.ts";
import {
  decodeMetricLines,
  type FinetuneMetric,
  FinetuneMetricCodec,
  type RunMetric,
  RunMetricCodec,
} from "./metrics_records.ts";

const ROLES = {
  trainableWeights: 8,
  gradients: 8,
  optimizer: 16,
  frozen: 4,
  adapters: 0,
  total: 36,
};

/** One record of each kind, as the interpreter builds them (a skipped step's loss is NaN). */
const RUN: readonly RunMetric[] = [
  {
    type: "train",
    node: "s1.train",
    stage: 1,
    step: 1,
    loss: 5.5,
    lr: 1.5e-4,
    gradNorm: 2.8,
    tokens: 2048,
    memoryBytes: 2941952,
    globalStep: 1,
  },
  {
    type: "train",
    node: "s1.train",
    stage: 1,
    step: 2,
    loss: NaN,
    lr: 3e-4,
    gradNorm: Infinity,
    tokens: 4096,
    memoryBytes: 2941952,
    skipped: true,
    globalStep: 2,
  },
  { type: "eval", node: "s1.train", valLoss: 2.5, perplexity: Math.exp(2.5), globalStep: 2 },
  { type: "eval", node: "wiki", set: "wiki", valLoss: 3, perplexity: Math.exp(3), globalStep: 2 },
  { type: "grow", node: "s2.grow", add: 1, layers: 4, globalStep: 2 },
  { type: "merge", node: "s2.continue", step: 3, merged: 28, prunedFraction: 0.99, globalStep: 5 },
  {
    type: "stage",
    stage: 1,
    node: "s1.train",
    layers: 3,
    trainableParams: 100,
    frozenParams: 0,
    adapterParams: 0,
    steps: 2,
    valLoss: 2.5,
    merges: 0,
    accountedStateBytes: 36,
    accountedState: ROLES,
    measuredPeakBytes: 50,
    bufferPeakBytes: 50,
    tensorCountPeakBytes: 60,
    heapBytes: null,
    gpuPeakBytes: null,
    processPeakBytes: 1e6,
    predictedStateBytes: 36,
    predictedPeakBytes: 48,
    predictedPeakAt: "backward",
    wallSeconds: 1.5,
    globalStep: 2,
  },
];

const FINETUNE: readonly FinetuneMetric[] = [
  { type: "eval", set: "held-out", when: "before", step: 0, loss: 2.25 },
  {
    type: "train",
    step: 1,
    epoch: 0,
    loss: 2.5,
    lr: 1e-4,
    gradNorm: 1.25,
    responseTokens: 40,
  },
];

function jsonLines(records: readonly unknown[]): string {
  return records.map((r) => JSON.stringify(r) + "\n").join("");
}

Deno.test("decodeMetricLines() reads back every record kind the writers write", () => {
  const run = decodeMetricLines(RunMetricCodec, jsonLines(RUN), "metrics.jsonl");
  assert(E.isRight(run), JSON.stringify(run));
  // JSON writes a skipped step's non-finite loss and gradient norm as null.
  assertEquals(run.right, JSON.parse(JSON.stringify(RUN)));
  assertEquals(run.right[1]?.type === "train" ? run.right[1].loss : 0, null);
  const ft = decodeMetricLines(FinetuneMetricCodec, jsonLines(FINETUNE), "ft.jsonl");
  assertEquals(ft, E.right(FINETUNE as FinetuneMetric[]));
});

Deno.test("decodeMetricLines() names the file and the line of a damaged record", () => {
  const text = jsonLines(RUN.slice(0, 3));
  const cases: [string, string][] = [
    ['{"type":"train",', "line 4 is not JSON"],
    [
      JSON.stringify({ ...RUN[4], layers: "four" }),
      'line 4 is not a run metrics record: layers: expected a non-negative integer (got "four")',
    ],
    [
      '{"type":"restart","node":"x"}',
      'line 4 is not a run metrics record: type: unknown type "restart": expected one of train',
    ],
    [JSON.stringify(FINETUNE[1]), "line 4 is not a run metrics record: node: expected a string"],
  ];
  for (const [line, message] of cases) {
    const r = decodeMetricLines(RunMetricCodec, `${text}${line}\n${text}`, "run/metrics.jsonl");
    assert(E.isLeft(r), line);
    assertEquals(r.left.path, "run/metrics.jsonl");
    assertStringIncludes(r.left.message, message);
    assertEquals(exitCode(r.left), 2);
  }
});

Deno.test("decodeMetricLines() of an empty log is no records", () => {
  assertEquals(decodeMetricLines(RunMetricCodec, "", "m"), E.right([]));
});
