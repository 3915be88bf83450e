/**
 * The hyper-parameters of one optimizer step: one value, built from the training settings by
 * {@link stepHyper} and handed unchanged to the engine — the tfjs kernel's options, the torch
 * protocol's `step` command and the trainer read the same fields by the same names.
 *
 * @module
 */
import * as t from "io-ts";
import { Count, type ext, type ReadonlyObjectC } from "../base/mod.ts";

/** The fields every {@link StepHyperCodec} value has. */
export const STEP_HYPER_REQUIRED = {
  /** This step's learning rate: the schedule's value at the step. */
  lr: t.number,
  /** AdamW's first-moment decay β1. */
  beta1: t.number,
  /** AdamW's second-moment decay β2. */
  beta2: t.number,
  /** AdamW's ε, added to √v̂. */
  eps: t.number,
  /** Decoupled weight decay, applied to matrices only. */
  weightDecay: t.number,
  /** Global gradient-norm bound. */
  clip: t.number,
  /** `layers`: recompute each layer in the backward pass instead of keeping its activations. */
  recompute: t.keyof({ none: null, layers: null }),
};
/** The field a {@link StepHyperCodec} value may have. */
export const STEP_HYPER_OPTIONAL = {
  /** Tokens per chunk of the LM head and cross-entropy (unset: all at once). */
  lossChunk: Count,
};

/**
 * One step's hyper-parameters. The numbers are plain (not branded): the settings they come from
 * were checked when decoded, and the torch trainer checks them again on arrival against the
 * schema derived from this codec (`effects/torch_protocol.ts`).
 */
export const StepHyperCodec: ReadonlyObjectC<
  typeof STEP_HYPER_REQUIRED,
  typeof STEP_HYPER_OPTIONAL
> = t.readonly(t.intersection([t.type(STEP_HYPER_REQUIRED), t.partial(STEP_HYPER_OPTIONAL)]));
/** Optimizer hyper-parameters for one step (see {@link StepHyperCodec}). */
export type StepHyper = ext.TypeOf<typeof StepHyperCodec>;

/** What a step reads from the settings: every field of {@link StepHyper} but the LR. */
export type StepSettings = Omit<StepHyper, "lr">;

/**
 * The step's hyper-parameters at learning rate `lr`, from the settings (the `training:`
 * section has every field under the same name).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stepHyper } from "./step_hyper.ts";
 * const settings = {
 *   beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1, recompute: "none" as const,
 * };
 * assert.deepEqual(stepHyper(settings, 3e-4), { ...settings, lr: 3e-4 });
 * ```
 */
export function stepHyper(settings: StepSettings, lr: number): StepHyper {
  const { beta1, beta2, eps, weightDecay, clip, recompute, lossChunk } = settings;
  return {
    lr,
    beta1,
    beta2,
    eps,
    weightDecay,
    clip,
    recompute,
    ...(lossChunk === undefined ? {} : { lossChunk }),
  };
}
