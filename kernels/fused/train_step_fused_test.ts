import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../../tests/assert.ts";
import type { LlamaShape } from "../../base/llama_shape.ts";
import { openHeapSgemm } from "../blas/mod.ts";
import { startBackend } from "../../effects/tfjs_engine.ts";
import type { Batch } from "../model.ts";
import { initParams } from "../params.ts";
import { createTrainState, disposeState, type TrainState } from "../train_state.ts";
import { trainStep } from "../train_step.ts";
import { assertClose } from "../_test_util.ts";
import { FUSED_REGISTRIES } from "../../solvers/mod.ts";
import { fusedWasmOps } from "./mod.ts";

/** Odd sizes everywhere: head dim 4 with 3 query heads on 1 kv head, f = 21, V = 37, T = 7. */
function shapeOf(tiedEmbeddings: boolean): LlamaShape {
  return {
    hidden: 12,
    intermediate: 21,
    heads: 3,
    kvHeads: 1,
    layers: 2,
    vocab: 37,
    tiedEmbeddings,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxSeqLen: 7,
  };
}

const UNTIED = false;
const FUSED = true;

const batch: Batch = {
  tokens: Int32Array.from([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7]),
  targets: Int32Array.from([1, 4, 1, 5, 9, 2, -1, 5, 3, 5, 8, 9, 7, 36]),
  batch: 2,
  seq: 7,
};

interface Run {
  readonly losses: number[];
  readonly norms: number[];
  readonly params: Map<string, Float32Array>;
}

/** The batch's two sequences as two micro-batches. */
const halves: Batch[] = [0, 1].map((i) => ({
  tokens: batch.tokens.slice(7 * i, 7 * i + 7),
  targets: batch.targets.slice(7 * i, 7 * i + 7),
  batch: 1,
  seq: 7,
}));

async function twoSteps(
  backend: "cpu" | "auto" | "wasm" | "blas",
  shape: LlamaShape,
  microBatches: readonly Batch[] = [batch],
): Promise<Run> {
  const got = await startBackend(backend)();
  if (E.isLeft(got)) throw new Error(got.left.message);
  let state: TrainState = createTrainState(shape, initParams(shape, shape.layers, 5));
  const losses: number[] = [];
  const norms: number[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await trainStep(state, microBatches, { lr: 1e-2 });
    state = r.state;
    losses.push(r.loss);
    norms.push(r.gradNorm);
  }
  const params = new Map<string, Float32Array>();
  for (const [n, t] of state.params) params.set(n, (await t.data()) as Float32Array);
  disposeState(state);
  return { losses, norms, params };
}

for (const tied of [UNTIED, !UNTIED]) {
  Deno.test({
    name: `trainStep() on auto and wasm (fused kernels) and blas agrees with cpu (composite)` +
      (tied ? ", tied embeddings" : ""),
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const shape = shapeOf(tied);
      const reference = await twoSteps("cpu", shape);
      const blas = E.isRight(openHeapSgemm());
      if (!blas) console.log("  blas: skipped (no OpenBLAS)");
      for (const backend of blas ? ["auto", "wasm", "blas"] as const : ["wasm"] as const) {
        const run = await twoSteps(backend, shape);
        if (backend !== "blas") {
          assertEquals(FUSED_REGISTRIES.wasm.every((op) => fusedWasmOps().includes(op)), FUSED);
        }
        for (let i = 0; i < 2; i++) {
          assertClose([run.losses[i]!], [reference.losses[i]!], 1e-5, `${backend} loss ${i}`);
          assertClose([run.norms[i]!], [reference.norms[i]!], 1e-4, `${backend} grad norm ${i}`);
        }
        for (const [name, want] of reference.params) {
          assertClose(run.params.get(name)!, want, 1e-5, `${backend} ${name}`);
        }
      }
    },
  });
}

Deno.test({
  name: "trainStep() on auto over two micro-batches (gradient sums inside the products) " +
    "agrees with cpu over their union",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    if (E.isLeft(openHeapSgemm())) {
      await t.step({ name: "needs OpenBLAS", ignore: true, fn: () => {} });
      return;
    }
    const shape = shapeOf(UNTIED);
    const reference = await twoSteps("cpu", shape);
    const run = await twoSteps("auto", shape, halves);
    assert(fusedWasmOps().includes("productSums"), "auto adds products into gradient sums");
    for (let i = 0; i < 2; i++) {
      assertClose([run.losses[i]!], [reference.losses[i]!], 1e-5, `loss ${i}`);
      assertClose([run.norms[i]!], [reference.norms[i]!], 1e-4, `grad norm ${i}`);
    }
    for (const [name, want] of reference.params) {
      assertClose(run.params.get(name)!, want, 1e-5, name);
    }
  },
});

Deno.test({
  name: "trainStep() on auto leaks no tensor and no wasm buffer once warmed up",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const got = await startBackend("auto")();
    if (E.isLeft(got)) throw new Error(got.left.message);
    const shape = shapeOf(UNTIED);
    let state = createTrainState(shape, initParams(shape, shape.layers, 6));
    state = (await trainStep(state, [batch], { lr: 1e-3 })).state;
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    for (let i = 0; i < 2; i++) state = (await trainStep(state, [batch], { lr: 1e-3 })).state;
    assertEquals(tf.memory().numTensors, tensors, "tensors after two more steps");
    assertEquals(tf.engine().backend.numDataIds(), buffers, "wasm buffers after two more steps");
    disposeState(state);
  },
});
