/**
 * Model parameters: a flat map from Hugging Face names to tensors.
 *
 * Names and layouts are `base/param_names.ts`'s (Hugging Face's names, linear
 * weights [in, out]). The depth is however many `model.layers.{i}` the map
 * holds (`depthOf` in `checkpoint/surgery.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { initialValues, type LlamaShape, shapeProblem } from "../base/mod.ts";

/** Named parameter tensors; the holder of the map owns the tensors. */
export type Params = ReadonlyMap<string, tf.Tensor>;

/** The tensor named `name`; throws when missing (a caller bug, not user input). */
export function param(params: Params, name: string): tf.Tensor {
  const t = params.get(name);
  if (t === undefined) throw new Error(`Missing parameter "${name}"`);
  return t;
}

/**
 * LLaMA initialisation: every matrix (projections, embedding, LM head) from
 * N(0, 0.02²), every RMSNorm weight 1, as Hugging Face's `_init_weights`.
 * Each tensor is drawn from its own stream named by (`seed`, parameter name),
 * so layer i starts the same whatever the depth.
 *
 * @throws {Error} when the shape is unusable (see `shapeProblem`).
 * @example
 * ```ts
 * import { disposeParams, initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 64, intermediate: 192, heads: 2, kvHeads: 2, layers: 4, vocab: 256,
 *   tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 128,
 * };
 * const params = initParams(shape, 2, 0); // 2 of the 4 target layers
 * disposeParams(params);
 * ```
 */
export function initParams(shape: LlamaShape, depth: number, seed: number): Params {
  const problem = shapeProblem(shape);
  if (problem !== undefined) throw new Error(`Cannot build model: ${problem}`);
  const out = new Map<string, tf.Tensor>();
  for (const v of initialValues(shape, depth, seed)) {
    out.set(v.name, tf.tensor(v.data, [...v.shape], "float32"));
  }
  return out;
}

/** One parameter as plain data, for checkpoint codecs. */
export interface ParamRecord {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Copies parameters out of the engine, in map order (layouts as documented above). */
export async function exportParams(params: Params): Promise<ParamRecord[]> {
  const out: ParamRecord[] = [];
  for (const [name, t] of params) {
    out.push({ name, shape: [...t.shape], data: (await t.data()) as Float32Array });
  }
  return out;
}

/**
 * Builds a parameter map from records; the caller owns the new tensors.
 *
 * @throws {Error} when a record's data length does not match its shape.
 */
export function importParams(records: readonly ParamRecord[]): Params {
  const out = new Map<string, tf.Tensor>();
  for (const r of records) {
    if (r.data.length !== tf.util.sizeFromShape([...r.shape])) {
      throw new Error(`Parameter "${r.name}": ${r.data.length} values for shape [${r.shape}]`);
    }
    out.set(r.name, tf.tensor(r.data, [...r.shape], "float32"));
  }
  return out;
}

/** Disposes every tensor of the map. */
export function disposeParams(params: Params): void {
  for (const t of params.values()) t.dispose();
}
