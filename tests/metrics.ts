/**
 * A run's `metrics.jsonl` as the tests read it: through the same codecs every reader uses, so a
 * record the writer got wrong fails the test that reads it.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { assert } from "./assert.ts";
import { readMetrics } from "../effects/mod.ts";
import {
  decodeMetricLines,
  type FinetuneMetric,
  FinetuneMetricCodec,
  type RunMetric,
} from "../pipeline/mod.ts";

/** The records of a pre-training run directory. */
export async function runMetrics(dir: string): Promise<RunMetric[]> {
  const r = await readMetrics(dir);
  assert(E.isRight(r), E.isLeft(r) ? `${r.left.path}: ${r.left.message}` : "");
  return r.right;
}

/** The records of a fine-tuning run directory. */
export async function finetuneMetrics(dir: string): Promise<FinetuneMetric[]> {
  const path = `${dir}/metrics.jsonl`;
  const r = decodeMetricLines(FinetuneMetricCodec, await Deno.readTextFile(path), path);
  assert(E.isRight(r), E.isLeft(r) ? r.left.message : "");
  return r.right;
}

/** The records of one `type`, typed as such. */
export function ofType<R extends { readonly type: string }, T extends R["type"]>(
  records: readonly R[],
  type: T,
): Extract<R, { readonly type: T }>[] {
  return records.filter((r): r is Extract<R, { readonly type: T }> => r.type === type);
}
