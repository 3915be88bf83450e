/**
 * What a fine-tuning run's `metrics.jsonl` sums up to, for its `report.json`: the records are
 * the run's account (a resumed run's log holds every session's, cut back to its checkpoint and
 * continued), so the report is computed from them rather than carried beside them.
 *
 * @module
 */
import type { FinetuneMetric } from "./metrics_records.ts";

/** The response tokens and losses of a fine-tuning run. */
export interface FinetuneSummary {
  /** Response tokens of the steps that updated the weights. */
  readonly responseTokens: number;
  /** Response loss (nats/token) of the first step that updated the weights. */
  readonly firstLoss: number | null;
  /** Response loss (nats/token) of the last step that updated the weights. */
  readonly lastLoss: number | null;
  /** Mean response loss of each epoch, weighted by the steps' response tokens. */
  readonly epochLoss: readonly number[];
  /** Response loss on the held-out examples before and after (null without held-out ones). */
  readonly heldOut: { readonly before: number; readonly after: number } | null;
}

/**
 * The summary of a run's records, in the order they were written; skipped steps (non-finite
 * loss or gradient, weights unchanged) count nowhere.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { finetuneSummary } from "./finetune_summary.ts";
 * const step = (step: number, loss: number, responseTokens: number) =>
 *   ({ type: "train", step, epoch: 0, loss, lr: 1e-4, gradNorm: 1, responseTokens }) as const;
 * const s = finetuneSummary([step(1, 4, 10), step(2, 2, 30)]);
 * assert(s.responseTokens === 40 && s.firstLoss === 4 && s.lastLoss === 2);
 * assert(s.epochLoss[0] === (4 * 10 + 2 * 30) / 40 && s.heldOut === null);
 * ```
 */
export function finetuneSummary(records: readonly FinetuneMetric[]): FinetuneSummary {
  let responseTokens = 0;
  let firstLoss: number | null = null;
  let lastLoss: number | null = null;
  const epochs: { lossSum: number; tokens: number }[] = [];
  const heldOut = { before: null as number | null, after: null as number | null };
  for (const r of records) {
    if (r.type === "eval") {
      heldOut[r.when] = r.loss;
      continue;
    }
    if (r.skipped === true || r.loss === null) continue;
    responseTokens += r.responseTokens;
    firstLoss ??= r.loss;
    lastLoss = r.loss;
    const e = epochs[r.epoch] ?? { lossSum: 0, tokens: 0 };
    epochs[r.epoch] = {
      lossSum: e.lossSum + r.loss * r.responseTokens,
      tokens: e.tokens + r.responseTokens,
    };
  }
  const { before, after } = heldOut;
  return {
    responseTokens,
    firstLoss,
    lastLoss,
    epochLoss: epochs.map((e) => e.lossSum / Math.max(1, e.tokens)),
    heldOut: before === null || after === null ? null : { before, after },
  };
}
