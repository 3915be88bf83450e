import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { PROJECTIONS } from "../base/llama_shape.ts";
import { accountedBytes } from "./accounted_bytes.ts";
import { forwardLogits } from "./model.ts";
import { pruneByMagnitude, reloraReset } from "./relora.ts";
import { disposeState, loadTrainState, snapshotState, type TrainState } from "./train_state.ts";
import { trainStep } from "./train_step.ts";
import { backendTest, maxAbsDiff } from "./_test_util.ts";
import { EMBED, isAdapterName, projectionWeight } from "../base/param_names.ts";
import {
  adaptedWeights,
  grownStageRoles,
  grownTrainable,
  stageTrainable,
} from "../base/stage_roles.ts";
import {
  attachedSnapshot,
  type EngineSnapshot,
  grownSnapshot,
  initialSnapshot,
  mergedSnapshot,
} from "../checkpoint/mod.ts";

const SHAPE: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 2,
  kvHeads: 2,
  layers: 4,
  vocab: 17,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};
const BATCH = {
  tokens: Int32Array.from({ length: 12 }, (_, i) => (i * 5) % 17),
  targets: Int32Array.from({ length: 12 }, (_, i) => (i * 5 + 3) % 17),
  batch: 2,
  seq: 6,
};
// Growing 2 layers by 2 (upper) gives [old 0, new, old 1, new]: adapters go on layers 0 and 2.
const ROLES = grownStageRoles(2, 2, 2, {
  placement: "upper",
  seed: 0,
  targets: PROJECTIONS,
  trainEmbeddings: false,
});
const GROW = { add: 2, placement: "upper", seed: 0, trainable: grownTrainable(ROLES) } as const;
const ATTACH = {
  rank: 4,
  alpha: 8,
  seed: 3,
  adapted: adaptedWeights(ROLES),
  trainable: stageTrainable(ROLES, SHAPE),
};

