/**
 * A `metrics.jsonl` record as the scalars TensorBoard plots: one tag per number the record
 * holds, at the record's step, so the event files and the log say the same thing.
 *
 * @module
 */
import type { MetricRecord } from "./metrics_records.ts";

/** One scalar of a record: its tag and its value. */
export interface MetricScalar {
  /** `<type>/<field>`, `<type>/<set>/<field>` for a record of another corpus (see {@link metricScalars}). */
  readonly tag: string;
  /** The record's number (a boolean as 1 or 0). */
  readonly value: number;
}

/** A record's scalars at its step. */
export interface MetricScalars {
  /** A pre-training record's `globalStep`; a fine-tuning record's `step`. */
  readonly step: number;
  /** The record's numbers, in its fields' order. */
  readonly values: readonly MetricScalar[];
}

/** Fields that name or place a record rather than measure it. */
const LABELS: ReadonlySet<string> = new Set(["type", "set", "globalStep"]);

function collect(prefix: string, value: unknown, out: MetricScalar[]): void {
  if (typeof value === "number") out.push({ tag: prefix, value });
  else if (typeof value === "boolean") out.push({ tag: prefix, value: value ? 1 : 0 });
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) collect(`${prefix}/${k}`, v, out);
  }
  // Strings (node ids, `predictedPeakAt`, `when`) and nulls (a loss that was not finite, a
  // figure the OS does not tell) are not plotted.
}

/**
 * The scalars of `record` at its step. Every number of the record but its step is one: the
 * tag is the record's `type`, then its `set` when it has one (an evaluation of another corpus,
 * fine-tuning's `held-out`), then the field's name, with `/` into a nested object
 * (`stage/accountedState/optimizer`); `true` is 1, `false` 0; strings and nulls are left out. A
 * pre-training record's step is its `globalStep` (its own `step`, the step within the node, is
 * then one of its scalars); a fine-tuning record's is its `step`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { metricScalars } from "./metric_scalars.ts";
 * const r = metricScalars({ type: "eval", node: "s1", set: "wiki", valLoss: 3, perplexity: 20, globalStep: 12 });
 * assert.deepEqual(r, { step: 12, values: [
 *   { tag: "eval/wiki/valLoss", value: 3 }, { tag: "eval/wiki/perplexity", value: 20 },
 * ] });
 * ```
 */
export function metricScalars(record: MetricRecord): MetricScalars {
  const pretraining = "globalStep" in record;
  const step = pretraining ? record.globalStep : record.step;
  const prefix = "set" in record && record.set !== undefined
    ? `${record.type}/${record.set}`
    : record.type;
  const values: MetricScalar[] = [];
  for (const [k, v] of Object.entries(record)) {
    if (LABELS.has(k) || (!pretraining && k === "step")) continue;
    collect(`${prefix}/${k}`, v, values);
  }
  return { step, values };
}
