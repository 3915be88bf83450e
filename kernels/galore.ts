/**
 * GaLore (Zhao et al. 2024; spec §5): Adam on a low-rank projection of a matrix's gradient.
 *
 * For a targeted weight W (rows × cols, our [in, out] layout) the projector is the top-r singular
 * vectors of the shorter side of its gradient G, recomputed every `updateEvery` steps: right
 * vectors Q (cols × r) when rows ≥ cols, so R = G·Q and the update returns as N·Qᵀ; left vectors
 * P (rows × r) otherwise, R = Pᵀ·G and P·N. Adam's moments live in R's shape and are kept across
 * projector changes, as the reference implementation does. The SVD is the project's own float64
 * one (solvers/svd.ts), run on the CPU from the gradient's values.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { type ShortSideSvd, type SvdFailed, svdShortSide } from "../solvers/mod.ts";
import {
  adamDirection,
  adamMoments,
  type AdamWResult,
  type AdamWStepOptions,
  decays,
} from "./ops/adamw.ts";
import { adamwScalars, adamwStep } from "./ops/adamw_rule.ts";
import type { Params } from "./params.ts";
import { PLAIN, TRANSPOSED } from "./ops/flags.ts";

/** GaLore's hyper-parameters (spec §4: rank 128, every 200 steps, scale 0.25). */
export interface GaloreConfig {
  /** Projection rank; clamped to min(rows, cols) per matrix. */
  readonly rank: number;
  /** Optimizer steps between projector refreshes. */
  readonly updateEvery: number;
  /** Factor on the projected-back update. */
  readonly scale: number;
}

/** GaLore for {@link createTrainState}: the hyper-parameters and the weight names it projects. */
export interface GaloreOptions extends GaloreConfig {
  /** Trainable 2-D weights to project. */
  readonly targets: readonly string[];
}

/** Which singular vectors project: `right` (cols × r) when rows ≥ cols, else `left` (rows × r). */
export type GaloreSide = "left" | "right";

/** GaLore's part of a training state. */
export interface GaloreState {
  readonly config: GaloreConfig;
  readonly targets: ReadonlySet<string>;
  /** Side of each target (fixed by its shape). */
  readonly sides: ReadonlyMap<string, GaloreSide>;
  /** Projector per target, min(rows, cols) × r; absent until its first decomposition succeeds. */
  readonly projectors: Params;
}

/** The decomposition GaLore calls; injectable so that a test can make it fail. */
export type ProjectorSvd = (
  a: Float64Array,
  rows: number,
  cols: number,
) => E.Either<SvdFailed, ShortSideSvd>;

/** Right vectors for tall or square matrices, left for wide: the shorter side, as the reference. */
export function galoreSide(shape: readonly number[]): GaloreSide {
  return shape[0]! >= shape[1]! ? "right" : "left";
}

/** min(rank, rows, cols). */
export function effectiveRank(shape: readonly number[], rank: number): number {
  return Math.min(rank, shape[0]!, shape[1]!);
}

/** The shape of R, and so of Adam's moments: rows × r (right side) or r × cols (left). */
export function projectedShape(shape: readonly number[], rank: number): [number, number] {
  const r = effectiveRank(shape, rank);
  return galoreSide(shape) === "right" ? [shape[0]!, r] : [r, shape[1]!];
}

/** The projector's shape: min(rows, cols) × r. */
export function projectorShape(shape: readonly number[], rank: number): [number, number] {
  return [Math.min(shape[0]!, shape[1]!), effectiveRank(shape, rank)];
}

/**
 * GaLore's state without projectors, after checking the options against the parameters.
 *
 * @throws {Error} when a hyper-parameter is out of range or a target is not a trainable matrix.
 */
