/**
 * Our model shape ⇄ Hugging Face's LLaMA `config.json`.
 *
 * Export writes the fields `LlamaForCausalLM` reads (architectures,
 * model_type, sizes, head counts, rms_norm_eps, rope_theta,
 * max_position_embeddings, tie_word_embeddings, torch_dtype) and pins the
 * ones whose defaults could differ between `transformers` versions (head_dim,
 * hidden_act, biases, rope_scaling). Import reads the same fields with
 * LlamaConfig's defaults for the absent ones, ignores fields that do not
 * change the function (token ids, use_cache, …) and refuses the ones our
 * model cannot compute (biases, other activations, rope scaling, a head_dim
 * that is not hidden / heads), naming the field.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  type ext,
  type LlamaShape,
  shapeProblem,
} from "../base/mod.ts";
import type { Dtype } from "../store/mod.ts";

/** The dtypes a Hugging Face LLaMA checkpoint is stored in, by torch's name. */
export const HF_DTYPES = ["float32", "float16", "bfloat16"] as const;
/** One of {@link HF_DTYPES}. */
export type HfDtype = typeof HF_DTYPES[number];

/** The safetensors dtype of a torch dtype name. */
export function safetensorsDtype(d: HfDtype): Dtype {
  return d === "float32" ? "F32" : d === "float16" ? "F16" : "BF16";
}

/** The torch dtype name of a safetensors float dtype, or undefined for other dtypes. */
export function torchDtype(d: Dtype): HfDtype | undefined {
  return d === "F32" ? "float32" : d === "F16" ? "float16" : d === "BF16" ? "bfloat16" : undefined;
}

/**
 * The `config.json` of a LlamaForCausalLM with `shape.layers` decoder layers, stored in `dtype`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toHfConfig } from "./hf_config.ts";
 * const c = toHfConfig({
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 2, vocab: 11,
 *   tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * }, "bfloat16");
 * assert(c.num_key_value_heads === 1 && c.torch_dtype === "bfloat16");
 * ```
 */
export function toHfConfig(shape: LlamaShape, dtype: HfDtype): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    head_dim: shape.hidden / shape.heads,
    vocab_size: shape.vocab,
    rms_norm_eps: shape.rmsNormEps,
    rope_theta: shape.ropeTheta,
    rope_scaling: null,
    max_position_embeddings: shape.maxSeqLen,
    tie_word_embeddings: shape.tiedEmbeddings,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    attention_dropout: 0,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
    torch_dtype: dtype,
  };
}

type Json = Record<string, unknown>;

function isRecord(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Reads one field; `undefined` when absent (or null), a message when of the wrong kind. */
function field<A>(
  json: Json,
  key: string,
  check: (v: unknown) => v is A,
  expected: string,
): A | undefined | { readonly bad: string } {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  return check(v) ? v : { bad: `expected ${expected}, got ${JSON.stringify(v)}` };
}

const positiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1;
const positive = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v > 0;
const bool = (v: unknown): v is boolean => typeof v === "boolean";

/**
 * Our shape from a Hugging Face `config.json` (already parsed); `where` names the file in
 * errors. `layers` is `num_hidden_layers`, `maxSeqLen` is `max_position_embeddings`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromHfConfig } from "./hf_config.ts";
 * const r = fromHfConfig({
 *   hidden_size: 8, intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2,
 *   vocab_size: 11,
 * }, "config.json");
 * assert(r._tag === "Right" && r.right.kvHeads === 2 && r.right.rmsNormEps === 1e-6);
 * ```
 */
export function fromHfConfig(json: unknown, where: string): ext.Either<ConfigInvalid, LlamaShape> {
  if (!isRecord(json)) return E.left(configInvalid(where, "expected a JSON object"));
  const bad = (key: string, message: string): ext.Either<ConfigInvalid, never> =>
    E.left(configInvalid(`${where}: ${key}`, message));
  if (json.model_type !== undefined && json.model_type !== "llama") {
    return bad("model_type", `expected "llama", got ${JSON.stringify(json.model_type)}`);
  }
  const arch = json.architectures;
  if (arch !== undefined && arch !== null) {
    if (!Array.isArray(arch) || !arch.includes("LlamaForCausalLM")) {
      return bad("architectures", `expected ["LlamaForCausalLM"], got ${JSON.stringify(arch)}`);
    }
  }
  const ints: Record<string, number> = {};
  const required = [
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
  ];
  for (const key of [...required, "num_key_value_heads", "max_position_embeddings", "head_dim"]) {
    const v = field(json, key, positiveInt, "a positive integer");
    if (typeof v === "object") return bad(key, v.bad);
    if (v === undefined && required.includes(key)) return bad(key, "missing");
    if (v !== undefined) ints[key] = v;
  }
  const eps = field(json, "rms_norm_eps", positive, "a positive number");
  if (typeof eps === "object") return bad("rms_norm_eps", eps.bad);
  const tied = field(json, "tie_word_embeddings", bool, "true or false");
  if (typeof tied === "object") return bad("tie_word_embeddings", tied.bad);
  const theta = ropeTheta(json);
  if (typeof theta === "object") return bad(theta.key, theta.bad);
  for (const key of ["attention_bias", "mlp_bias"]) {
    if (json[key] !== undefined && json[key] !== false) {
      return bad(key, `biases are not supported (got ${JSON.stringify(json[key])})`);
    }
  }
  if (json.hidden_act !== undefined && json.hidden_act !== "silu") {
    return bad("hidden_act", `only "silu" is supported, got ${JSON.stringify(json.hidden_act)}`);
  }
  const hidden = ints.hidden_size!;
  const heads = ints.num_attention_heads!;
  if (ints.head_dim !== undefined && ints.head_dim * heads !== hidden) {
    return bad(
      "head_dim",
      `${ints.head_dim} × num_attention_heads ${heads} must equal hidden_size ${hidden}`,
    );
  }
  const shape: LlamaShape = {
    hidden,
    intermediate: ints.intermediate_size!,
    heads,
    // LlamaConfig's defaults for absent fields.
    kvHeads: ints.num_key_value_heads ?? heads,
    layers: ints.num_hidden_layers!,
    vocab: ints.vocab_size!,
    tiedEmbeddings: tied ?? false,
    rmsNormEps: eps ?? 1e-6,
    ropeTheta: theta ?? 10000,
    maxSeqLen: ints.max_position_embeddings ?? 2048,
  };
  const problem = shapeProblem(shape);
  return problem === undefined ? E.right(shape) : E.left(configInvalid(where, problem));
}

/**
 * rope_theta, from the top level or (newer `transformers`) `rope_parameters`; any rope
 * scaling other than the default is refused.
 */
function ropeTheta(json: Json): number | undefined | { key: string; bad: string } {
  for (const key of ["rope_scaling", "rope_parameters"]) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    if (!isRecord(v)) return { key, bad: `expected an object or null, got ${JSON.stringify(v)}` };
    const kind = v.rope_type ?? v.type ?? "default";
    if (kind !== "default") {
      return { key, bad: `rope scaling ${JSON.stringify(kind)} is not supported` };
    }
    if (key === "rope_parameters" && v.rope_theta !== undefined) {
      return positive(v.rope_theta)
        ? v.rope_theta
        : { key: `${key}.rope_theta`, bad: `expected a positive number` };
    }
  }
  const theta = field(json, "rope_theta", positive, "a positive number");
  return typeof theta === "object" ? { key: "rope_theta", bad: theta.bad } : theta;
}
