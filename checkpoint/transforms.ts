/**
 * STEP's transforms on checkpoints, engine-free: merging LoRA adapters into
 * their weights and growing a model by inserting layers. Each maps a view to
 * a view without reading anything; the values are computed tensor by tensor
 * when a writer loads them.
 *
 * Arithmetic follows the engine (`kernels/relora.ts`, `kernels/grow.ts`) so
 * the results agree: a new layer is fround(fround(a + b) · 0.5) per element,
 * bit for bit what float32 tensors give; a merge accumulates each element of
 * A·B in float64 (k ascending), rounds it to float32, multiplies by the
 * float32 scale and adds W in float32 — equal to the engine's float32
 * `W + scale·matMul(A, B)` up to the rounding of its matmul (bit-equal on the
 * tfjs cpu backend, whose matmul also sums in float64 for r ≤ 64).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  configInvalid,
  contentInvalid,
  EMBED,
  grownLayout,
  insertionCounts,
  layerOfName,
  nonFiniteIndex,
  type Placement,
  renumber,
} from "../base/mod.ts";
import type { CkptError, LazyTensor, LoraAdapters, ModelView } from "./model_view.ts";

/** One adapter's matrices as values: A [rows, rank], B [rank, cols], and α / r. */
export interface LoraValues {
  readonly a: Float32Array;
  readonly b: Float32Array;
  readonly rank: number;
  readonly scale: number;
}

/**
 * W + scale·A·B for W [rows, cols] (all row-major), with the rounding described in the
 * module doc.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeValues } from "./transforms.ts";
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
      for (let o = 0; o < cols; o++) acc[o] = acc[o]! + aik * b[row + o]!;
    }
    const base = i * cols;
    // Float32Array stores round: fround(w + fround(fround(Σ) · s)).
    for (let o = 0; o < cols; o++) {
      out[base + o] = w[base + o]! + Math.fround(Math.fround(acc[o]!) * s);
    }
  }
  return out;
}

/** The view with its adapters merged into the weights (itself when it has none). */
export function mergeAdapters(view: ModelView): ModelView {
  const adapters = view.adapters;
  if (adapters === undefined) return view;
  const byName = new Map(adapters.tensors.map((t) => [t.name, t]));
  const tensors = view.tensors.map((t): LazyTensor => {
    const base = t.name.slice(0, -".weight".length);
    const a = byName.get(`${base}.lora_A`);
    const b = byName.get(`${base}.lora_B`);
    if (a === undefined || b === undefined || !t.name.endsWith(".weight")) return t;
    return {
      name: t.name,
      shape: t.shape,
      load: () => async () => {
        const w = await t.load()();
        if (E.isLeft(w)) return w;
        const av = await a.load()();
        if (E.isLeft(av)) return av;
        const bv = await b.load()();
        if (E.isLeft(bv)) return bv;
        return E.right(
          mergeValues(w.right, {
            a: av.right,
            b: bv.right,
            rank: adapters.rank,
            scale: adapters.scale,
          }),
        );
      },
    };
  });
  return { ...view, tensors, adapters: undefined };
}

/**
 * The view with `adapters` attached (they must fit its projections); closing the result
 * closes both.
 */
export function attachAdapters(
  view: ModelView,
  adapters: LoraAdapters,
  closeAdapters: () => void,
): E.Either<CkptError, ModelView> {
  if (view.adapters !== undefined) {
    return E.left(
      configInvalid(view.source, "the model already carries adapters: merge them first"),
    );
  }
  const shapes = new Map(view.tensors.map((t) => [t.name, t.shape]));
  for (let i = 0; i < adapters.tensors.length; i += 2) {
    const a = adapters.tensors[i]!;
    const b = adapters.tensors[i + 1]!;
    const weight = a.name.slice(0, -".lora_A".length) + ".weight";
    const w = shapes.get(weight);
    if (w === undefined) {
      return E.left(configInvalid(a.name, `the model has no "${weight}" to adapt`));
    }
    if (a.shape[0] !== w[0] || b.shape[1] !== w[1]) {
      return E.left(
        configInvalid(
          a.name,
          `adapter [${a.shape}]·[${b.shape}] does not fit "${weight}" [${w}] (our [in, out])`,
        ),
      );
    }
  }
  return E.right({
    ...view,
    adapters,
    close: () => {
      view.close();
      closeAdapters();
    },
  });
}

