/**
 * Training state: the model, which parameters train, and AdamW's moments.
 *
 * Frozen parameters are those not in `trainable`: they have no moments here
 * and never get a gradient. LoRA adapters are ordinary trainable entries
 * (`<proj>.lora_A`, `<proj>.lora_B`) of the same map. A state is built from a
 * host-side snapshot and copied back into one (`loadTrainState`, `snapshotState`): STEP's
 * surgery (growth, attaching and merging adapters) happens on snapshots
 * (`checkpoint/surgery.ts`), never here. A step or a ReLoRA restart builds new maps; a tensor
 * is owned by exactly one live state. With GaLore, the moments of its targets have the
 * projected shape and the state also owns their projectors.
 *
 * @module
 */
import type { LlamaShape } from "../base/mod.ts";
import {
  type EngineSnapshot,
  freshMoments,
  momentName,
  type NamedArray,
  projectorName,
} from "../checkpoint/mod.ts";
import type { Model } from "./model.ts";
import { disposeParams, exportParams, importParams, type Params } from "./params.ts";
import {
  disposeGalore,
  type GaloreOptions,
  type GaloreState,
  galoreState,
  projectedShape,
} from "./galore.ts";

/** AdamW's first and second moments per trainable name, and the steps taken. */
export interface AdamState {
  /** Updates applied so far (bias correction uses step + 1 for the next one). */
  readonly step: number;
  readonly m: Params;
  readonly v: Params;
}

/** Everything one training step reads and replaces. */
export interface TrainState extends Model {
  /** Names that get gradients and optimizer state; all others are frozen. */
  readonly trainable: ReadonlySet<string>;
  readonly adam: AdamState;
  /** GaLore's targets and projectors, when it optimises some weights. */
  readonly galore?: GaloreState;
}

/** Options of {@link createTrainState}. */
export interface TrainStateOptions {
  /** Names to train; default every parameter. */
  readonly trainable?: Iterable<string>;
  /** LoRA α / r; default 1. */
  readonly loraScale?: number;
  /** GaLore on these trainable matrices; their moments are created in projected shape. */
  readonly galore?: GaloreOptions;
}

/**
 * A state with fresh (zero) AdamW moments for the trainable parameters.
 * Takes ownership of `params`.
 *
 * @throws {Error} when a trainable name is not a parameter, or a GaLore target not a trainable
 *   matrix.
 * @example
 * ```ts
 * import { createTrainState, disposeState } from "./train_state.ts";
 * import { initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 2, vocab: 11,
 *   tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const state = createTrainState(shape, initParams(shape, 2, 0));
 * disposeState(state);
 * ```
 */
export function createTrainState(
  shape: LlamaShape,
  params: Params,
  options: TrainStateOptions = {},
): TrainState {
  const trainable = new Set(options.trainable ?? params.keys());
  for (const name of trainable) {
    if (!params.has(name)) throw new Error(`Trainable name "${name}" is not a parameter`);
  }
  const galore = options.galore === undefined
    ? undefined
    : galoreState(params, trainable, options.galore);
  return {
    shape,
    params,
    loraScale: options.loraScale ?? 1,
    trainable,
    adam: freshAdam(params, trainable, galore),
    ...(galore === undefined ? {} : { galore }),
  };
}

/**
 * Zero moments for `trainable` at step 0, as every run starts them (`freshMoments` of
 * `checkpoint/surgery.ts`); GaLore's targets get them in projected shape, never full size.
 */
function freshAdam(
  params: Params,
  trainable: ReadonlySet<string>,
  galore?: GaloreState,
): AdamState {
  const shapes = [...trainable].map((name) => {
    const full = params.get(name)!.shape;
    return {
      name,
      shape: galore?.targets.has(name) ? projectedShape(full, galore.config.rank) : full,
    };
  });
  const moments = new Map(freshMoments(shapes, [...trainable]).map((m) => [m.name, m]));
  const of = (kind: "m" | "v") =>
    importParams([...trainable].map((n) => ({ ...moments.get(momentName(kind, n))!, name: n })));
  return { step: 0, m: of("m"), v: of("v") };
}

