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
  configInvalid,
  type ContentInvalid,
  contentInvalid,
  reportErrors,
} from "../base/mod.ts";

/** The settings that fix a run's steps: a resumed run must be given the same ones. */
export const FinetuneSettingsCodec = t.readonly(t.type({
  /** The base checkpoint's real path. */
  base: t.string,
  /** FNV-1a of the records used (after `--limit`), so an edited data file is noticed. */
  dataHash: t.string,
  records: t.number,
  limit: t.union([t.number, t.null]),
  heldOut: t.number,
  epochs: t.number,
  batch: t.number,
  microBatch: t.number,
  lr: t.number,
  warmup: t.number,
  seed: t.number,
  weightDecay: t.number,
  beta1: t.number,
  beta2: t.number,
  eps: t.number,
  clip: t.number,
}));
/** The settings that fix a run's steps. */
export type FinetuneSettingsRecord = t.TypeOf<typeof FinetuneSettingsCodec>;

/** The command-line spelling of each setting, for the message that names a difference. */
const FLAG: Readonly<Record<keyof FinetuneSettingsRecord, string>> = {
  base: "CHECKPOINT",
  dataHash: "the records of --data",
  records: "the record count of --data",
  limit: "--limit",
  heldOut: "--eval-examples",
  epochs: "--epochs",
  batch: "--batch",
  microBatch: "--micro-batch",
  lr: "--lr",
  warmup: "--warmup",
  seed: "--seed",
  weightDecay: "--weight-decay",
  beta1: "beta1",
  beta2: "beta2",
  eps: "eps",
  clip: "clip",
};

/** Response loss summed over an epoch's steps (weighted by response tokens). */
const EpochLossCodec = t.readonly(t.type({ lossSum: t.number, tokens: t.number }));

/** A fine-tuning run's progress. */
export const FinetuneProgressCodec = t.readonly(t.type({
  version: t.literal(1),
  kind: t.literal("finetune"),
  settings: FinetuneSettingsCodec,
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
  for (const key of Object.keys(FLAG) as (keyof FinetuneSettingsRecord)[]) {
    const was = p.settings[key];
    const now = settings[key];
    if (was !== now) {
      return E.left(configInvalid(
        "--resume",
        `the checkpoint was written with ${FLAG[key]} ${JSON.stringify(was)}, this command ` +
          `gives ${JSON.stringify(now)}: repeat the original command with --resume, or use ` +
          "--force or another --out to start over",
      ));
    }
  }
  return E.right(p);
}
