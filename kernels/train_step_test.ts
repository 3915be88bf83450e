import * as tf from "@tensorflow/tfjs-core";
import { assert, assertAlmostEquals, assertEquals } from "../tests/assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { bytesPerParam, trainedBytes } from "../solvers/memory_model.ts";
import { accountedBytes } from "./accounted_bytes.ts";
import type { Batch } from "./model.ts";
import { initParams, type Params } from "./params.ts";
import { createTrainState, disposeState, type TrainState } from "./train_state.ts";
import { evalLoss, trainStep } from "./train_step.ts";
import { normalSamples } from "../base/mod.ts";
import { assertClose, backendTest } from "./_test_util.ts";
import { layerOfName, loraNames, paramShapes, projectionWeight } from "../base/param_names.ts";

const shape: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 3,
  vocab: 13,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 8,
};

function seqs(rows: number[][], targets: number[][]): Batch {
  return {
    tokens: Int32Array.from(rows.flat()),
    targets: Int32Array.from(targets.flat()),
    batch: rows.length,
    seq: rows[0]!.length,
  };
}

const rowsA = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]];
const targetsA = [[2, 3, 4, 5, 6, 7], [8, 9, -1, -1, 12, 0]];
const both = seqs(rowsA, targetsA);
const first = seqs([rowsA[0]!], [targetsA[0]!]);
const second = seqs([rowsA[1]!], [targetsA[1]!]);

async function values(params: Params): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of params) out.set(n, (await t.data()) as Float32Array);
  return out;
}

backendTest("trainStep() over two micro-batches equals one step over their union", async () => {
  let a = createTrainState(shape, initParams(shape, 2, 1));
  let b = createTrainState(shape, initParams(shape, 2, 1));
  // Adam's first update is lr·g/(|g| + eps): near |g| ≈ eps it amplifies the float32 rounding
  // of g (which differs between split and whole batches, most on webgpu's parallel reductions)
  // by up to lr/(4·eps) — 3e-6 at eps = 1e-8. A larger eps keeps the update well conditioned;
  // the comparison still checks that accumulation reproduces the whole batch.
  const hyper = { lr: 1e-2, eps: 1e-3 };
  const ra = await trainStep(a, [first, second], hyper);
  const rb = await trainStep(b, [both], hyper);
  a = ra.state;
  b = rb.state;
  assertAlmostEquals(ra.loss, rb.loss, 1e-5);
  assertAlmostEquals(ra.gradNorm, rb.gradNorm, 1e-4 * rb.gradNorm);
  assertEquals(ra.tokens, 10);
  const va = await values(a.params);
  for (const [name, vb] of await values(b.params)) assertClose(va.get(name)!, vb, 1e-5, name);
  assertEquals(a.adam.step, 1);
  disposeState(a);
  disposeState(b);
});

/** Layer 1 trains; layer 0, embeddings and head are frozen, with LoRA on layer 0's q and v. */
function stagedState(): TrainState {
  const params = new Map(initParams(shape, 2, 3));
  const adapters: string[] = [];
  for (const p of ["q", "v"] as const) {
    const name = projectionWeight(0, p);
    const [din, dout] = params.get(name)!.shape as [number, number];
    const ln = loraNames(name);
    params.set(
      ln.a,
      tf.tensor(normalSamples(din * 4, { seed: 3, name: ln.a, std: 0.1 }), [din, 4]),
    );
    params.set(ln.b, tf.zeros([4, dout]));
    adapters.push(ln.a, ln.b);
  }
  const trainable = [...params.keys()].filter((n) => layerOfName(n) === 1).concat(adapters);
  return createTrainState(shape, params, { trainable, loraScale: 2 });
}

backendTest(
  "trainStep() leaves frozen weights untouched, without gradients or optimizer state",
  async () => {
    const s0 = stagedState();
    const frozen = [...s0.params.keys()].filter((n) => !s0.trainable.has(n));
    const frozenBefore = await values(new Map(frozen.map((n) => [n, s0.params.get(n)!])));
    const aBefore = (await s0.params.get("model.layers.0.self_attn.q_proj.lora_A")!.data()).slice();
    const { state, accounted } = await trainStep(s0, [both], { lr: 1e-2 });
    for (const n of frozen) {
      assertEquals(state.params.get(n), s0.params.get(n), `${n} is the same tensor`);
      assertEquals(await state.params.get(n)!.data(), frozenBefore.get(n), `${n} unchanged`);
    }
    assertEquals(new Set(state.adam.m.keys()), s0.trainable);
    assertEquals(new Set(state.adam.v.keys()), s0.trainable);
    // B starts at 0, so A's first gradient is 0 and only decay moves it; B moves by Adam's first step.
    const bAfter = await state.params.get("model.layers.0.self_attn.q_proj.lora_B")!.data();
    assert(bAfter.some((x) => Math.abs(x) > 5e-3), "lora_B moved");
    const aAfter = await state.params.get("model.layers.0.self_attn.q_proj.lora_A")!.data();
    assertClose(aAfter, aBefore.map((x) => x * (1 - 1e-2 * 0.1)), 1e-6, "lora_A only decayed");

    const count = (names: Iterable<string>): number =>
      [...names].reduce((s, n) => s + state.params.get(n)!.size, 0);
    const adapterCount = count([...s0.trainable].filter((n) => n.includes(".lora_")));
    const trainableCount = count(s0.trainable);
    const frozenCount = count(frozen);
    assertEquals(accounted.adapters, 4 * adapterCount);
    assertEquals(accounted.trainable, 4 * (trainableCount - adapterCount));
    assertEquals(accounted.frozen, 4 * frozenCount);
    assertEquals(accounted.gradients, 4 * trainableCount);
    assertEquals(accounted.optimizer, 8 * trainableCount);
    // The planner's fp32 prediction, exactly.
    const predicted = trainedBytes("fp32") * trainableCount +
      bytesPerParam("fp32").weight * frozenCount;
    assertEquals(accounted.modelState, predicted);
    assert(
      accounted.engineTotal >= accounted.modelState,
      "the engine holds at least the model state",
    );

    const between = accountedBytes(state);
    assertEquals(between.gradients, 0);
    assertEquals(between.modelState, predicted - 4 * trainableCount);
    disposeState(state);
  },
);

