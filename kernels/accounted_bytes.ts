/**
 * The accounted model state: live bytes by role, read from the tensors themselves (dtype size ×
 * elements). It checks that the engine holds what the plan says; what the engine really held at
 * its peak is measured apart (`peak_memory.ts`).
 *
 * The planner predicts fp32 model state as 16 B per trainable parameter
 * (weight 4, gradient 4, Adam m and v 8) plus 4 B per frozen one; the `accounted` bytes
 * `trainStep` reports are read when exactly those tensors are live, so the two can be compared
 * one for one.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Params } from "./params.ts";
import type { TrainState } from "./train_state.ts";
import { isAdapterName } from "../base/mod.ts";

/** Bytes per role. Adapters are trainable, but counted apart from `trainable`. */
export interface AccountedBytes {
  /** Trainable weights other than adapters. */
  readonly trainable: number;
  /** Trainable LoRA adapter matrices. */
  readonly adapters: number;
  /** Parameters outside the trainable set (adapters included, if frozen). */
  readonly frozen: number;
  /** Gradient tensors live at the moment of measurement (0 between steps). */
  readonly gradients: number;
  /** AdamW m and v (GaLore's in projected shape) and GaLore's projectors. */
  readonly optimizer: number;
  /** Sum of the five roles above. */
  readonly modelState: number;
  /**
   * tfjs's own count at that moment (`tf.memory().numBytes`): model state,
   * activations, temporaries. It counts per tensor, so two views of one buffer
   * (a reshape, a clone) count twice. A measured figure beside the accounted ones, for a sanity
   * check (the engine holds at least the model state); the interpreter never reads it.
   */
  readonly engineTotal: number;
}

/** Bytes of one live tensor. */
export function tensorBytes(t: tf.Tensor): number {
  if (t.isDisposed) throw new Error(`Tensor ${t.id} is disposed: the state that held it is stale`);
  return t.size * tf.util.bytesPerElement(t.dtype);
}

function bytesOf(params: Params): number {
  let sum = 0;
  for (const t of params.values()) sum += tensorBytes(t);
  return sum;
}

/**
 * Bytes held by `state`, plus `gradients` when given (a name → gradient map).
 *
 * @example
 * ```ts
 * import { accountedBytes } from "./accounted_bytes.ts";
 * import { createTrainState, disposeState } from "./train_state.ts";
 * import { initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const state = createTrainState(shape, initParams(shape, 1, 0));
 * console.log(accountedBytes(state).optimizer); // 8 bytes per parameter
 * disposeState(state);
 * ```
 */
export function accountedBytes(state: TrainState, gradients?: Params): AccountedBytes {
  let trainable = 0;
  let adapters = 0;
  let frozen = 0;
  for (const [name, t] of state.params) {
    const b = tensorBytes(t);
    if (!state.trainable.has(name)) frozen += b;
    else if (isAdapterName(name)) adapters += b;
    else trainable += b;
  }
  const grads = gradients === undefined ? 0 : bytesOf(gradients);
  const optimizer = bytesOf(state.adam.m) + bytesOf(state.adam.v) +
    (state.galore === undefined ? 0 : bytesOf(state.galore.projectors));
  return {
    trainable,
    adapters,
    frozen,
    gradients: grads,
    optimizer,
    modelState: trainable + adapters + frozen + grads + optimizer,
    engineTotal: tf.memory().numBytes,
  };
}
