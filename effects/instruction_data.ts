/**
 * The interpreter's `data` effect over instruction examples: Alpaca records encoded with the
 * prompt template and a response-only loss mask (`data/alpaca.ts`: prompt targets are -1),
 * served one optimizer step at a time as the fine-tuning plan lays them out
 * (`pipeline/finetune_plan.ts`), each micro-batch padded to its longest example (padding
 * targets -1 too). The position is the step, so a resumed run draws exactly the batches the
 * uninterrupted one did; the held-out examples are the validation set.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { Count, reportErrors } from "../base/mod.ts";
import type { SftSet, Tokenizer } from "../data/mod.ts";
import {
  type DataEffect,
  type DataPosition,
  type FinetunePlan,
  padExamples,
  plannedStep,
} from "../pipeline/mod.ts";

/** Where the stream stands: the next step of the plan. */
const PositionCodec = t.type({ step: Count });

/**
 * The data effect of a fine-tuning run of `plan` over `set`; padding inputs are the tokeniser's
 * end-of-text. `next(position, count)` gives one step's micro-batches (at most `count`: the
 * epoch's last step may hold fewer examples) and throws a `RangeError` on a position that is not
 * a step of the plan.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { instructionData } from "./instruction_data.ts";
 * import { byteTokenizer, encodeAlpacaSet } from "../data/mod.ts";
 * import { FINETUNE_DEFAULTS, finetunePlan } from "../pipeline/mod.ts";
 * const records = Array.from({ length: 20 }, (_, i) => ({ instruction: `Say ${i}.`, output: `${i}` }));
 * const set = encodeAlpacaSet(records, { tokenizer: byteTokenizer(), maxSeqLen: 256 });
 * const plan = finetunePlan(FINETUNE_DEFAULTS, set.examples.length);
 * if (plan._tag === "Right") {
 *   const data = instructionData(set, plan.right, byteTokenizer());
 *   const first = data.next(data.start, 1);
 *   assert(first.batches.length === 1 && first.batches[0]!.batch === 8);
 *   assert.deepEqual(first.next, { step: 1 });
 *   assert(data.validation(1)[0]!.batch === 2);
 * }
 * ```
 */
export function instructionData(
  set: SftSet,
  plan: FinetunePlan,
  tokenizer: Pick<Tokenizer, "eot" | "vocabSize">,
): DataEffect {
  const padded = (indices: readonly number[]) =>
    padExamples(indices.map((i) => set.examples[i]!), {
      microBatch: plan.microBatch,
      pad: tokenizer.eot,
    });
  const heldOut = padded(plan.heldOut);
  return {
    description: `${plan.train.length} instruction examples to train on, ${plan.heldOut.length} ` +
      "held out",
    vocabSize: tokenizer.vocabSize,
    trainTokens: plan.train.reduce((n, i) => n + set.examples[i]!.tokens.length, 0),
    start: { step: 0 },
    next: (position: DataPosition, count: number) => {
      const decoded = PositionCodec.decode(position);
      if (E.isLeft(decoded)) throw new RangeError(reportErrors(decoded.left).join("; "));
      const { step } = decoded.right;
      if (step >= plan.steps) throw new RangeError(`step ${step} is past the plan's ${plan.steps}`);
      const batches = padded(plannedStep(plan, step).examples);
      if (batches.length > count) {
        throw new RangeError(`step ${step} takes ${batches.length} micro-batches, not ${count}`);
      }
      return { batches, next: { step: step + 1 } };
    },
    validation: (count: number) => heldOut.slice(0, count),
  };
}
