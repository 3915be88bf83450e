/**
 * Layer growth by interpolation (spec §1, §6): new layers are inserted
 * between existing ones; a layer inserted after layer j starts as the
 * parameter-wise mean of layers j and j + 1, and one inserted above the top
 * layer as a copy of it. What trains afterwards is the caller's list (STEP's
 * rules live in `base/stage_roles.ts`: the new layers), and AdamW starts
 * from fresh moments.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { mergeAdapters } from "./relora.ts";
import {
  grownLayout,
  insertionCounts,
  layerOfName,
  layerPrefix,
  type Placement,
} from "../base/mod.ts";
import { depthOf, disposeParams, type Params } from "./params.ts";
import { disposeState, freshMoments, type TrainState } from "./train_state.ts";

function layerParams(params: Params, layer: number): [string, tf.Tensor][] {
  const prefix = layerPrefix(layer);
  return [...params].filter(([name]) => name.startsWith(prefix)).map(([name, t]) => [
    name.slice(prefix.length),
    t,
  ]);
}

/** Options of {@link growModel}. */
export interface GrowOptions {
  readonly add: number;
  readonly placement: Placement;
  /** Seed of the `random` placement. */
  readonly seed: number;
  /** What trains after growth, in order (`grownTrainable` of the stage's roles). */
  readonly trainable: readonly string[];
}

/**
 * Grows a state by `add` layers. Adapters, if any, are merged first, so the
 * grown model is plain. Consumes `state`; untouched layers keep their values
 * bit for bit (renumbered), new layers get fresh tensors. The trainable set
 * becomes `options.trainable` (the freezing rules of `base/stage_roles.ts`).
 *
 * @throws {Error} when a trainable name is not a parameter of the grown model.
 */
export function growModel(state: TrainState, options: GrowOptions): TrainState {
  const plain = mergeAdapters(state);
  const depth = depthOf(plain.params);
  const layout = grownLayout(insertionCounts(depth, options.add, options.placement, options.seed));
  const params = new Map<string, tf.Tensor>();
  for (const [name, t] of plain.params) {
    if (layerOfName(name) === undefined) params.set(name, t.clone());
  }
  layout.forEach((origin, index) => {
    const prefix = layerPrefix(index);
    if (origin.kind === "old") {
      for (const [suffix, t] of layerParams(plain.params, origin.from)) {
        params.set(prefix + suffix, t.clone());
      }
      return;
    }
    const below = new Map(layerParams(plain.params, origin.below));
    const above = origin.above === undefined
      ? undefined
      : new Map(layerParams(plain.params, origin.above));
    for (const [suffix, lo] of below) {
      const hi = above?.get(suffix);
      const t = hi === undefined ? lo.clone() : tf.tidy(() => tf.mul(tf.add(lo, hi), 0.5));
      params.set(prefix + suffix, t);
    }
  });
  disposeState(plain);
  const missing = options.trainable.find((n) => !params.has(n));
  if (missing !== undefined) {
    disposeParams(params);
    throw new Error(`Trainable name "${missing}" is not a parameter of the grown model`);
  }
  const trainable = new Set(options.trainable);
  return {
    shape: plain.shape,
    params,
    loraScale: plain.loraScale,
    trainable,
    adam: freshMoments(params, trainable),
  };
}
