/**
 * The measured peak is read from the engine, so it can disagree with any prediction. These
 * tests give it expectations that do not come from the formula it is compared with: a known
 * extra allocation must show up byte for byte, a doubled micro-batch must raise the peak by
 * what the buffer replay (an independent walk of the step) says the extra activations cost,
 * recomputation must lower it, and the OS's resident high-water must see a large allocation.
 */
import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "./assert.ts";
import { firstStageRoles, type LlamaShape } from "../base/mod.ts";
import {
  type Batch,
  createTrainState,
  disposeState,
  fusedOps,
  initParams,
  measurePeak,
  type StepOptions,
  type TrainState,
  trainStep,
} from "../kernels/mod.ts";
import { backendTest } from "../kernels/_test_util.ts";
import { engineStepMemory } from "../solvers/mod.ts";
import { enginePeakBytes } from "../pipeline/mod.ts";
import { processPeakBytes, resetProcessPeak } from "../effects/process_memory.ts";

const shape: LlamaShape = {
  hidden: 32,
  intermediate: 96,
  heads: 4,
  kvHeads: 2,
  layers: 2,
  vocab: 61,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 32,
};

function batchOf(rows: number): Batch {
  const n = rows * 32;
  return {
    tokens: Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % shape.vocab),
    targets: Int32Array.from({ length: n }, (_, i) => (i * 11 + 5) % shape.vocab),
    batch: rows,
    seq: 32,
  };
}

/** The peak of one step after a warm-up step, with `extra` floats held through the step. */
async function stepPeak(rows: number, options: Partial<StepOptions> = {}, extra = 0) {
  let state: TrainState = createTrainState(shape, initParams(shape, shape.layers, 0));
  const mb = batchOf(rows);
  const hyper: StepOptions = { lr: 1e-3, ...options };
  state = (await trainStep(state, [mb], hyper)).state;
  const { value, peak } = await measurePeak(async () => {
    // Computed, not uploaded: webgpu makes its buffer at once.
    const held = extra > 0 ? tf.tidy(() => tf.mul(tf.ones([extra]), 2)) : undefined;
    const r = await trainStep(state, [mb], hyper);
    held?.dispose();
    return r;
  });
  disposeState(value.state);
  return enginePeakBytes(peak);
}

backendTest("the measured peak sees a known extra allocation byte for byte", async () => {
  const plain = await stepPeak(2);
  const extra = 12_345;
  const withExtra = await stepPeak(2, {}, extra);
  assertEquals(withExtra - plain, 4 * extra);
});

backendTest(
  "doubling the micro-batch raises the measured peak by the activations the replay predicts",
  async () => {
    for (const recompute of ["none", "layers"] as const) {
      const one = await stepPeak(2, { recompute });
      const two = await stepPeak(4, { recompute });
      const replay = (rows: number) =>
        engineStepMemory({
          shape,
          roles: firstStageRoles(shape.layers),
          rank: 0,
          microBatch: rows,
          seqLen: 32,
          accumulation: 1,
          fused: fusedOps(),
          recompute,
        }).peakBytes;
      const predicted = replay(4) - replay(2);
      const measured = two - one;
      assert(predicted > 0.2 * one, `the doubling should matter: ${predicted} of ${one}`);
      assert(
        Math.abs(measured / predicted - 1) < 0.1,
        `${recompute}: measured +${measured} B, replay predicted +${predicted} B`,
      );
    }
  },
);

backendTest("recomputing layers lowers the measured peak of an activation-heavy step", async () => {
  const kept = await stepPeak(8);
  const recomputed = await stepPeak(8, { recompute: "layers" });
  assert(recomputed < 0.9 * kept, `recompute ${recomputed} B vs ${kept} B`);
});

Deno.test("the process's resident high-water sees a large allocation", () => {
  resetProcessPeak();
  const before = processPeakBytes();
  if (before === undefined) {
    console.log("  no /proc/self/status here: the process peak is unknown");
    return;
  }
  const size = 64 * 1024 * 1024;
  const block = new Uint8Array(size);
  block.fill(1); // touch every page so it becomes resident
  const after = processPeakBytes()!;
  assert(after - before >= 0.9 * size, `+${after - before} B for a ${size} B block`);
  assertEquals(block[size - 1], 1);
});