backendTest("trainStep() leaks no tensor once warmed up", async () => {
  let state = stagedState();
  state = (await trainStep(state, [first, second], { lr: 1e-3 })).state;
  const before = tf.memory().numTensors;
  state = (await trainStep(state, [first, second], { lr: 1e-3 })).state;
  assertEquals(tf.memory().numTensors, before);
  disposeState(state);
  assertEquals(tf.memory().numTensors, before - 2 * state.trainable.size - state.params.size);
});

backendTest("trainStep() clips by global norm before the moments", async () => {
  const free = await trainStep(createTrainState(shape, initParams(shape, 1, 5)), [both], {
    lr: 1e-3,
    clip: Infinity,
  });
  const bound = free.gradNorm / 4;
  const clipped = await trainStep(createTrainState(shape, initParams(shape, 1, 5)), [both], {
    lr: 1e-3,
    clip: bound,
  });
  assertAlmostEquals(clipped.gradNorm, free.gradNorm, 1e-6 * free.gradNorm);
  const name = projectionWeight(0, "up");
  const mFree = await free.state.adam.m.get(name)!.data();
  const mClipped = await clipped.state.adam.m.get(name)!.data();
  const factor = bound / (free.gradNorm + 1e-6);
  assertClose(mClipped, mFree.map((x) => x * factor), 1e-5, "m scaled by the clip factor");
  disposeState(free.state);
  disposeState(clipped.state);
});

backendTest(
  "trainStep() lowers the loss on a repeated batch and evalLoss() agrees with it",
  async () => {
    let state = createTrainState(shape, initParams(shape, 2, 9));
    const initial = await evalLoss(state, [first, second]);
    const r0 = await trainStep(state, [both], { lr: 2e-2 });
    assertAlmostEquals(r0.loss, initial, 1e-5);
    assertAlmostEquals(initial, Math.log(13), 0.05); // 0.02-std weights give near-uniform logits
    state = r0.state;
    let last = r0.loss;
    for (let i = 0; i < 15; i++) {
      const r = await trainStep(state, [both], { lr: 2e-2 });
      state = r.state;
      last = r.loss;
    }
    assert(last < initial / 2, `loss ${last} did not halve from ${initial}`);
    disposeState(state);
  },
);

backendTest(
  "trainStep() with every weight frozen reports the loss and changes nothing",
  async () => {
    const s0 = createTrainState(shape, initParams(shape, 1, 4), { trainable: [] });
    const expected = await evalLoss(s0, [both]);
    const { state, loss, gradNorm, accounted } = await trainStep(s0, [both], { lr: 1 });
    assertAlmostEquals(loss, expected, 1e-6);
    assertEquals(gradNorm, 0);
    assertEquals(accounted.gradients + accounted.optimizer + accounted.trainable, 0);
    assertEquals(state.params, s0.params);
    disposeState(state);
  },
);

backendTest("trainStep() computes no gradient for a frozen weight", async () => {
  const matmuls = async (trainable: string[] | undefined): Promise<number> => {
    const s0 = createTrainState(shape, initParams(shape, 2, 6), trainable ? { trainable } : {});
    let s1 = s0;
    const info = await tf.profile(async () => {
      s1 = (await trainStep(s0, [both], { lr: 1e-3 })).state;
    });
    disposeState(s1);
    return info.kernels.filter((k) => k.name === "BatchMatMul").length;
  };
  const all = await matmuls(undefined);
  const names = paramShapes(shape, 2).map(([n]) => n);
  const q0 = projectionWeight(0, "q");
  assertEquals(await matmuls(names.filter((n) => n !== q0)), all - 1);
});

backendTest(
  "trainStep() skips the update when the gradient norm overflows though the loss is finite",
  async () => {
    // An LM head of ~1e18 keeps the loss finite (~1e19) while the squared gradient norm
    // overflows float32: a non-finite gradient, not a non-finite loss.
    const params = new Map(initParams(shape, 2, 4));
    const head = params.get("lm_head.weight")!;
    params.set("lm_head.weight", tf.mul(head, 1e20));
    head.dispose();
    const s = createTrainState(shape, params);
    const before = await Promise.all([...s.params.values()].map((t) => t.data()));
    const moments = await Promise.all([...s.adam.m.values()].map((t) => t.data()));
    const tensors = tf.memory().numTensors;
    const r = await trainStep(s, [both], { lr: 1e-2 });
    assert(r.skipped, `gradient norm ${r.gradNorm}, loss ${r.loss}`);
    assert(Number.isFinite(r.loss) && !Number.isFinite(r.gradNorm));
    assertEquals(r.state, s);
    assertEquals(r.state.adam.step, 0);
    assertEquals(await Promise.all([...r.state.params.values()].map((t) => t.data())), before);
    assertEquals(await Promise.all([...r.state.adam.m.values()].map((t) => t.data())), moments);
    assertEquals(tf.memory().numTensors, tensors);
    disposeState(r.state);
  },
);
