/**
 * STEP's operations on a model, written once, as pure functions on host-side data (spec §1,
 * §5, §6): the initial model, growth (new layers inserted where `base/growth_layout.ts` puts
 * them, each the mean of its neighbours), attaching ReLoRA adapters (A from
 * `base/init_values.ts`, B zero), merging them (W += scale·A·B), and the fresh Adam moments
 * that go with each. Every engine, `deno task ckpt` (`transforms.ts`, tensor by tensor on lazy
 * views) and the interpreter use these; an engine only loads the result.
 *
 * The arithmetic is float32 as tensors compute it, so an engine that ran the same operation on
 * its own tensors would get the same bits: a new layer is fround(fround(a + b) · 0.5) per
 * element, and a merge sums each element of A·B in float32 with one rounding per
 * multiply-add, k ascending (what a float32 GEMM with fused multiply-add computes, OpenBLAS's
 * among them), then rounds `Σ · scale` and `W + Σ · scale` to float32.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  EMBED,
  type ext,
  grownLayout,
  initialValues,
  insertionCounts,
  isAdapterName,
  layerOfName,
  type LlamaShape,
  loraAValues,
  loraNames,
  type Placement,
  renumber,
} from "../base/mod.ts";
import { momentName } from "./run_layout.ts";
import type { EngineSnapshot, NamedArray } from "./snapshot.ts";

/**
 * fround(a·b + c) with one rounding, for float32 `a`, `b`, `c`: what a fused multiply-add on
 * float32 gives. The product is exact in float64; the sum may round there first, and that
 * first rounding decides the second only when the float64 sum lies halfway between two
 * float32 values, so there the exact sum's side (its float64 error, by TwoSum) decides.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fmaF32 } from "./surgery.ts";
 * // a·b = 2⁻²⁴ − 2⁻⁶⁰: the exact sum lies just below the midpoint 1 + 2⁻²³ + 2⁻²⁴, which
 * // float64 rounds it to, and from there float32's ties-to-even would round up.
 * const [a, b, c] = [1 + 2 ** -18, 2 ** -24 - 2 ** -42, 1 + 2 ** -23];
 * assert(Math.fround(a * b + c) === 1 + 2 ** -22);
 * assert(fmaF32(a, b, c) === 1 + 2 ** -23);
 * ```
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = Math.fround(s);
  if (r === s) return r;
  const t = s - p;
  const err = (p - (s - t)) + (c - t);
  if (err === 0) return r;
  const other = 2 * s - r;
  if (Math.fround(other) !== other) return r;
  // s is exactly halfway between the float32 values r and other: the exact sum is on err's side.
  return (err > 0) === (other > r) ? other : r;
}

/** The element-wise float32 mean of two layers' tensors: fround(fround(a + b) · 0.5). */
export function meanValues(lo: Float32Array, hi: Float32Array): Float32Array {
  if (lo.length !== hi.length) {
    throw new Error(`meanValues: ${lo.length} and ${hi.length} values do not pair up`);
  }
  const out = new Float32Array(lo.length);
  // Halving a float32 is exact; the Float32Array store rounds the sum.
  for (let i = 0; i < lo.length; i++) out[i] = Math.fround(lo[i]! + hi[i]!) * 0.5;
  return out;
}

/** One adapter's matrices as values: A [rows, rank], B [rank, cols], and the scale α / r. */
export interface LoraValues {
  /** A [rows, rank], row-major. */
  readonly a: Float32Array;
  /** B [rank, cols], row-major. */
  readonly b: Float32Array;
  /** r. */
  readonly rank: number;
  /** α / r (or α / √r under rank-stabilised LoRA). */
  readonly scale: number;
}

/**
 * W + scale·A·B for W [rows, cols] (all row-major), rounded as the module doc says.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeValues } from "./surgery.ts";
 * const w = mergeValues(new Float32Array([1, 0, 0, 1]), {
 *   a: new Float32Array([1, 2]), b: new Float32Array([3, 4]), rank: 1, scale: 0.5,
 * });
 * assert(w.join() === "2.5,2,3,5");
 * ```
 */
export function mergeValues(w: Float32Array, lora: LoraValues): Float32Array {
  const { a, b, rank } = lora;
  const rows = a.length / rank;
  const cols = b.length / rank;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows * cols !== w.length) {
    throw new Error(`mergeValues: sizes ${w.length}, ${a.length}, ${b.length} do not fit`);
  }
  const s = Math.fround(lora.scale);
  const out = new Float32Array(w.length);
  const acc = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    acc.fill(0);
    for (let k = 0; k < rank; k++) {
      const aik = a[i * rank + k]!;
      const row = k * cols;
      for (let o = 0; o < cols; o++) acc[o] = fmaF32(aik, b[row + o]!, acc[o]!);
    }
    const base = i * cols;
    // Float32Array stores round: fround(w + fround(Σ · s)).
    for (let o = 0; o < cols; o++) out[base + o] = w[base + o]! + Math.fround(acc[o]! * s);
  }
  return out;
}