/** Disposes every tensor the state owns (weights, moments, GaLore's projectors). */
export function disposeState(state: TrainState): void {
  disposeParams(state.params);
  disposeParams(state.adam.m);
  disposeParams(state.adam.v);
  if (state.galore !== undefined) disposeGalore(state.galore);
}

/** Options of {@link loadTrainState}. */
export interface LoadStateOptions {
  /**
   * GaLore from here on, on these targets: their moments start afresh in projected shape (a
   * snapshot at Adam's step 0 that carries no GaLore state of its own).
   */
  readonly galore?: GaloreOptions;
}

/**
 * A training state holding the snapshot's weights, trainable set, moments and GaLore
 * projectors; the caller owns its tensors. The snapshot is assumed to fit (see
 * `effects/snapshot_check.ts`).
 *
 * @throws {Error} when a name, a length or a GaLore option does not fit.
 * @example
 * ```ts
 * import { disposeState, loadTrainState } from "./train_state.ts";
 * import { initialSnapshot } from "../checkpoint/mod.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 2, vocab: 11,
 *   tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * disposeState(loadTrainState(shape, initialSnapshot(shape, 2, 0)));
 * ```
 */
export function loadTrainState(
  shape: LlamaShape,
  snap: EngineSnapshot,
  options: LoadStateOptions = {},
): TrainState {
  const fresh = options.galore;
  if (fresh !== undefined && (snap.meta.galore !== undefined || snap.meta.adamStep !== 0)) {
    throw new Error("GaLore starts from a fresh optimizer (a snapshot at step 0 without GaLore)");
  }
  const trainable = new Set(snap.meta.trainable);
  const moments = new Map(snap.moments.map((m) => [m.name, m]));
  const pick = (names: Iterable<string>, key: (n: string) => string): NamedArray[] =>
    [...names].filter((n) => moments.has(key(n))).map((n) => ({
      ...moments.get(key(n))!,
      name: n,
    }));
  const made: Params[] = [];
  const imported = (records: readonly NamedArray[]): Params => {
    const p = importParams(records);
    made.push(p);
    return p;
  };
  try {
    const params = imported(snap.params);
    const loraScale = snap.meta.loraScale;
    if (fresh !== undefined) {
      return createTrainState(shape, params, { trainable, loraScale, galore: fresh });
    }
    for (const name of trainable) {
      if (!params.has(name)) throw new Error(`Trainable name "${name}" is not a parameter`);
    }
    const g = snap.meta.galore;
    const galore = g === undefined ? undefined : galoreState(params, trainable, g);
    const adam = {
      step: snap.meta.adamStep,
      m: imported(pick(trainable, (n) => momentName("m", n))),
      v: imported(pick(trainable, (n) => momentName("v", n))),
    };
    return {
      shape,
      params,
      loraScale,
      trainable,
      adam,
      ...(galore === undefined ? {} : {
        galore: { ...galore, projectors: imported(pick(galore.targets, projectorName)) },
      }),
    };
  } catch (e) {
    made.forEach(disposeParams); // a rejected snapshot leaks no tensor
    throw e;
  }
}

async function named(prefix: string, params: Params): Promise<NamedArray[]> {
  return (await exportParams(params)).map((r) => ({ ...r, name: prefix + r.name }));
}

/** The state's values as a host-side snapshot (weights, moments, GaLore's projectors). */
export async function snapshotState(state: TrainState): Promise<EngineSnapshot> {
  const g = state.galore;
  return {
    params: await named("", state.params),
    moments: [
      ...await named(momentName("m", ""), state.adam.m),
      ...await named(momentName("v", ""), state.adam.v),
      ...(g === undefined ? [] : await named(projectorName(""), g.projectors)),
    ],
    meta: {
      trainable: [...state.trainable],
      loraScale: state.loraScale,
      adamStep: state.adam.step,
      ...(g === undefined ? {} : { galore: { ...g.config, targets: [...g.targets] } }),
    },
  };
}
