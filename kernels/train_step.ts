/**
 * One optimizer step over a list of micro-batches, and evaluation loss.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { adamwUpdate, clipFactor, globalNorm } from "./ops/adamw.ts";
import { type AccountedBytes, accountedBytes } from "./accounted_bytes.ts";
import { type Batch, type LossOptions, lossSum, type Model, validTargets } from "./model.ts";
import { EMBED, LM_HEAD } from "../base/mod.ts";
import type { StepHyper } from "../pipeline/mod.ts";
import { registerGradients } from "./_gradients.ts";
import { backwardInto, type GradientSums, recomputedMicroBatch } from "./recompute.ts";
import { releaseDisposedGpuBuffers } from "./ops/release.ts";
import type { TrainState } from "./train_state.ts";
import {
  computeProjector,
  type GaloreState,
  galoreUpdate,
  type ProjectorSvd,
  refreshesAt,
} from "./galore.ts";

/**
 * Hyperparameters of one step: the engines' {@link StepHyper} as it is, or, in tests, only the
 * fields they vary (the others take AdamW's paper defaults, `clip` 1.0, no recompute, the loss
 * at once). A `clip` of `Infinity` turns clipping off.
 */
export interface StepOptions extends Partial<StepHyper> {
  readonly lr: number;
  /** GaLore's decomposition (default `svdShortSide`); tests inject failures through it. */
  readonly galoreSvd?: ProjectorSvd;
}

/** What a step produced. */
export interface StepResult {
  /** The new state; the input state's trainable weights and moments are disposed. */
  readonly state: TrainState;
  /** Mean cross-entropy over all valid targets of all micro-batches, before the update. */
  readonly loss: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** Targets that counted towards the loss. */
  readonly tokens: number;
  /** Live bytes when the accumulated gradients exist, before any is released. */
  readonly accounted: AccountedBytes;
  /**
   * The loss or the gradient norm was not finite, so no weight or moment was touched: `state`
   * is the input state, still valid.
   */
  readonly skipped: boolean;
  /** GaLore projectors recomputed by this step (0 without GaLore). */
  readonly projectorUpdates: number;
  /**
   * GaLore decompositions that failed (or gave non-finite vectors) in this step: the weight kept
   * its previous projector, or, without one yet, was left unchanged with its moments.
   */
  readonly svdFailures: number;
}

/**
 * Gradient accumulation over `microBatches` (loss = Σ token losses / Σ valid
 * targets, so the split does not change the result), global-norm clipping,
 * then one AdamW update of the trainable parameters. When the loss or the
 * gradient norm is NaN or infinite the update is skipped (`skipped: true`):
 * one bad batch cannot write NaN into every weight. GaLore's targets (when
 * `state.galore` is set) take the projected update of kernels/galore.ts.
 *
 * Consumes `state` (unless skipped): its trainable weights and moments are
 * disposed and must not be used again; frozen weights move to the returned
 * state unchanged.
 *
 * @throws {Error} on malformed batches or a state whose tensors were disposed.
 * @example
 * ```ts
 * import { createTrainState, disposeState } from "./train_state.ts";
 * import { initParams } from "./params.ts";
 * import { trainStep } from "./train_step.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 1, vocab: 11,
 *   tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const s0 = createTrainState(shape, initParams(shape, 1, 0));
 * const mb = { tokens: new Int32Array([1, 2, 3, 4]), targets: new Int32Array([2, 3, 4, 5]), batch: 1, seq: 4 };
 * const { state, loss } = await trainStep(s0, [mb], { lr: 1e-3 });
 * disposeState(state);
 * ```
 */
