/**
 * Parameter names and layouts of a LLaMA checkpoint, the same in every format
 * this folder reads or writes.
 *
 * Names are Hugging Face's (`model.embed_tokens.weight`,
 * `model.layers.{i}.self_attn.q_proj.weight`, …, `lm_head.weight`), as in
 * `kernels/params.ts`, which this folder may not import (it loads tfjs): the
 * engine tests check that {@link expectedTensors} and the engine's
 * `paramShapes` agree name for name. Layouts differ between the formats in
 * one way: our linear weights (the seven projections and the LM head) are
 * [in, out] (y = x·W), Hugging Face's are [out, in] (y = x·Wᵀ, torch's
 * `nn.Linear`). The embedding is [vocab, hidden] and the RMSNorm weights are
 * [hidden] in both.
 *
 * @module
 */
import {
  type LlamaShape,
  type Projection,
  projectionDims,
  PROJECTIONS,
} from "../solvers/llama_shape.ts";

/** Token embedding, [vocab, hidden] in every format. */
export const EMBED = "model.embed_tokens.weight";
/** Final RMSNorm weight, [hidden]. */
export const FINAL_NORM = "model.norm.weight";
/** Untied LM head: ours [hidden, vocab], HF [vocab, hidden]; absent when tied. */
export const LM_HEAD = "lm_head.weight";

/** The PyTorch submodule holding a projection: `self_attn` or `mlp`. */
export function projectionBlock(p: Projection): "self_attn" | "mlp" {
  return p === "gate" || p === "up" || p === "down" ? "mlp" : "self_attn";
}

/** The module name of a projection, e.g. `model.layers.3.mlp.up_proj`. */
export function projectionModule(layer: number, p: Projection): string {
  return `model.layers.${layer}.${projectionBlock(p)}.${p}_proj`;
}

/** The weight name of a projection, e.g. `model.layers.3.mlp.up_proj.weight`. */
export function projectionWeight(layer: number, p: Projection): string {
  return `${projectionModule(layer, p)}.weight`;
}

const PROJECTION_NAME =
  /^model\.layers\.(\d+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.(.+)$/;

/** Layer, projection and the rest (`weight`, `lora_A`, …) of a projection tensor name. */
export function parseProjectionName(
  name: string,
): { readonly layer: number; readonly p: Projection; readonly rest: string } | undefined {
  const m = PROJECTION_NAME.exec(name);
  if (m === null) return undefined;
  const p = m[3] as Projection;
  if (projectionBlock(p) !== m[2]) return undefined;
  return { layer: Number(m[1]), p, rest: m[4] ?? "" };
}

/** The layer index of a `model.layers.{i}.…` name, or undefined. */
export function layerOfName(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m === null ? undefined : Number(m[1]);
}

/** The same name in layer `to` (`model.layers.2.x` → `model.layers.5.x`). */
export function renumber(name: string, to: number): string {
  return name.replace(/^model\.layers\.\d+\./, `model.layers.${to}.`);
}

/** Names and shapes, in our layout, of every weight of a model of `shape.layers` layers. */
export function expectedTensors(shape: LlamaShape): [string, number[]][] {
  const h = shape.hidden;
  const out: [string, number[]][] = [[EMBED, [shape.vocab, h]]];
  for (let i = 0; i < shape.layers; i++) {
    for (const p of PROJECTIONS) {
      const d = projectionDims(shape, p);
      out.push([projectionWeight(i, p), [d.in, d.out]]);
    }
    out.push([`model.layers.${i}.input_layernorm.weight`, [h]]);
    out.push([`model.layers.${i}.post_attention_layernorm.weight`, [h]]);
  }
  out.push([FINAL_NORM, [h]]);
  if (!shape.tiedEmbeddings) out.push([LM_HEAD, [h, shape.vocab]]);
  return out;
}

/** Whether Hugging Face stores this weight transposed relative to us (the linear maps). */
export function isLinearWeight(name: string): boolean {
  return name === LM_HEAD || parseProjectionName(name)?.rest === "weight";
}

/** A weight's shape in Hugging Face's layout, from its shape in ours. */
export function hfShape(name: string, ours: readonly number[]): number[] {
  return isLinearWeight(name) ? [...ours].reverse() : [...ours];
}

// Tiles keep both the reads and the writes of a large transpose within the cache.
const TILE = 64;

/**
 * The transpose of a row-major [rows, cols] matrix, moved as 32-bit patterns so
 * every value (NaN payloads included) keeps its exact bits.
 *
 * @example
 * ```ts
 * import { transpose } from "./layout.ts";
 * const t = transpose(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3);
 * console.assert(t.join() === "1,4,2,5,3,6");
 * ```
 */
export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  if (values.length !== rows * cols) {
    throw new Error(`transpose: ${values.length} values for [${rows}, ${cols}]`);
  }
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const dst = new Uint32Array(values.length);
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c]!;
      }
    }
  }
  return new Float32Array(dst.buffer);
}