export function galoreState(
  params: Params,
  trainable: ReadonlySet<string>,
  options: GaloreOptions,
): GaloreState {
  const { rank, updateEvery, scale } = options;
  if (!Number.isInteger(rank) || rank < 1) throw new Error(`GaLore rank ${rank} is not ≥ 1`);
  if (!Number.isInteger(updateEvery) || updateEvery < 1) {
    throw new Error(`GaLore updateEvery ${updateEvery} is not a positive integer`);
  }
  if (!Number.isFinite(scale)) throw new Error(`GaLore scale ${scale} is not finite`);
  const sides = new Map<string, GaloreSide>();
  for (const name of options.targets) {
    const p = params.get(name);
    if (p === undefined) throw new Error(`GaLore target "${name}" is not a parameter`);
    if (!trainable.has(name)) throw new Error(`GaLore target "${name}" is not trainable`);
    if (p.rank !== 2) {
      throw new Error(`GaLore target "${name}" has shape [${p.shape}]; only matrices project`);
    }
    sides.set(name, galoreSide(p.shape));
  }
  return {
    config: { rank, updateEvery, scale },
    targets: new Set(options.targets),
    sides,
    projectors: new Map(),
  };
}

/** Whether the step with this 0-based index recomputes the projectors. */
export function refreshesAt(config: GaloreConfig, stepIndex: number): boolean {
  return stepIndex % config.updateEvery === 0;
}

/**
 * The top-r shorter-side singular vectors of `grad` as a float32 tensor the caller owns, or
 * undefined when the decomposition fails or yields a non-finite value: a bad projector must not
 * reach the weights.
 */
export async function computeProjector(
  grad: tf.Tensor,
  rank: number,
  decompose: ProjectorSvd = svdShortSide,
): Promise<tf.Tensor | undefined> {
  const [rows, cols] = grad.shape as [number, number];
  const values = Float64Array.from(await grad.data() as Float32Array);
  const got = decompose(values, rows, cols);
  if (E.isLeft(got)) return undefined;
  const { k, vectors } = got.right;
  const [n, r] = projectorShape(grad.shape, rank);
  if (k !== n || vectors.length !== n * k) return undefined;
  const out = new Float32Array(n * r);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < r; j++) out[i * r + j] = vectors[i * k + j]!;
  }
  if (!out.every(Number.isFinite)) return undefined;
  return tf.tensor2d(out, [n, r], "float32");
}

/** Per-call options of {@link galoreUpdate}. */
export interface GaloreStepOptions extends AdamWStepOptions {
  /** GaLore's factor on the projected-back update. */
  readonly scale: number;
}

/**
 * One GaLore-Adam step of one matrix (the caller owns and disposes the inputs):
 * R = project(gradScale·G); m ← β1 m + (1−β1) R; v ← β2 v + (1−β2) R²;
 * N = m̂ / (√v̂ + ε); W ← W − lr·scale·back(N); then W ← W − lr·wd·W, decay after the update
 * as the reference applies it (matrices only, as AdamW's `decays`).
 */
export function galoreUpdate(
  tensors: {
    readonly param: tf.Tensor;
    readonly grad: tf.Tensor;
    readonly m: tf.Tensor;
    readonly v: tf.Tensor;
    readonly projector: tf.Tensor;
  },
  side: GaloreSide,
  options: GaloreStepOptions,
): AdamWResult {
  // GaLore's scale multiplies the step, not the decay.
  const s = adamwScalars(adamwStep(options, decays(tensors.param)), options.scale);
  const p = tensors.projector;
  // Projected first: every moment-sized temporary is r/min(rows, cols) of the matrix.
  const r = tf.tidy(() => {
    const g = side === "right"
      ? tf.matMul(tensors.grad, p)
      : tf.matMul(p, tensors.grad, TRANSPOSED);
    return s.gradScale === 1 ? g : tf.mul(g, s.gradScale);
  });
  const { m, v } = adamMoments(tensors, r, s);
  r.dispose();
  const direction = adamDirection(m, v, s);
  const param = tf.tidy(() => {
    const back = side === "right"
      ? tf.matMul(direction, p, PLAIN, TRANSPOSED)
      : tf.matMul(p, direction);
    const stepped = tf.sub(tensors.param, tf.mul(back, s.stepSize));
    return s.decay === 1 ? stepped : tf.mul(stepped, s.decay);
  });
  direction.dispose();
  return { param, m, v };
}

/** Disposes the projectors. */
export function disposeGalore(g: GaloreState): void {
  for (const t of g.projectors.values()) t.dispose();
}