export async function trainStep(
  state: TrainState,
  microBatches: readonly Batch[],
  options: StepOptions,
): Promise<StepResult> {
  registerGradients();
  const names = [...state.trainable];
  const xs = names.map((n) => state.params.get(n)!);
  const total = microBatches.reduce((sum, b) => sum + validTargets(b), 0);
  const scale = total === 0 ? 0 : 1 / total;
  const lossOptions: LossOptions = {
    ...(options.lossChunk === undefined ? {} : { chunk: options.lossChunk }),
    headTrains: state.trainable.has(state.shape.tiedEmbeddings ? EMBED : LM_HEAD),
  };
  // Each micro-batch's gradients are added into the running sums as they are computed.
  const sums: GradientSums = new Map();
  let lossTotal: tf.Scalar = tf.scalar(0);
  for (const mb of microBatches) {
    const value = options.recompute === "layers"
      ? recomputedMicroBatch(state, mb, { scale, sums, loss: lossOptions })
      : tapedMicroBatch(state, mb, { scale, sums, loss: lossOptions });
    const prevLoss = lossTotal;
    lossTotal = tf.add(prevLoss, value);
    prevLoss.dispose();
    value.dispose();
  }
  const gs = names.map((n, i) => sums.get(n) ?? tf.zerosLike(xs[i]!));
  const normT = globalNorm(gs);
  const [gradNorm, loss] = [(await normT.data())[0]!, (await lossTotal.data())[0]!];
  normT.dispose();
  lossTotal.dispose();
  const accounted = accountedBytes(state, new Map(names.map((n, i) => [n, gs[i]!])));
  if (!Number.isFinite(gradNorm) || !Number.isFinite(loss)) {
    gs.forEach((g) => g.dispose());
    return {
      state,
      loss,
      gradNorm,
      tokens: total,
      accounted,
      skipped: true,
      projectorUpdates: 0,
      svdFailures: 0,
    };
  }

  const step = state.adam.step + 1;
  const gradScale = clipFactor(gradNorm, options.clip ?? 1.0);
  const params = new Map(state.params);
  const m = new Map<string, tf.Tensor>();
  const v = new Map<string, tf.Tensor>();
  const galore = state.galore;
  const projectors = new Map(galore?.projectors ?? []);
  let projectorUpdates = 0;
  let svdFailures = 0;
  for (const [i, name] of names.entries()) {
    const old = {
      param: xs[i]!,
      grad: gs[i]!,
      m: state.adam.m.get(name)!,
      v: state.adam.v.get(name)!,
    };
    if (galore?.targets.has(name)) {
      if (refreshesAt(galore.config, state.adam.step)) {
        const fresh = await computeProjector(old.grad, galore.config.rank, options.galoreSvd);
        if (fresh === undefined) svdFailures++;
        else {
          projectors.get(name)?.dispose();
          projectors.set(name, fresh);
          projectorUpdates++;
        }
      }
      const projector = projectors.get(name);
      if (projector === undefined) {
        // No projector yet: this weight and its moments wait for the next refresh.
        params.set(name, old.param);
        m.set(name, old.m);
        v.set(name, old.v);
        old.grad.dispose();
        continue;
      }
      const r = galoreUpdate({ ...old, projector }, galore.sides.get(name)!, {
        ...options,
        step,
        gradScale,
        scale: galore.config.scale,
      });
      params.set(name, r.param);
      m.set(name, r.m);
      v.set(name, r.v);
    } else {
      // `old` is disposed just below, so the update may reuse its buffers.
      const r = adamwUpdate(old, { ...options, step, gradScale, consumeInputs: true });
      params.set(name, r.param);
      m.set(name, r.m);
      v.set(name, r.v);
    }
    for (const t of Object.values(old)) t.dispose();
    releaseDisposedGpuBuffers();
  }
  const next: GaloreState | undefined = galore === undefined
    ? undefined
    : { ...galore, projectors };
  return {
    state: {
      ...state,
      params,
      adam: { step, m, v },
      ...(next === undefined ? {} : { galore: next }),
    },
    loss,
    gradNorm,
    tokens: total,
    accounted,
    skipped: false,
    projectorUpdates,
    svdFailures,
  };
}

/** One micro-batch under one tape over the whole model; gradients added into `sums`. */
function tapedMicroBatch(
  state: TrainState,
  mb: Batch,
  run: { readonly scale: number; readonly sums: GradientSums; readonly loss: LossOptions },
): tf.Scalar {
  const scaledLoss = (): tf.Scalar =>
    tf.tidy(() => tf.mul(lossSum(state, mb, run.loss), run.scale) as tf.Scalar);
  // With nothing to train (every weight frozen) there is no tape to record.
  if (state.trainable.size === 0) return scaledLoss();
  return backwardInto(state, {
    f: scaledLoss,
    input: undefined,
    names: [...state.trainable],
  }, run.sums).value;
}

/**
 * Mean cross-entropy over all valid targets of `batches`, without gradients.
 *
 * @example
 * ```ts
 * import { evalLoss } from "./train_step.ts";
 * import { initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 2, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const b = { tokens: new Int32Array([1, 2]), targets: new Int32Array([2, 3]), batch: 1, seq: 2 };
 * console.log(await evalLoss(model, [b])); // about log 11
 * ```
 */
export async function evalLoss(model: Model, batches: readonly Batch[]): Promise<number> {
  let total = 0;
  let sum = 0;
  for (const b of batches) {
    const l = lossSum(model, b);
    sum += (await l.data())[0]!;
    l.dispose();
    total += validTargets(b);
  }
  return sum / total;
}