/** Where growth puts new layers, and the seed of the `random` placement. */
export interface GrowOptions {
  /** Layers inserted. */
  readonly add: number;
  /** Where they go (`base/growth_layout.ts`). */
  readonly placement: Placement;
  /** Seed of the `random` placement. */
  readonly seed: number;
}

/** How {@link growLayers} makes the grown model's tensors from the old ones. */
export interface LayerMaker<T> {
  /** An old layer's tensor under its new name. */
  renamed(t: T, name: string): T;
  /** A new layer's tensor: the mean of the layers below and above it. */
  mean(lo: T, hi: T, name: string): T;
}

/**
 * The tensors of a plain model of `depth` layers grown by `options.add` layers, in state-dict
 * order (the embedding, the layers, then the final norm and the LM head): old layers keep
 * their tensors (renumbered), a new layer after layer j is the mean of layers j and j + 1, or
 * a copy of the top layer when there is none above.
 */
export function growLayers<T extends { readonly name: string }>(
  tensors: readonly T[],
  depth: number,
  options: GrowOptions,
  make: LayerMaker<T>,
): T[] {
  const layout = grownLayout(insertionCounts(depth, options.add, options.placement, options.seed));
  const perLayer = Array.from({ length: depth }, () => [] as T[]);
  for (const t of tensors) {
    const layer = layerOfName(t.name);
    if (layer !== undefined) perLayer[layer]!.push(t);
  }
  const layers: T[] = [];
  layout.forEach((origin, index) => {
    if (origin.kind === "old") {
      for (const t of perLayer[origin.from]!) layers.push(make.renamed(t, renumber(t.name, index)));
      return;
    }
    const above = origin.above === undefined ? undefined : perLayer[origin.above]!;
    perLayer[origin.below]!.forEach((lo, k) => {
      const name = renumber(lo.name, index);
      const hi = above?.[k];
      layers.push(hi === undefined ? make.renamed(lo, name) : make.mean(lo, hi, name));
    });
  });
  const outside = tensors.filter((t) => layerOfName(t.name) === undefined);
  return [
    ...outside.filter((t) => t.name === EMBED),
    ...layers,
    ...outside.filter((t) => t.name !== EMBED),
  ];
}

/**
 * The depth of a model with these parameter names: one more than the highest layer index (a
 * missing layer below it is the shape check's to name, `effects/snapshot_check.ts`).
 */
export function depthOf(names: Iterable<string>): number {
  let depth = 0;
  for (const name of names) depth = Math.max(depth, (layerOfName(name) ?? -1) + 1);
  return depth;
}

/** A parameter's name and shape: what its moments are made from. */
export interface ParamShape {
  /** Hugging Face's name. */
  readonly name: string;
  /** Dimensions (our layout). */
  readonly shape: readonly number[];
}

/**
 * Zero Adam moments (`m/…` then `v/…`) for `trainable`, in its order, each the shape of its
 * parameter in `params` (an engine may pass another shape, as GaLore's projected one).
 */
export function freshMoments(
  params: readonly ParamShape[],
  trainable: readonly string[],
): NamedArray[] {
  const byName = new Map(params.map((p) => [p.name, p]));
  return (["m", "v"] as const).flatMap((kind) =>
    trainable.map((n) => {
      const p = byName.get(n);
      if (p === undefined) throw new Error(`Trainable name "${n}" is not a parameter`);
      const size = p.shape.reduce((a, b) => a * b, 1);
      return { name: momentName(kind, n), shape: p.shape, data: new Float32Array(size) };
    })
  );
}

/**
 * `depth` layers of `shape` as every engine starts them (`base/init_values.ts`), everything
 * trainable, Adam at step 0.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initialSnapshot } from "./surgery.ts";
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 2, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const s = initialSnapshot(shape, 1, 0);
 * assert(s.moments.length === 2 * s.params.length && s.meta.adamStep === 0);
 * ```
 */
export function initialSnapshot(shape: LlamaShape, depth: number, seed: number): EngineSnapshot {
  const params = initialValues(shape, depth, seed);
  const trainable = params.map((p) => p.name);
  return {
    params,
    moments: freshMoments(params, trainable),
    meta: { trainable, loraScale: 1, adamStep: 0 },
  };
}

/**
 * Every adapter merged into its weight and removed: a plain model with the same function.
 * The moments of what still trains are kept; a snapshot without adapters is returned as is.
 */
