/**
 * STEP's transforms on checkpoints, engine-free: merging LoRA adapters into their weights and
 * growing a model by inserting layers. Each maps a lazy view to a view without reading
 * anything; the values are computed tensor by tensor when a writer loads them, by the same
 * per-tensor arithmetic and layer layout the engines' snapshots go through (`surgery.ts`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { configInvalid, contentInvalid, type ext, nonFiniteIndex } from "../base/mod.ts";
import type { CkptError, LazyTensor, LoraAdapters, ModelView } from "./model_view.ts";
import { growLayers, type GrowOptions, meanValues, mergeValues } from "./surgery.ts";

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
): ext.Either<CkptError, ModelView> {
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

/** Options of {@link growCheckpoint}: the run uses the node's seed, else training.seed. */
export type GrowCheckpointOptions = GrowOptions;

function meanOf(lo: LazyTensor, hi: LazyTensor, name: string): LazyTensor {
  return {
    name,
    shape: lo.shape,
    load: () =>
      TE.flatMap(lo.load(), (a) => TE.map((b: Float32Array) => meanValues(a, b))(hi.load())),
  };
}

/**
 * Grows a checkpoint by `add` layers at `placement` (`surgery.ts`'s `growLayers`, as the
 * engines grow): adapters are merged first, old layers keep their values (renumbered), a new
 * layer after layer j is the mean of layers j and j + 1, or a copy of the top layer.
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
  return {
    ...plain,
    shape: { ...plain.shape, layers: plain.shape.layers + options.add },
    tensors: growLayers(plain.tensors, plain.shape.layers, options, {
      renamed: (t, name) => ({ ...t, name }),
      mean: meanOf,
    }),
  };
}
