/**
 * ReLoRA's restart inside a stage (spec §5), on the engine's tensors: merge
 * each adapter into its frozen weight and start it afresh, every `resetEvery`
 * steps. Attaching adapters and the final merge are surgery on snapshots
 * (`checkpoint/surgery.ts`), as is every other stage boundary.
 *
 * Adapters are `<proj>.lora_A` [in, r] and `<proj>.lora_B` [r, out] in the
 * parameter map; the branch adds scale·(x·A)·B with scale = α / r. A starts
 * Kaiming-uniform (PyTorch's `kaiming_uniform_(a=√5)` on a fan-in of `in`,
 * i.e. U(−1/√in, 1/√in), as PEFT initialises lora_A) and B at zero, so
 * attaching or resetting adapters never changes the model's output.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { isAdapterName, loraAValues } from "../base/mod.ts";
import type { Params } from "./params.ts";
import { disposeState, type TrainState } from "./train_state.ts";

// topk's flag: values in descending order, so the last kept one is the threshold.
const SORTED = true;

/** A fresh lora_A: U(−1/√in, 1/√in), from the stream named by (seed, name) (`loraAValues`). */
export function kaimingA(inDim: number, rank: number, seed: number, name: string): tf.Tensor {
  return tf.tensor2d(loraAValues(inDim, rank, seed, name), [inDim, rank]);
}

/** The projection weights that carry adapters, with their adapter names. */
function adapted(params: Params): { weight: string; a: string; b: string }[] {
  return [...params.keys()]
    .filter((n) => n.endsWith(".lora_A"))
    .map((a) => {
      const base = a.slice(0, -".lora_A".length);
      return { weight: `${base}.weight`, a, b: `${base}.lora_B` };
    });
}

function mergedWeight(
  params: Params,
  scale: number,
  x: { weight: string; a: string; b: string },
): tf.Tensor {
  const w = params.get(x.weight);
  const a = params.get(x.a);
  const b = params.get(x.b);
  if (w === undefined || a === undefined || b === undefined) {
    throw new Error(`Broken adapter at "${x.weight}"`);
  }
  return tf.tidy(() => tf.add(w, tf.mul(tf.matMul(a, b), scale)));
}

/**
 * Zeroes, in every tensor of `tensors`, the entries where `key` is not among
 * its largest-magnitude (1 − ratio) fraction (ties at the threshold are kept).
 * One mask for all, so Adam's m and v are pruned together. Asynchronous
 * because WebGPU cannot read back synchronously.
 */
export async function pruneByMagnitude(
  key: tf.Tensor,
  ratio: number,
  tensors: readonly tf.Tensor[],
): Promise<{ pruned: tf.Tensor[]; zeros: number }> {
  const n = key.size;
  const keep = Math.max(0, Math.min(n, Math.round(n * (1 - ratio))));
  if (keep === n) return { pruned: tensors.map((t) => t.clone()), zeros: 0 };
  if (keep === 0) return { pruned: tensors.map((t) => tf.zerosLike(t)), zeros: n };
  const { pruned, kept } = tf.tidy(() => {
    const abs = tf.abs(key);
    const { values } = tf.topk(tf.reshape(abs, [n]), keep, SORTED);
    const threshold = tf.reshape(tf.slice(values, [keep - 1], [1]), []);
    const mask = tf.greaterEqual(abs, threshold);
    return {
      pruned: tensors.map((t) => tf.where(mask, t, tf.zerosLike(t))),
      kept: tf.sum(tf.cast(mask, "int32")),
    };
  });
  const count = (await kept.data())[0] ?? 0;
  kept.dispose();
  return { pruned, zeros: n - count };
}

/** What {@link reloraReset} did. */
export interface ResetResult {
  readonly state: TrainState;
  readonly merged: number;
  readonly prunedFraction: number;
}

/**
 * ReLoRA's restart: merge each adapter into its frozen weight, re-initialise A
 * (Kaiming-uniform, new seed) and B (zero), and magnitude-prune the adapters'
 * Adam moments, keeping the (1 − pruneRatio) entries with the largest |m|, in
 * m and v alike. ReLoRA's reference prunes m and v independently; that keeps
 * entries with momentum but no second moment, whose next update m/(√v + ε) is
 * far too large (we saw the loss jump at every merge). Merge happens before
 * re-initialisation, so the model's function is unchanged by the reset.
 * Consumes `state`.
 */
export async function reloraReset(
  state: TrainState,
  options: { readonly pruneRatio: number; readonly seed: number },
): Promise<ResetResult> {
  const list = adapted(state.params);
  const params = new Map<string, tf.Tensor>();
  for (const [name, t] of state.params) params.set(name, t.clone());
  for (const x of list) {
    const w = mergedWeight(state.params, state.loraScale, x);
    params.get(x.weight)?.dispose();
    params.set(x.weight, w);
    const a = state.params.get(x.a)!;
    const b = state.params.get(x.b)!;
    params.get(x.a)?.dispose();
    params.get(x.b)?.dispose();
    params.set(x.a, kaimingA(a.shape[0]!, a.shape[1]!, options.seed, x.a));
    params.set(x.b, tf.zerosLike(b));
  }
  const m = new Map<string, tf.Tensor>();
  const v = new Map<string, tf.Tensor>();
  let zeros = 0;
  let total = 0;
  for (const name of state.trainable) {
    const mi = state.adam.m.get(name)!;
    const vi = state.adam.v.get(name)!;
    if (isAdapterName(name)) {
      const { pruned: [pm, pv], zeros: z } = await pruneByMagnitude(mi, options.pruneRatio, [
        mi,
        vi,
      ]);
      m.set(name, pm!);
      v.set(name, pv!);
      zeros += z;
      total += mi.size;
    } else {
      m.set(name, mi.clone());
      v.set(name, vi.clone());
    }
  }
  disposeState(state);
  return {
    state: { ...state, params, adam: { step: state.adam.step, m, v } },
    merged: list.length,
    prunedFraction: total === 0 ? 0 : zeros / total,
  };
}
