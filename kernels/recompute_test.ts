import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertAlmostEquals, assertEquals } from "../tests/assert.ts";
import {
  adaptedWeights,
  grownStageRoles,
  grownTrainable,
  type LlamaShape,
  PROJECTIONS,
  stageTrainable,
} from "../base/mod.ts";
import type { Batch } from "./model.ts";
import { lossSum } from "./model.ts";
import { initParams } from "./params.ts";
import { type GradientSums, recomputedMicroBatch } from "./recompute.ts";
import { createTrainState, disposeState, loadTrainState, type TrainState } from "./train_state.ts";
import {
  attachedSnapshot,
  type EngineSnapshot,
  grownSnapshot,
  initialSnapshot,
} from "../checkpoint/mod.ts";
import { trainStep } from "./train_step.ts";
import { assertClose, backendTest } from "./_test_util.ts";

const shape: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 4,
  vocab: 13,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 8,
};

const batches: Batch[] = [
  {
    tokens: Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    targets: Int32Array.from([2, 3, 4, 5, 6, 7, 8, 9, -1, 11, 12, 0]),
    batch: 2,
    seq: 6,
  },
  {
    tokens: Int32Array.from([5, 0, 12, 3, 3, 9]),
    targets: Int32Array.from([0, 12, 3, 3, 9, 1]),
    batch: 1,
    seq: 6,
  },
];

/** Stage 2 of STEP: 2 trained layers grown to 4, the old ones frozen with adapters. */
function stageTwo(tied: boolean): TrainState {
  const s = { ...shape, tiedEmbeddings: tied };
  const roles = grownStageRoles(2, 2, 2, {
    placement: "upper",
    seed: 0,
    targets: PROJECTIONS,
    trainEmbeddings: false,
  });
  const grown = grownSnapshot(initialSnapshot(s, 2, 3), {
    add: 2,
    placement: "upper",
    seed: 0,
    trainable: grownTrainable(roles),
  });
  const attached = E.flatMap((g: EngineSnapshot) =>
    attachedSnapshot(g, {
      rank: 2,
      alpha: 4,
      seed: 5,
      adapted: adaptedWeights(roles),
      trainable: stageTrainable(roles, s),
    })
  )(grown);
  if (E.isLeft(attached)) throw new Error(attached.left);
  const adapted = loadTrainState(s, attached.right);
  // Non-zero B so that the adapters' branch carries a gradient to A and to the input.
  const params = new Map(adapted.params);
  for (const [n, t] of adapted.params) {
    if (n.endsWith("lora_B")) params.set(n, tf.randomNormal(t.shape, 0, 0.1, "float32", 7));
  }
  for (const [n, t] of adapted.params) if (params.get(n) !== t) t.dispose();
  return { ...adapted, params };
}

/** Σ over micro-batches of each trainable weight's gradient, by plain autodiff of the loss. */
async function referenceGradients(
  state: TrainState,
  mbs: readonly Batch[],
): Promise<Map<string, Float32Array>> {
  const names = [...state.trainable];
  const out = new Map<string, Float32Array>();
  for (const mb of mbs) {
    const grads = tf.grads((...xs: tf.Tensor[]) => {
      const params = new Map(state.params);
      names.forEach((n, i) => params.set(n, xs[i]!));
      return lossSum({ ...state, params }, mb);
    })(names.map((n) => state.params.get(n)!));
    for (const [i, n] of names.entries()) {
      const g = (await grads[i]!.data()) as Float32Array;
      const prev = out.get(n);
      out.set(n, prev === undefined ? Float32Array.from(g) : prev.map((v, j) => v + g[j]!));
    }
    tf.dispose(grads);
  }
  return out;
}

async function recomputedGradients(
  state: TrainState,
  mbs: readonly Batch[],
  chunk?: number,
): Promise<{ grads: Map<string, Float32Array>; loss: number }> {
  const sums: GradientSums = new Map();
  let loss = 0;
  for (const mb of mbs) {
    const value = recomputedMicroBatch(state, mb, {
      scale: 1,
      sums,
      loss: {
        headTrains: state.trainable.has(
          state.shape.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight",
        ),
        ...(chunk === undefined ? {} : { chunk }),
      },
    });
    loss += (await value.data())[0]!;
    value.dispose();
  }
  const grads = new Map<string, Float32Array>();
  for (const [n, g] of sums) grads.set(n, (await g.data()) as Float32Array);
  tf.dispose([...sums.values()]);
  return { grads, loss };
}

for (
  const [label, make] of [
    ["stage 1 (every weight trains)", (tied: boolean) =>
      createTrainState(
        { ...shape, tiedEmbeddings: tied },
        initParams({ ...shape, tiedEmbeddings: tied }, 4, 2),
      )],
    ["stage 2 (frozen layers with adapters)", stageTwo],
  ] as const
) {
  backendTest(
    `recomputed gradients equal autodiff's over two micro-batches: ${label}`,
    async () => {
      for (const tied of [false, true]) {
        const state = make(tied);
        const expected = await referenceGradients(state, batches);
        let expectedLoss = 0;
        for (const mb of batches) {
          const l = lossSum(state, mb);
          expectedLoss += (await l.data())[0]!;
          l.dispose();
        }
        const before = tf.memory().numTensors;
        for (const chunk of [undefined, 5]) {
          const got = await recomputedGradients(state, batches, chunk);
          assertEquals(tf.memory().numTensors, before, "recomputation leaked tensors");
          assertAlmostEquals(got.loss, expectedLoss, 1e-4 * Math.abs(expectedLoss));
          assertEquals([...got.grads.keys()].sort(), [...expected.keys()].sort());
          for (const [n, g] of expected) {
            assertClose(got.grads.get(n)!, g, 1e-4, `${n} (tied ${tied}, chunk ${chunk})`);
          }
        }
        disposeState(state);
      }
    },
  );
}

backendTest("a recomputed step updates the weights as the taped step does", async () => {
  const a = createTrainState(shape, initParams(shape, 4, 9));
  const b = createTrainState(shape, initParams(shape, 4, 9));
  const hyper = { lr: 1e-2, eps: 1e-3 };
  const ra = await trainStep(a, batches, hyper);
  const before = tf.memory().numTensors;
  const rb = await trainStep(b, batches, { ...hyper, recompute: "layers" });
  assertEquals(tf.memory().numTensors, before, "the recomputed step leaked tensors");
  assertAlmostEquals(rb.loss, ra.loss, 1e-5);
  assertAlmostEquals(rb.gradNorm, ra.gradNorm, 1e-4 * ra.gradNorm);
  for (const [n, t] of ra.state.params) {
    assertClose(
      (await rb.state.params.get(n)!.data()) as Float32Array,
      (await t.data()) as Float32Array,
      1e-4,
      n,
    );
  }
  assert(ra.state.adam.step === 1 && rb.state.adam.step === 1);
  disposeState(ra.state);
  disposeState(rb.state);
});
