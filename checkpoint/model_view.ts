/**
 * A checkpoint open for reading, whatever its format: the model's shape and
 * a list of weights, each loaded only when asked, always as float32 in our
 * layout (linear weights [in, out]). Transforms (`transforms.ts`) map one
 * view to another without loading anything; writers (`hf_checkpoint.ts`,
 * `step_checkpoint.ts`, `peft.ts`) load one tensor, write it and let it go,
 * so a checkpoint larger than memory is converted tensor by tensor.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  type ext,
  type FileError,
  type LlamaShape,
  type Projection,
} from "../base/mod.ts";
import { type Dtype, type RawTensor, tensorToFloat32 } from "../store/mod.ts";

/** What reading, transforming or writing a checkpoint can fail with. */
export type CkptError = FileError | ConfigInvalid;

/** One weight, loaded on demand. */
export interface LazyTensor {
  /** Hugging Face name (ours too), e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly name: string;
  /** Shape in our layout (linear weights [in, out]). */
  readonly shape: readonly number[];
  /** Reads (or computes) the values; each call returns a fresh array. */
  load(): ext.TaskEither<CkptError, Float32Array>;
}

/**
 * LoRA adapters on some projections of some layers, in our layout:
 * `<proj>.lora_A` [in, r] and `<proj>.lora_B` [r, out], merged as W += scale·A·B.
 */
export interface LoraAdapters {
  /** Rank r: columns of each A, rows of each B. */
  readonly rank: number;
  /** LoRA's α, from which `scale` follows. */
  readonly alpha: number;
  /** α / r (or α / √r under rank-stabilised LoRA). */
  readonly scale: number;
  /** Adapted projections, in `PROJECTIONS` order. */
  readonly targets: readonly Projection[];
  /** Adapted layers, ascending. */
  readonly layers: readonly number[];
  /** The A and B matrices, A before B for each projection. */
  readonly tensors: readonly LazyTensor[];
}

/** A model checkpoint open for reading. */
export interface ModelView {
  /** The shape; `layers` is this checkpoint's depth, not a growth target. */
  readonly shape: LlamaShape;
  /** The float dtype the weights are stored in (the source's, for writing the same back). */
  readonly dtype: Dtype;
  /** Every weight of the plain model, in Hugging Face's state-dict order. */
  readonly tensors: readonly LazyTensor[];
  /** Adapters to add to the weights, if the checkpoint carries any. */
  readonly adapters: LoraAdapters | undefined;
  /** Where the weights come from, for messages. */
  readonly source: string;
  /** Releases file handles (views derived from this one share them). */
  close(): void;
}

/**
 * Float32 values of a stored tensor (F32 as is; F16 and BF16 widened exactly); any other
 * dtype is refused naming the file and tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { floatValues } from "./model_view.ts";
 * const r = floatValues({ dtype: "I32", shape: [1], bytes: new Uint8Array(4) }, "m.safetensors", "w");
 * assert(r._tag === "Left" && r.left.message.includes("I32"));
 * ```
 */
export function floatValues(
  raw: RawTensor,
  file: string,
  name: string,
): ext.Either<ConfigInvalid, Float32Array> {
  if (raw.dtype !== "F32" && raw.dtype !== "F16" && raw.dtype !== "BF16") {
    return E.left(
      configInvalid(
        `${file}: tensor "${name}"`,
        `dtype ${raw.dtype} is not supported (expected F32, F16 or BF16)`,
      ),
    );
  }
  return tensorToFloat32(raw, name);
}

/** Why `got` is not `want` (names the tensor and the source of `want`), or undefined. */
export function shapeMismatch(
  name: string,
  got: readonly number[],
  want: readonly number[],
  because: string,
): string | undefined {
  if (got.length === want.length && got.every((d, i) => d === want[i])) return undefined;
  return `tensor "${name}" has shape ${JSON.stringify(got)}, ${because} implies ${
    JSON.stringify(want)
  }`;
}

/** Elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
