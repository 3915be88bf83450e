/**
 * The model's initial values as plain arrays, the same on every engine and backend: LLaMA's
 * N(0, 0.02²) matrices and unit norms, and a fresh LoRA A. Each tensor is drawn from its own
 * stream named by (seed, parameter name), so layer i starts the same whatever the depth and
 * however many tensors were drawn before.
 *
 * @module
 */
import type { LlamaShape } from "./llama_shape.ts";
import { paramShapes } from "./param_names.ts";
import { createRng, deriveSeed, hashString } from "./prng.ts";

/** Standard deviation of LLaMA's normal initialisation (HF `initializer_range`). */
export const INIT_STD = 0.02;

/**
 * `n` samples of N(0, std²) from the stream named by (`seed`, `name`).
 *
 * @example
 * ```ts
 * import { normalSamples } from "./init_values.ts";
 * const w = normalSamples(4, { seed: 1, name: "model.norm.weight", std: 0.02 });
 * ```
 */
export function normalSamples(
  n: number,
  options: { readonly seed: number; readonly name: string; readonly std: number },
): Float32Array {
  const rng = createRng(Math.imul(options.seed >>> 0, 0x9e3779b1) ^ hashString(options.name));
  const next = (): number => rng.nextFloat();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - next())) * options.std;
    const theta = 2 * Math.PI * next();
    out[i] = r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

/** One parameter's initial value in our layout ([in, out] for linear maps). */
export interface InitialValue {
  /** Hugging Face parameter name, e.g. `model.layers.0.mlp.up_proj.weight` (see `param_names`). */
  readonly name: string;
  /** Dimensions in this project's layout: `[in, out]` for linear maps, `[hidden]` for norms. */
  readonly shape: readonly number[];
  /** The values, row-major; `data.length` is the product of `shape`. */
  readonly data: Float32Array;
}

/**
 * LLaMA initialisation of `depth` layers of `shape`: every matrix (projections, embedding, LM
 * head) from N(0, 0.02²), every RMSNorm weight 1, as Hugging Face's `_init_weights`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initialValues } from "./init_values.ts";
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 2, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * assert(initialValues(shape, 1, 0).every((v) => v.data.length === v.shape.reduce((a, b) => a * b)));
 * ```
 */
export function initialValues(shape: LlamaShape, depth: number, seed: number): InitialValue[] {
  return paramShapes(shape, depth).map(([name, dims]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = dims.length === 1
      ? new Float32Array(n).fill(1)
      : normalSamples(n, { seed, name, std: INIT_STD });
    return { name, shape: dims, data };
  });
}

/**
 * A fresh LoRA A [in, rank] (row-major): U(−1/√in, 1/√in), PyTorch's
 * `kaiming_uniform_(a=√5)` on a fan-in of `in` as PEFT initialises lora_A, from the stream
 * named by (`seed`, `name`). The torch trainer's restarts draw the same numbers
 * (`torch_engine/relora.py`, checked by `tests/relora_py_test.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loraAValues } from "./init_values.ts";
 * const a = loraAValues(16, 2, 7, "model.layers.0.self_attn.q_proj.lora_A");
 * assert(a.length === 32 && a.every((x) => Math.abs(x) <= 0.25));
 * ```
 */
export function loraAValues(inDim: number, rank: number, seed: number, name: string): Float32Array {
  const rng = createRng(deriveSeed(seed, hashString(name)));
  const bound = 1 / Math.sqrt(inDim);
  const data = new Float32Array(inDim * rank);
  for (let i = 0; i < data.length; i++) data[i] = (2 * rng.nextFloat() - 1) * bound;
  return data;
}
