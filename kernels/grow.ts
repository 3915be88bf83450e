/**
 * Layer growth by interpolation (spec §1, §6): new layers are inserted
 * between existing ones; a layer inserted after layer j starts as the
 * parameter-wise mean of layers j and j + 1, and one inserted above the top
 * layer as a copy of it. After growth only the new layers train: the old
 * layers, embeddings, final norm and LM head are frozen (adapters come next,
 * from `attachRelora`), and AdamW starts from fresh moments.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Placement } from "../pipeline/config.ts";
import { mergeAdapters } from "./relora.ts";
import { grownLayout, insertionCounts } from "../pipeline/growth_layout.ts";
import { depthOf, layerOf, layerPrefix, type Params } from "./params.ts";
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
}

/**
 * Grows a state by `add` layers. Adapters, if any, are merged first, so the
 * grown model is plain. Consumes `state`; untouched layers keep their values
 * bit for bit (renumbered), new layers get fresh tensors.
 */
export function growModel(state: TrainState, options: GrowOptions): TrainState {
  const plain = mergeAdapters(state);
  const depth = depthOf(plain.params);
  const layout = grownLayout(insertionCounts(depth, options.add, options.placement, options.seed));
  const params = new Map<string, tf.Tensor>();
  const trainable = new Set<string>();
  for (const [name, t] of plain.params) {
    if (layerOf(name) === undefined) params.set(name, t.clone());
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
      trainable.add(prefix + suffix);
    }
  });
  disposeState(plain);
  return {
    shape: plain.shape,
    params,
    loraScale: plain.loraScale,
    trainable,
    adam: freshMoments(params, trainable),
  };
}