/**
 * The view with every weight (and adapter) checked as it loads, on the values as read: a NaN or
 * an infinity fails the load with an error naming the checkpoint, the tensor and the element,
 * followed by `advice` (what the refusal means to the caller, e.g. the flag that overrides it).
 * A save then writes nothing; a model loaded for inference is never used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { requireFinite } from "./transforms.ts";
 * const view = {
 *   shape: {} as never, dtype: "F32" as const, source: "x", adapters: undefined, close: () => {},
 *   tensors: [{ name: "w", shape: [2], load: () => () => Promise.resolve({ _tag: "Right" as const, right: new Float32Array([1, NaN]) }) }],
 * };
 * const r = await requireFinite(view, "refused").tensors[0]!.load()();
 * assert(r._tag === "Left" && r.left.message === 'tensor "w" holds NaN at element 1; refused');
 * ```
 */
export function requireFinite(view: ModelView, advice: string): ModelView {
  const check = (t: LazyTensor): LazyTensor => ({
    ...t,
    load: () =>
      TE.flatMapEither(t.load(), (values) => {
        const i = nonFiniteIndex(values);
        return i < 0 ? E.right(values) : E.left(contentInvalid(
          view.source,
          `tensor "${t.name}" holds ${values[i]} at element ${i}; ${advice}`,
        ));
      }),
  });
  const adapters = view.adapters;
  return {
    ...view,
    tensors: view.tensors.map(check),
    adapters: adapters === undefined
      ? undefined
      : { ...adapters, tensors: adapters.tensors.map(check) },
  };
}

/** Options of {@link growCheckpoint}. */
export interface GrowCheckpointOptions {
  readonly add: number;
  readonly placement: Placement;
  /** Seed of the `random` placement (the run uses the node's seed, else training.seed). */
  readonly seed: number;
}

function meanOf(lo: LazyTensor, hi: LazyTensor, name: string): LazyTensor {
  return {
    name,
    shape: lo.shape,
    load: () =>
      TE.flatMap(lo.load(), (a) =>
        TE.map((b: Float32Array) => {
          const out = new Float32Array(a.length);
          // The engine's float32 (a + b) · 0.5, rounded at each step as tensors are.
          for (let i = 0; i < a.length; i++) out[i] = Math.fround(a[i]! + b[i]!) * 0.5;
          return out;
        })(hi.load())),
  };
}

/**
 * Grows a checkpoint by `add` layers at `placement` (`base/growth_layout.ts`, shared
 * with the engine): adapters are merged first, old layers keep their values (renumbered),
 * a new layer after layer j is the mean of layers j and j + 1, or a copy of the top layer.
 *
 * @example
 * ```ts
 * import { growCheckpoint } from "./transforms.ts";
 * import { openCheckpoint } from "./checkpoint_dir.ts";
 * const opened = await openCheckpoint("runs/tiny-step/final")();
 * if (opened._tag === "Right") {
 *   const grown = growCheckpoint(opened.right.view, { add: 2, placement: "upper", seed: 0 });
 *   console.log(grown.shape.layers);
 *   opened.right.view.close();
 * }
 * ```
 */
export function growCheckpoint(view: ModelView, options: GrowCheckpointOptions): ModelView {
  const plain = mergeAdapters(view);
  const depth = plain.shape.layers;
  const layout = grownLayout(insertionCounts(depth, options.add, options.placement, options.seed));
  const perLayer = Array.from({ length: depth }, () => [] as LazyTensor[]);
  for (const t of plain.tensors) {
    const layer = layerOfName(t.name);
    if (layer !== undefined) perLayer[layer]!.push(t);
  }
  const layerTensors: LazyTensor[] = [];
  layout.forEach((origin, index) => {
    if (origin.kind === "old") {
      for (const t of perLayer[origin.from]!) {
        layerTensors.push({ ...t, name: renumber(t.name, index) });
      }
      return;
    }
    const above = origin.above === undefined ? undefined : perLayer[origin.above]!;
    perLayer[origin.below]!.forEach((lo, k) => {
      const name = renumber(lo.name, index);
      const hi = above?.[k];
      layerTensors.push(hi === undefined ? { ...lo, name } : meanOf(lo, hi, name));
    });
  });
  const outside = plain.tensors.filter((t) => layerOfName(t.name) === undefined);
  return {
    ...plain,
    shape: { ...plain.shape, layers: depth + options.add },
    // State-dict order: the embedding, the layers, then the final norm and the LM head.
    tensors: [
      ...outside.filter((t) => t.name === EMBED),
      ...layerTensors,
      ...outside.filter((t) => t.name !== EMBED),
    ],
  };
}
