import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "../tests/assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { growModel } from "./grow.ts";
import { depthOf, initParams } from "./params.ts";
import { createTrainState, disposeState, type TrainState } from "./train_state.ts";
import { backendTest } from "./_test_util.ts";
import { EMBED, layerPrefix } from "../base/param_names.ts";
import { grownStageRoles, grownTrainable } from "../base/stage_roles.ts";

const SHAPE: LlamaShape = {
  hidden: 8,
  intermediate: 12,
  heads: 2,
  kvHeads: 1,
  layers: 8,
  vocab: 13,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};

async function layerValues(state: TrainState, layer: number): Promise<Map<string, Float32Array>> {
  const prefix = layerPrefix(layer);
  const out = new Map<string, Float32Array>();
  for (const [name, t] of state.params) {
    if (name.startsWith(prefix)) {
      out.set(name.slice(prefix.length), (await t.data()) as Float32Array);
    }
  }
  return out;
}

backendTest(
  "growModel() keeps old layers bit for bit and starts new ones as neighbour means",
  async () => {
    const s0 = createTrainState(SHAPE, initParams(SHAPE, 3, 1));
    const old = await Promise.all([0, 1, 2].map((i) => layerValues(s0, i)));
    const embed = (await s0.params.get(EMBED)!.data()).slice();
    const before = tf.memory().numTensors;
    const roles = grownStageRoles(2, 3, 2, {
      placement: "upper",
      seed: 0,
      targets: [],
      trainEmbeddings: false,
    });
    const grown = growModel(s0, {
      add: 2,
      placement: "upper",
      seed: 0,
      trainable: grownTrainable(roles),
    });
    // Layout [0, 1, new(1,2), 2, new(2, top)].
    assertEquals(depthOf(grown.params), 5);
    for (const [newIndex, oldIndex] of [[0, 0], [1, 1], [3, 2]] as const) {
      const got = await layerValues(grown, newIndex);
      for (const [suffix, values] of old[oldIndex]!) assertEquals(got.get(suffix), values);
    }
    const mid = await layerValues(grown, 2);
    for (const [suffix, lo] of old[1]!) {
      const hi = old[2]!.get(suffix)!;
      const want = lo.map((x, i) => (x + hi[i]!) / 2);
      const have = mid.get(suffix)!;
      assert(
        have.every((x, i) => Math.abs(x - want[i]!) <= 1e-7 * Math.max(1, Math.abs(want[i]!))),
        suffix,
      );
    }
    const top = await layerValues(grown, 4);
    for (const [suffix, values] of old[2]!) {
      assertEquals(
        top.get(suffix),
        values,
        `copy of the top: ${suffix}`,
      );
    }
    assertEquals(
      new Float32Array(await grown.params.get(EMBED)!.data()),
      new Float32Array(embed),
    );
    // Only the two new layers train; moments exist for them alone.
    const trainable = [...grown.trainable];
    assert(
      trainable.length > 0 &&
        trainable.every((n) => n.startsWith(layerPrefix(2)) || n.startsWith(layerPrefix(4))),
    );
    assertEquals([...grown.adam.m.keys()].sort(), trainable.sort());
    // The old state's tensors were consumed: live tensors grew by exactly the new state's surplus.
    const grownTensors = grown.params.size + grown.adam.m.size + grown.adam.v.size;
    const oldTensors = s0.params.size + s0.adam.m.size + s0.adam.v.size;
    assertEquals(tf.memory().numTensors - before, grownTensors - oldTensors);
    disposeState(grown);
  },
);
