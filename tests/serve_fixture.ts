/**
 * Run directories and a comparison folder written by hand for the dashboard's tests: the
 * records are what `deno task run` writes (each is decoded with the log's codec before it is
 * written, so a fixture that drifts from the format fails here), at a size that takes no
 * training.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type RunMetricBody, RunMetricCodec } from "../pipeline/mod.ts";
import { decodeWith } from "../base/mod.ts";

/** A two-stage STEP graph: train 3 layers, grow 1, ReLoRA on the frozen 3, continue. */
export function graphYaml(name: string): string {
  return `version: 1
name: ${name}
model: { hidden: 32, intermediate: 64, heads: 2, layers: 4, vocab: 257, maxSeqLen: 32 }
training: { seqLen: 32, batchTokens: 256, microBatch: 8, lr: 0.003, warmup: 2, steps: 30, evalEvery: 10 }
data: { source: builtin }
nodes:
  - { op: train, id: s1.train, layers: 3, steps: 20 }
  - { op: grow, id: s2.grow, add: 1 }
  - { op: attachPET, id: s2.pet, kind: relora, rank: 4, alpha: 8, resetEvery: 5, restartWarmup: 1 }
  - { op: continue, id: s2.continue, steps: 10 }
`;
}

const BATCH = 256;

const ACCOUNTED = {
  trainableWeights: 100_000,
  gradients: 100_000,
  optimizer: 200_000,
  frozen: 0,
  adapters: 0,
  total: 400_000,
};

/** One `train` record of global step `step` (stage 1 up to step 20, then stage 2). */
export function trainLine(step: number, loss: number): string {
  return trainRecord(step, loss, {});
}

/** A skipped step: its loss was not finite (`null` on disk), the weights were left as they were. */
export function skippedTrainLine(step: number): string {
  return trainRecord(step, null, { skipped: true });
}

function trainRecord(step: number, loss: number | null, extra: { skipped?: true }): string {
  const stage = step <= 20 ? 1 : 2;
  return line({
    type: "train",
    node: stage === 1 ? "s1.train" : "s2.continue",
    stage,
    step: stage === 1 ? step : step - 20,
    loss,
    lr: 0.003,
    gradNorm: 1,
    tokens: step * BATCH,
    memoryBytes: 400_000,
    globalStep: step,
    ...extra,
  });
}

function stageLine(stage: number, globalStep: number): string {
  return line({
    type: "stage",
    stage,
    node: stage === 1 ? "s1.train" : "s2.continue",
    layers: stage === 1 ? 3 : 4,
    trainableParams: 25_000,
    frozenParams: stage === 1 ? 0 : 25_000,
    adapterParams: stage === 1 ? 0 : 3_000,
    steps: stage === 1 ? 20 : 10,
    valLoss: 3 - stage * 0.5,
    merges: stage === 1 ? 0 : 1,
    accountedStateBytes: 400_000,
    accountedState: ACCOUNTED,
    measuredPeakBytes: 2_000_000,
    bufferPeakBytes: 2_000_000,
    tensorCountPeakBytes: 2_500_000,
    heapBytes: null,
    gpuPeakBytes: null,
    processPeakBytes: null,
    predictedStateBytes: 400_000,
    predictedPeakBytes: 1_990_000,
    predictedPeakAt: "backward head cross-entropy",
    wallSeconds: 2,
    globalStep,
  });
}

function line(record: RunMetricBody & { globalStep: number }): string {
  const decoded = decodeWith(RunMetricCodec, record);
  if (E.isLeft(decoded)) throw new Error(`fixture record is not a run record: ${decoded.left}`);
  return `${JSON.stringify(record)}\n`;
}

/**
 * The log of a whole run of the graph: every step (step 7 skipped, its loss not finite),
 * evaluations, the growth, a ReLoRA merge, both stages' records.
 */
