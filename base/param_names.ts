/**
 * Parameter names of a LLaMA model, Hugging Face's (`model.embed_tokens.weight`,
 * `model.layers.{i}.self_attn.q_proj.weight`, …, `lm_head.weight`), and their
 * shapes in this project's layout. The engine's parameter map, every
 * checkpoint format and the freezing rules name tensors through this one
 * module, so export is a rename-free copy.
 *
 * Layout: every linear weight (the seven projections and the LM head) is
 * **[in, out]** here (y = x·W), while Hugging Face stores [out, in]; the
 * embedding is [vocab, hidden] and RMSNorm weights [hidden] in both. LoRA
 * adapters of a projection sit beside its weight as `<proj>.lora_A` [in, r]
 * and `<proj>.lora_B` [r, out].
 *
 * @module
 */
import { type LlamaShape, type Projection, projectionDims, PROJECTIONS } from "./llama_shape.ts";

/** Token embedding, [vocab, hidden] in every format. */
export const EMBED = "model.embed_tokens.weight";
/** Final RMSNorm weight, [hidden]. */
export const FINAL_NORM = "model.norm.weight";
/** Untied LM head: ours [hidden, vocab], HF [vocab, hidden]; absent when tied. */
export const LM_HEAD = "lm_head.weight";

/** `model.layers.{layer}.` */
export function layerPrefix(layer: number): string {
  return `model.layers.${layer}.`;
}

/** The PyTorch submodule holding a projection: `self_attn` or `mlp`. */
export function projectionBlock(p: Projection): "self_attn" | "mlp" {
  return p === "gate" || p === "up" || p === "down" ? "mlp" : "self_attn";
}

/** The module name of a projection, e.g. `model.layers.3.mlp.up_proj`. */
export function projectionModule(layer: number, p: Projection): string {
  return `${layerPrefix(layer)}${projectionBlock(p)}.${p}_proj`;
}

/** The weight name of a projection, e.g. `model.layers.3.mlp.up_proj.weight`. */
export function projectionWeight(layer: number, p: Projection): string {
  return `${projectionModule(layer, p)}.weight`;
}

/** Names of the RMSNorm weights of one layer. */
export function layerNormNames(layer: number): { readonly input: string; readonly post: string } {
  return {
    input: `${layerPrefix(layer)}input_layernorm.weight`,
    post: `${layerPrefix(layer)}post_attention_layernorm.weight`,
  };
}

/** Adapter names beside a projection weight: `<proj>.lora_A` [in, r], `<proj>.lora_B` [r, out]. */
export function loraNames(weightName: string): { readonly a: string; readonly b: string } {
  const base = weightName.endsWith(".weight") ? weightName.slice(0, -".weight".length) : weightName;
  return { a: `${base}.lora_A`, b: `${base}.lora_B` };
}

/** Whether a parameter is a LoRA adapter matrix. */
export function isAdapterName(name: string): boolean {
  return name.endsWith(".lora_A") || name.endsWith(".lora_B");
}

/** The layer index of a `model.layers.{i}.…` name, or undefined. */
export function layerOfName(name: string): number | undefined {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m === null ? undefined : Number(m[1]);
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

/** The same name in layer `to` (`model.layers.2.x` → `model.layers.5.x`). */
export function renumber(name: string, to: number): string {
  return name.replace(/^model\.layers\.\d+\./, `model.layers.${to}.`);
}

/** Every weight name of one layer, in state-dict order: q, k, v, o, gate, up, down, the two norms. */
export function layerWeightNames(layer: number): string[] {
  const norms = layerNormNames(layer);
  return [...PROJECTIONS.map((p) => projectionWeight(layer, p)), norms.input, norms.post];
}

/** The weights outside the layers, in state-dict order (no LM head when tied). */
export function outsideWeightNames(tiedEmbeddings: boolean): string[] {
  return tiedEmbeddings ? [EMBED, FINAL_NORM] : [EMBED, FINAL_NORM, LM_HEAD];
}

/** Every weight name of a model of `depth` layers, in state-dict order. */
export function modelWeightNames(depth: number, tiedEmbeddings: boolean): string[] {
  const [embed, ...last] = outsideWeightNames(tiedEmbeddings);
  return [
    embed!,
    ...Array.from({ length: depth }, (_, l) => layerWeightNames(l)).flat(),
    ...last,
  ];
}

/**
 * Names and shapes (our layout) of every weight of a model of `depth` layers (default
 * `shape.layers`), in Hugging Face's state-dict order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramShapes } from "./param_names.ts";
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * assert(paramShapes(shape).length === 1 + 9 + 1);
 * ```
 */
export function paramShapes(shape: LlamaShape, depth: number = shape.layers): [string, number[]][] {
  return modelWeightNames(depth, shape.tiedEmbeddings).map((
    name,
  ) => [name, weightShape(shape, name)]);
}

/** The shape (our layout) of one weight of a model of this shape. */
function weightShape(shape: LlamaShape, name: string): number[] {
  if (name === EMBED) return [shape.vocab, shape.hidden];
  if (name === LM_HEAD) return [shape.hidden, shape.vocab];
  const projection = parseProjectionName(name);
  if (projection === undefined) return [shape.hidden];
  const d = projectionDims(shape, projection.p);
  return [d.in, d.out];
}