export function mergedSnapshot(s: EngineSnapshot): EngineSnapshot {
  if (!s.params.some((p) => isAdapterName(p.name))) return s;
  const byName = new Map(s.params.map((p) => [p.name, p]));
  const params = s.params.filter((p) => !isAdapterName(p.name)).map((p): NamedArray => {
    const names = p.name.endsWith(".weight") ? loraNames(p.name) : undefined;
    const a = names === undefined ? undefined : byName.get(names.a);
    const b = names === undefined ? undefined : byName.get(names.b);
    if (a === undefined || b === undefined) return p;
    const rank = a.shape[1]!;
    return {
      ...p,
      data: mergeValues(p.data, { a: a.data, b: b.data, rank, scale: s.meta.loraScale }),
    };
  });
  const trainable = s.meta.trainable.filter((n) => !isAdapterName(n));
  const keep = new Set(trainable.flatMap((n) => [momentName("m", n), momentName("v", n)]));
  return {
    params,
    moments: s.moments.filter((m) => keep.has(m.name)),
    meta: { ...s.meta, trainable },
  };
}

/** Growth settings, and what trains afterwards. */
export interface GrowSpec extends GrowOptions {
  /** What trains after growth, in order (`grownTrainable` of the stage's roles). */
  readonly trainable: readonly string[];
}

function missingTrainable(
  params: readonly NamedArray[],
  trainable: readonly string[],
): string | undefined {
  const names = new Set(params.map((p) => p.name));
  return trainable.find((n) => !names.has(n));
}

/**
 * The snapshot grown by `spec.add` layers (adapters merged first, see {@link growLayers});
 * `spec.trainable` trains afterwards, from fresh moments. Left: why it cannot be grown.
 */
export function grownSnapshot(
  s: EngineSnapshot,
  spec: GrowSpec,
): ext.Either<string, EngineSnapshot> {
  const plain = mergedSnapshot(s);
  const params = growLayers(plain.params, depthOf(plain.params.map((p) => p.name)), spec, {
    renamed: (t, name) => ({ ...t, name }),
    mean: (lo, hi, name) => ({ name, shape: lo.shape, data: meanValues(lo.data, hi.data) }),
  });
  const missing = missingTrainable(params, spec.trainable);
  if (missing !== undefined) {
    return E.left(`Trainable name "${missing}" is not a parameter of the grown model`);
  }
  return E.right({
    params,
    moments: freshMoments(params, spec.trainable),
    meta: { trainable: [...spec.trainable], loraScale: plain.meta.loraScale, adamStep: 0 },
  });
}

/** ReLoRA attachment settings. */
export interface AttachSpec {
  /** r. */
  readonly rank: number;
  /** α: the branch is scaled by α / r. */
  readonly alpha: number;
  /** With each A's name, names the stream A's values are drawn from. */
  readonly seed: number;
  /** Projection weights that get adapters (`adaptedWeights` of the stage's roles). */
  readonly adapted: readonly string[];
  /** Everything that trains afterwards, in order, adapters included (`stageTrainable`). */
  readonly trainable: readonly string[];
}

/**
 * Adapters on `spec.adapted`: lora_A [in, r] Kaiming-uniform from the stream named by
 * (seed, its name), lora_B [r, out] zero, so the model's function is unchanged; the scale
 * becomes α / r and `spec.trainable` trains from fresh moments (spec §4). Left: why not.
 */
export function attachedSnapshot(
  s: EngineSnapshot,
  spec: AttachSpec,
): ext.Either<string, EngineSnapshot> {
  const byName = new Map(s.params.map((p) => [p.name, p]));
  const adapters: NamedArray[] = [];
  for (const w of spec.adapted) {
    const weight = byName.get(w);
    if (weight === undefined || weight.shape.length !== 2) {
      return E.left(`Missing parameter "${w}"`);
    }
    const [inDim, outDim] = weight.shape as [number, number];
    const { a, b } = loraNames(w);
    adapters.push({
      name: a,
      shape: [inDim, spec.rank],
      data: loraAValues(inDim, spec.rank, spec.seed, a),
    });
    adapters.push({
      name: b,
      shape: [spec.rank, outDim],
      data: new Float32Array(spec.rank * outDim),
    });
  }
  const added = new Set(adapters.map((p) => p.name));
  const params = [...s.params.filter((p) => !added.has(p.name)), ...adapters];
  const missing = missingTrainable(params, spec.trainable);
  if (missing !== undefined) return E.left(`Trainable name "${missing}" is not a parameter`);
  return E.right({
    params,
    moments: freshMoments(params, spec.trainable),
    meta: { trainable: [...spec.trainable], loraScale: spec.alpha / spec.rank, adamStep: 0 },
  });
}
