/**
 * Training state: the model, which parameters train, and AdamW's moments.
 *
 * Frozen parameters are those not in `trainable`: they have no moments here
 * and never get a gradient. LoRA adapters are ordinary trainable entries
 * (`<proj>.lora_A`, `<proj>.lora_B`) of the same map. Transforms such as
 * growth or a ReLoRA merge are functions TrainState → TrainState that build
 * new maps; a tensor is owned by exactly one live state. With GaLore, the
 * moments of its targets have the projected shape and the state also owns
 * their projectors.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { LlamaShape } from "../base/mod.ts";
import type { Model } from "./model.ts";
import { disposeParams, type Params } from "./params.ts";
import {
  disposeGalore,
  type GaloreOptions,
  type GaloreState,
  galoreState,
  projectedShape,
} from "./galore.ts";

/** AdamW's first and second moments per trainable name, and the steps taken. */
export interface AdamState {
  /** Updates applied so far (bias correction uses step + 1 for the next one). */
  readonly step: number;
  readonly m: Params;
  readonly v: Params;
}

/** Everything one training step reads and replaces. */
export interface TrainState extends Model {
  /** Names that get gradients and optimizer state; all others are frozen. */
  readonly trainable: ReadonlySet<string>;
  readonly adam: AdamState;
  /** GaLore's targets and projectors, when it optimises some weights. */
  readonly galore?: GaloreState;
}

/** Options of {@link createTrainState}. */
export interface TrainStateOptions {
  /** Names to train; default every parameter. */
  readonly trainable?: Iterable<string>;
  /** LoRA α / r; default 1. */
  readonly loraScale?: number;
  /** GaLore on these trainable matrices; their moments are created in projected shape. */
  readonly galore?: GaloreOptions;
}

/**
 * A state with fresh (zero) AdamW moments for the trainable parameters.
 * Takes ownership of `params`.
 *
 * @throws {Error} when a trainable name is not a parameter, or a GaLore target not a trainable
 *   matrix.
 * @example
 * ```ts
 * import { createTrainState, disposeState } from "./train_state.ts";
 * import { initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 2, vocab: 11,
 *   tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const state = createTrainState(shape, initParams(shape, 2, 0));
 * disposeState(state);
 * ```
 */
export function createTrainState(
  shape: LlamaShape,
  params: Params,
  options: TrainStateOptions = {},
): TrainState {
  const trainable = new Set(options.trainable ?? params.keys());
  for (const name of trainable) {
    if (!params.has(name)) throw new Error(`Trainable name "${name}" is not a parameter`);
  }
  const galore = options.galore === undefined
    ? undefined
    : galoreState(params, trainable, options.galore);
  return {
    shape,
    params,
    loraScale: options.loraScale ?? 1,
    trainable,
    adam: freshMoments(params, trainable, galore),
    ...(galore === undefined ? {} : { galore }),
  };
}

/**
 * Zero moments for `trainable` at step 0 (also what an optimizer reset installs); GaLore's
 * targets get them in projected shape, never full size.
 */
export function freshMoments(
  params: Params,
  trainable: ReadonlySet<string>,
  galore?: GaloreState,
): AdamState {
  const m = new Map<string, tf.Tensor>();
  const v = new Map<string, tf.Tensor>();
  for (const name of trainable) {
    const full = params.get(name)!.shape;
    const shape = galore?.targets.has(name) ? projectedShape(full, galore.config.rank) : full;
    m.set(name, tf.zeros(shape));
    v.set(name, tf.zeros(shape));
  }
  return { step: 0, m, v };
}

/** Disposes every tensor the state owns (weights, moments, GaLore's projectors). */
export function disposeState(state: TrainState): void {
  disposeParams(state.params);
  disposeParams(state.adam.m);
  disposeParams(state.adam.v);
  if (state.galore !== undefined) disposeGalore(state.galore);
}