export function finishedLog(): string {
  let text = "";
  for (let s = 1; s <= 30; s++) {
    text += s === 7 ? skippedTrainLine(s) : trainLine(s, 5 - s * 0.1);
    if (s % 10 === 0) {
      text += line({
        type: "eval",
        node: s <= 20 ? "s1.train" : "s2.continue",
        valLoss: 5 - s * 0.1,
        perplexity: Math.exp(5 - s * 0.1),
        globalStep: s,
      });
    }
    if (s === 20) {
      text += stageLine(1, 20);
      text += line({ type: "grow", node: "s2.grow", add: 1, layers: 4, globalStep: 20 });
    }
    if (s === 25) {
      text += line({
        type: "merge",
        node: "s2.continue",
        step: 5,
        merged: 14,
        prunedFraction: 0.99,
        globalStep: 25,
      });
    }
  }
  return text + stageLine(2, 30);
}

/** Writes a finished run (log, graph, report, evaluation) into `dir`. */
export async function writeFinishedRun(dir: string, name = "finished"): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/metrics.jsonl`, finishedLog());
  await Deno.writeTextFile(`${dir}/pipeline.yaml`, graphYaml(name));
  await Deno.writeTextFile(
    `${dir}/report.json`,
    JSON.stringify({
      name,
      finalValLoss: 2,
      mergedValLoss: 2,
      globalSteps: 30,
      tokens: 30 * BATCH,
    }),
  );
  await Deno.writeTextFile(
    `${dir}/eval.json`,
    JSON.stringify({
      tasks: {
        piqa: { acc: 0.6, acc_norm: 0.5, n: 10 },
        wikitext: { token_perplexity: 20, n: 10 },
      },
    }),
  );
}

/** Writes a run in its first stage (12 steps logged, no graph yet, no report) into `dir`. */
export async function writeRunningRun(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  let text = "";
  for (let s = 1; s <= 12; s++) text += trainLine(s, 5 - s * 0.1);
  await Deno.writeTextFile(`${dir}/metrics.jsonl`, text);
}

/** The methods of the fixture comparison. */
export const METHODS = ["standard", "relora", "galore", "step-2", "step-3"] as const;

/** A finished comparison of every method (one seed) in `dir`. */
export async function writeComparison(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/graphs`, { recursive: true });
  const rows = [];
  for (const [i, method] of METHODS.entries()) {
    const run = `${method}-s0`;
    await Deno.writeTextFile(`${dir}/graphs/${run}.yaml`, graphYaml(run));
    await Deno.mkdir(`${dir}/runs/${run}`, { recursive: true });
    let text = "";
    for (let s = 10; s <= 30; s += 10) {
      const loss = 4 - s * 0.05 - i * 0.1;
      text += line({
        type: "eval",
        node: s <= 20 ? "s1.train" : "s2.continue",
        valLoss: loss,
        perplexity: Math.exp(loss),
        globalStep: s,
      });
    }
    await Deno.writeTextFile(`${dir}/runs/${run}/metrics.jsonl`, text);
    await Deno.writeTextFile(
      `${dir}/runs/${run}/report.json`,
      JSON.stringify({ finalValLoss: 2.5 - i * 0.1 }),
    );
    await Deno.writeTextFile(
      `${dir}/runs/${run}/eval.json`,
      JSON.stringify({ tasks: { piqa: { acc: 0.5 + i * 0.02 }, hellaswag: { acc: 0.25 } } }),
    );
    rows.push({
      method,
      seed: 0,
      flops: 1e10,
      flopsPaper: 1e10,
      flopsExecuted: 1.3e10,
      tokens: 7680,
      steps: 30,
      wallSeconds: 3,
      accountedStateBytes: 400_000 - i * 20_000,
      measuredPeakBytes: 2_000_000 - i * 100_000,
      predictedPeakBytes: 1_990_000 - i * 100_000,
      plannerPeakBytes: 1_980_000 - i * 100_000,
      processPeakBytes: null,
      valLoss: 2.5 - i * 0.1,
      valPerplexity: Math.exp(2.5 - i * 0.1),
      zeroShot: { piqa: 0.5 + i * 0.02, hellaswag: 0.25 },
    });
  }
  await Deno.writeTextFile(
    `${dir}/report.json`,
    JSON.stringify({
      config: "fixture",
      accounting: "paper",
      flops: 1e10,
      backend: "cpu",
      machine: "test",
      runs: rows,
    }),
  );
  await Deno.writeTextFile(`${dir}/report.md`, "| method |\n|---|\n");
}
