/**
 * trackGpuPeak() on the webgpu backend (Mesa's software adapter where no GPU
 * exists; skipped with a message without any adapter): the high-water mark
 * it reads from tfjs's buffer manager sees a known extra allocation, holds at
 * least the model state of a training step, and is lower with the fused
 * kernels, which never store attention's probabilities.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../../tests/assert.ts";
import { initBackend, webGpuUnavailable } from "../backend.ts";
import { initParams } from "../params.ts";
import { createTrainState, disposeState, type TrainState } from "../train_state.ts";
import { trainStep } from "../train_step.ts";
import { trackGpuPeak } from "./gpu_peak.ts";
import { registerWebGpuKernels, unregisterWebGpuKernels } from "./mod.ts";

const why = await webGpuUnavailable();
if (why !== undefined) console.log(`skipping the GPU peak tests: ${why}`);

const SHAPE = {
  hidden: 64,
  intermediate: 192,
  heads: 2,
  kvHeads: 2,
  layers: 2,
  vocab: 96,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 64,
};

function batch(seq: number, rows: number) {
  const tokens = Int32Array.from({ length: rows * seq }, (_, i) => (i * 7 + 3) % SHAPE.vocab);
  const targets = Int32Array.from({ length: rows * seq }, (_, i) => (i * 7 + 10) % SHAPE.vocab);
  return { tokens, targets, batch: rows, seq };
}

/** The GPU peak of one training step after a warm-up step, and the step's model state. */
async function stepPeak(seq: number): Promise<{ peak: number; modelState: number }> {
  let state: TrainState = createTrainState(SHAPE, initParams(SHAPE, SHAPE.layers, 0));
  const mb = batch(seq, 2);
  state = (await trainStep(state, [mb], { lr: 1e-4 })).state;
  const tracker = trackGpuPeak();
  const r = await trainStep(state, [mb], { lr: 1e-4 });
  tracker.stop();
  disposeState(r.state);
  return { peak: tracker.peak(), modelState: r.accounted.modelState };
}

Deno.test({
  name: "trackGpuPeak() sees an allocation made while it runs, byte for byte",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    assert(E.isRight(await initBackend("webgpu")));
    const x = tf.ones([1024, 256]);
    await tf.mul(x, 1).data(); // x now lives on the GPU
    const tracker = trackGpuPeak();
    const before = tracker.peak();
    const y = tf.mul(x, 2); // a fresh 1 MiB output buffer
    await y.data();
    tracker.stop();
    tf.dispose([x, y]);
    assert(tracker.peak() - before >= 1024 * 256 * 4, `peak rose ${tracker.peak() - before} B`);
  },
});

Deno.test({
  name: "trackGpuPeak() holds a training step's model state, and the fused kernels lower it",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    assert(E.isRight(await initBackend("webgpu")));
    try {
      registerWebGpuKernels();
      const fused = await stepPeak(64);
      unregisterWebGpuKernels();
      const composite = await stepPeak(64);
      for (const m of [fused, composite]) {
        assert(m.peak >= m.modelState, `GPU peak ${m.peak} < model state ${m.modelState}`);
      }
      assertEquals(fused.modelState, composite.modelState);
      assert(fused.peak < composite.peak, `fused ${fused.peak} vs composite ${composite.peak}`);
    } finally {
      registerWebGpuKernels();
    }
  },
});