async function logits(state: TrainState): Promise<Float32Array> {
  const t = forwardLogits(state, BATCH);
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

function right(e: E.Either<string, EngineSnapshot>): EngineSnapshot {
  if (E.isLeft(e)) throw new Error(e.left);
  return e.right;
}

const GROWN = right(grownSnapshot(initialSnapshot(SHAPE, 2, 5), GROW));

async function trainedAdapted(): Promise<TrainState> {
  let s = loadTrainState(SHAPE, right(attachedSnapshot(GROWN, ATTACH)));
  for (let i = 0; i < 3; i++) s = (await trainStep(s, [BATCH], { lr: 1e-2 })).state;
  return s;
}

backendTest(
  "attached adapters leave the output unchanged and train only new layers and adapters",
  async () => {
    const grown = loadTrainState(SHAPE, GROWN);
    const before = await logits(grown);
    disposeState(grown);
    const s = loadTrainState(SHAPE, right(attachedSnapshot(GROWN, ATTACH)));
    assertEquals(await logits(s), before);
    // Growing 2 layers by 2 (upper) gives [old 0, new, old 1, new]: adapters go on layers 0 and 2.
    const adapted = [...s.params.keys()].filter((n) => n.endsWith(".lora_A"));
    assertEquals(adapted.length, 2 * PROJECTIONS.length);
    assert(
      adapted.every((n) => n.startsWith("model.layers.0.") || n.startsWith("model.layers.2.")),
    );
    for (const n of adapted) {
      const a = (await s.params.get(n)!.data()) as Float32Array;
      const bound = 1 / Math.sqrt(s.params.get(n)!.shape[0]!);
      assert(
        a.every((x) => Math.abs(x) <= bound) && a.some((x) => x !== 0),
        `${n} is Kaiming-uniform`,
      );
      const b = (await s.params.get(n.replace("lora_A", "lora_B"))!.data()) as Float32Array;
      assert(b.every((x) => x === 0), `${n} B starts at zero`);
    }
    assert(!s.trainable.has(EMBED) && !s.trainable.has(projectionWeight(0, "q")));
    assert(
      s.trainable.has(projectionWeight(1, "q")) && s.trainable.has(projectionWeight(3, "down")),
    );
    // Frozen weights hold no optimizer state and get no gradient.
    assertEquals([...s.adam.m.keys()].sort(), [...s.trainable].sort());
    const { accounted, state } = await trainStep(s, [BATCH], { lr: 1e-2 });
    const m = accountedBytes(state);
    let frozen = 0, trainable = 0, adapters = 0;
    for (const [n, t] of state.params) {
      if (isAdapterName(n)) adapters += t.size;
      else if (state.trainable.has(n)) trainable += t.size;
      else frozen += t.size;
    }
    assertEquals(m.frozen, 4 * frozen);
    assertEquals(m.optimizer, 8 * (trainable + adapters));
    assertEquals(accounted.gradients, 4 * (trainable + adapters));
    assertEquals(accounted.modelState, 16 * (trainable + adapters) + 4 * frozen);
    disposeState(state);
  },
);

backendTest(
  "reloraReset() merges before re-initialising, so the function is kept, and prunes moments",
  async () => {
    const s = await trainedAdapted();
    const before = await logits(s);
    const aBefore = (await s.params.get("model.layers.0.self_attn.q_proj.lora_A")!.data()).slice();
    const r = await reloraReset(s, { pruneRatio: 0.99, seed: 11 });
    const after = await logits(r.state);
    assert(maxAbsDiff(after, before) <= 1e-4, `logits moved by ${maxAbsDiff(after, before)}`);
    assertEquals(r.merged, 2 * PROJECTIONS.length);
    const aAfter = await r.state.params.get("model.layers.0.self_attn.q_proj.lora_A")!.data();
    assert(aAfter.some((x, i) => x !== aBefore[i]), "A is re-initialised");
    const b = await r.state.params.get("model.layers.0.self_attn.q_proj.lora_B")!.data();
    assert(b.every((x) => x === 0));
    assert(r.prunedFraction > 0.98 && r.prunedFraction < 1, `pruned ${r.prunedFraction}`);
    for (const [n, m] of r.state.adam.m) {
      if (!isAdapterName(n)) continue;
      const v = await m.data();
      const nonzero = v.filter((x) => x !== 0).length;
      assert(
        nonzero <= Math.ceil(0.01 * v.length) + 1,
        `${n}: ${nonzero} of ${v.length} moments kept`,
      );
    }
    disposeState(r.state);
  },
);

backendTest("the merged snapshot, loaded, is a plain model with the same logits", async () => {
  const s = await trainedAdapted();
  const before = await logits(s);
  const snap = await snapshotState(s);
  disposeState(s);
  const merged = loadTrainState(SHAPE, mergedSnapshot(snap));
  assert([...merged.params.keys()].every((n) => !isAdapterName(n)));
  const after = await logits(merged);
  assert(maxAbsDiff(after, before) <= 1e-4, `logits moved by ${maxAbsDiff(after, before)}`);
  disposeState(merged);
});

backendTest(
  "pruneByMagnitude() keeps the entries largest in the key, in every tensor, and leaks nothing",
  async () => {
    const m = tf.tensor1d([0.5, -4, 0.1, 3, -0.2, 2, 0, 1, -1, 0.3]);
    const v = tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const before = tf.memory().numTensors;
    const { pruned: [pm, pv], zeros } = await pruneByMagnitude(m, 0.7, [m, v]);
    assertEquals(Array.from(await pm!.data()), [0, -4, 0, 3, 0, 2, 0, 0, 0, 0]);
    assertEquals(Array.from(await pv!.data()), [0, 2, 0, 4, 0, 6, 0, 0, 0, 0]);
    assertEquals(zeros, 7);
    pm!.dispose();
    pv!.dispose();
    assertEquals(tf.memory().numTensors, before);
    m.dispose();
    v.dispose();
  },
);

backendTest("a ReLoRA training cycle leaks no tensors", async () => {
  let s = await trainedAdapted();
  s = (await reloraReset(s, { pruneRatio: 0.99, seed: 1 })).state;
  s = (await trainStep(s, [BATCH], { lr: 1e-2 })).state;
  const before = tf.memory().numTensors;
  s = (await reloraReset(s, { pruneRatio: 0.99, seed: 2 })).state;
  s = (await trainStep(s, [BATCH], { lr: 1e-2 })).state;
  assertEquals(tf.memory().numTensors, before);
  disposeState(s);
});
