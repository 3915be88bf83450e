/**
 * The plan of an instruction-tuning run, as pure functions of its settings and the step: which
 * examples are held out, which ones each step trains on, how they are padded into micro-batches,
 * and the learning rate. A resumed run recomputes all of it from the step number alone, so it
 * repeats the uninterrupted run batch for batch.
 *
 * - Held out: the first `heldOut` positions of a permutation of the examples drawn from the
 *   seed; the rest train, in file order before shuffling.
 * - Order: every epoch visits the training examples in its own permutation, drawn from
 *   (seed, epoch). A step takes the next `batch` of them; the epoch's last step takes what is
 *   left, so no example is skipped or repeated within an epoch.
 * - Padding: a micro-batch is as long as its longest example; shorter rows are filled with
 *   end-of-text inputs whose targets are -1, after their real tokens, so causal attention
 *   keeps them out of every counted position.
 * - Warmup is clamped to `steps − 1` in a shorter run, as the pre-training stages do, so the
 *   peak is still reached; the schedule itself is the stage's (`finetune_graph.ts`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  deriveSeed,
  type ext,
  permutation,
} from "../base/mod.ts";
import type { SftExample } from "../data/mod.ts";
import type { MicroBatch } from "./effects.ts";
import type { FinetuneSettings } from "./finetune_settings.ts";

// Stream ids mixed into the run's seed, so the held-out choice and the epoch orders never share
// a random sequence.
const HELD_OUT_STREAM = 1;
const ORDER_STREAM = 2;

/** A checked plan: the split, the run's length and its warmup. */
export interface FinetunePlan {
  /** The settings it was laid out for. */
  readonly settings: FinetuneSettings;
  /** Examples per forward pass (`settings.microBatch`, else the batch). */
  readonly microBatch: number;
  /** Example indices that train (ascending). */
  readonly train: readonly number[];
  /** Example indices held out (ascending). */
  readonly heldOut: readonly number[];
  /** Steps of one pass over the training examples. */
  readonly stepsPerEpoch: number;
  /** Steps of the whole run. */
  readonly steps: number;
  /** Warmup steps after clamping (may be below `settings.warmup`). */
  readonly warmup: number;
}

/**
 * Lays out a run of `settings` on `examples` encoded examples (the dropped ones not counted);
 * refused when the held-out examples leave none to train on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { finetunePlan } from "./finetune_plan.ts";
 * import { decodeFinetune } from "./finetune_settings.ts";
 * const s = decodeFinetune({ evalExamples: 10, microBatch: 4 });
 * const p = s._tag === "Right" ? finetunePlan(s.right, 100) : s;
 * assert(p._tag === "Right" && p.right.stepsPerEpoch === 12 && p.right.steps === 24);
 * assert(p.right.warmup === 23 && p.right.microBatch === 4);
 * ```
 */
export function finetunePlan(
  settings: FinetuneSettings,
  examples: number,
): ext.Either<ConfigInvalid, FinetunePlan> {
  const heldOut = settings.evalExamples ?? Math.min(32, Math.floor(examples / 10));
  if (heldOut >= examples) {
    return E.left(configInvalid(
      "--eval-examples",
      `${heldOut} held out of ${examples} usable examples leaves none to train on`,
    ));
  }
  const shuffled = permutation(examples, deriveSeed(settings.seed, HELD_OUT_STREAM));
  const held = Array.from(shuffled.subarray(0, heldOut)).sort((a, b) => a - b);
  const isHeld = new Set(held);
  const train = Array.from({ length: examples }, (_, i) => i).filter((i) => !isHeld.has(i));
  const stepsPerEpoch = Math.ceil(train.length / settings.batch);
  const steps = stepsPerEpoch * settings.epochs;
  return E.right({
    settings,
    microBatch: settings.microBatch ?? settings.batch,
    train,
    heldOut: held,
    stepsPerEpoch,
    steps,
    warmup: Math.min(settings.warmup, steps - 1),
  });
}

/** The epoch (from 0) step `step` (from 0) belongs to. */
export function epochOf(plan: FinetunePlan, step: number): number {
  return Math.floor(step / plan.stepsPerEpoch);
}

/** What step `step` (0-based) trains on. */
export interface PlannedStep {
  /** The epoch it belongs to, from 0. */
  readonly epoch: number;
  /** Example indices (into the encoded examples), in the epoch's order. */
  readonly examples: readonly number[];
}

/**
 * The epoch and examples of step `step` (0-based, below `plan.steps`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { finetunePlan, plannedStep } from "./finetune_plan.ts";
 * import { decodeFinetune } from "./finetune_settings.ts";
 * const s = decodeFinetune({ evalExamples: 0, batch: 4, seed: 1 });
 * const p = s._tag === "Right" ? finetunePlan(s.right, 10) : s;
 * if (p._tag === "Right") {
 *   const epoch0 = [0, 1, 2].flatMap((k) => plannedStep(p.right, k).examples);
 *   assert(epoch0.toSorted((a, b) => a - b).join() === "0,1,2,3,4,5,6,7,8,9");
 *   assert(plannedStep(p.right, 3).epoch === 1);
 * }
 * ```
 */
export function plannedStep(plan: FinetunePlan, step: number): PlannedStep {
  if (!Number.isSafeInteger(step) || step < 0 || step >= plan.steps) {
    throw new Error(`Step ${step} is outside the plan's ${plan.steps} steps`);
  }
  const epoch = epochOf(plan, step);
  const k = step % plan.stepsPerEpoch;
  const { seed, batch } = plan.settings;
  const order = permutation(plan.train.length, deriveSeed(seed, ORDER_STREAM, epoch));
  const from = k * batch;
  const slice = order.subarray(from, Math.min(from + batch, order.length));
  return { epoch, examples: Array.from(slice, (i) => plan.train[i]!) };
}

/**
 * Pads `examples` into micro-batches of at most `microBatch` rows, each as long as its longest
 * row; padding inputs are `pad` (any valid id) with target -1, and each batch counts them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { padExamples } from "./finetune_plan.ts";
 * const a = { tokens: Int32Array.of(1, 2, 3), targets: Int32Array.of(-1, 3, 4), responseTokens: 2, truncated: false };
 * const b = { tokens: Int32Array.of(5), targets: Int32Array.of(6), responseTokens: 1, truncated: false };
 * const [mb] = padExamples([a, b], { microBatch: 2, pad: 0 });
 * assert(mb!.seq === 3 && mb!.targets.join() === "-1,3,4,6,-1,-1" && mb!.padding === 2);
 * ```
 */
export function padExamples(
  examples: readonly SftExample[],
  options: { readonly microBatch: number; readonly pad: number },
): MicroBatch[] {
  const out: MicroBatch[] = [];
  for (let i = 0; i < examples.length; i += options.microBatch) {
    const rows = examples.slice(i, i + options.microBatch);
    const seq = Math.max(...rows.map((r) => r.tokens.length));
    const tokens = new Int32Array(rows.length * seq).fill(options.pad);
    const targets = new Int32Array(rows.length * seq).fill(-1);
    rows.forEach((r, b) => {
      tokens.set(r.tokens, b * seq);
      targets.set(r.targets, b * seq);
    });
    const used = rows.reduce((n, r) => n + r.tokens.length, 0);
    out.push({ tokens, targets, batch: rows.length, seq, padding: rows.length * seq - used });
  }
  return out;
}

/** Targets the loss counts (the response tokens of instruction data; -1 is never counted). */
export function countedTargets(batches: readonly MicroBatch[]): number {
  let n = 0;
  for (const b of batches) for (const t of b.targets) if (t >= 0) n++;
  return n;
}
