/**
 * What a fine-tuning run saves beside its weights in `checkpoint/state.json` (the `progress`
 * field): the settings it was started with, so `--resume` continues only the same run, and how
 * far it got, so the resumed run repeats the uninterrupted one step for step.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import {
  type ConfigInvalid,
  type ContentInvalid,
  contentInvalid,
  reportErrors,
} from "../base/mod.ts";
import { type FinetuneRecord, FinetuneRecordCodec, resumeProblem } from "../pipeline/mod.ts";

/** The settings that fix a run's steps. */
export type FinetuneSettingsRecord = FinetuneRecord;

/** Response loss summed over an epoch's steps (weighted by response tokens). */
const EpochLossCodec = t.readonly(t.type({ lossSum: t.number, tokens: t.number }));

/** A fine-tuning run's progress. */
export const FinetuneProgressCodec = t.readonly(t.type({
  version: t.literal(1),
  kind: t.literal("finetune"),
  settings: FinetuneRecordCodec,
  /** Optimizer steps done. */
  step: t.number,
  /** Metrics records written so far (a resumed run truncates the log to this). */
  metrics: t.number,
  /** Response tokens trained on so far. */
  responseTokens: t.number,
  skippedInARow: t.number,
  firstLoss: t.union([t.number, t.null]),
  lastLoss: t.union([t.number, t.null]),
  /** Held-out response loss of the base model (null without held-out examples). */
  heldOutBefore: t.union([t.number, t.null]),
  epochs: t.readonlyArray(EpochLossCodec),
}));
/** A fine-tuning run's progress. */
export type FinetuneProgress = t.TypeOf<typeof FinetuneProgressCodec>;

/** The progress before the first step. */
export function startProgress(
  settings: FinetuneSettingsRecord,
  heldOutBefore: number | null,
): FinetuneProgress {
  return {
    version: 1,
    kind: "finetune",
    settings,
    step: 0,
    metrics: 0,
    responseTokens: 0,
    skippedInARow: 0,
    firstLoss: null,
    lastLoss: null,
    heldOutBefore,
    epochs: [],
  };
}

/**
 * Decodes a checkpoint's progress and checks that it belongs to a run with `settings`; a
 * difference names the setting and both values.
 */
export function resumedProgress(
  u: unknown,
  settings: FinetuneSettingsRecord,
  where: string,
): E.Either<ContentInvalid | ConfigInvalid, FinetuneProgress> {
  const decoded = FinetuneProgressCodec.decode(u);
  if (E.isLeft(decoded)) {
    return E.left(contentInvalid(
      where,
      `not a fine-tuning checkpoint: progress.${reportErrors(decoded.left).join("; progress.")}`,
    ));
  }
  const p = decoded.right;
  const changed = resumeProblem(p.settings, settings);
  if (changed !== undefined) return E.left(changed);
  return E.right(p);
}
