/**
 * The settings of `deno task finetune`, each declared once (`base/section.ts`): its name, codec,
 * default and doc. The settings type is the codec's, and decoding (or `withDefaults`) is the one
 * place defaults are applied. They default to the paper's fine-tuning settings (AdamW β =
 * 0.9/0.95, peak LR 1e-4, cosine to 0 with 100 warmup steps, 2 epochs) and the rest to Stanford
 * Alpaca's (weight decay 0, gradient clip 1.0); the batch of 8 is this project's choice for a CPU
 * (Alpaca's global batch of 128 is a GPU cluster's).
 *
 * Also the record a run keeps of what fixes its steps, so `--resume` continues only the same run
 * and a difference is named by its flag.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import {
  type ConfigInvalid,
  configInvalid,
  decodeWith,
  type ext,
  field,
  type FieldCodecs,
  fieldCodecs,
  Fraction,
  NonNegativeInt,
  ON_BY_DEFAULT,
  optional,
  PositiveInt,
  PositiveNumber,
  type Section,
  section,
  withDefaults,
} from "../base/mod.ts";

/** The fields of {@link FinetuneCodec}, each with its codec, default and flag's meaning. */
export const FINETUNE_FIELDS = {
  /** Passes over the training examples. */
  epochs: field(PositiveInt, 2),
  /** Examples per optimizer step. */
  batch: field(PositiveInt, 8),
  /** Examples per forward pass; a step accumulates its micro-batches' gradients (unset: the batch). */
  microBatch: optional(PositiveInt),
  /** Peak learning rate of the cosine schedule, which decays to 0. */
  lr: field(PositiveNumber, 1e-4),
  /** Linear warmup steps (clamped to the run's length − 1). */
  warmup: field(NonNegativeInt, 100),
  /** The held-out choice and the example order. */
  seed: field(NonNegativeInt, 0),
  /** AdamW's decoupled weight decay (Alpaca's 0). */
  weightDecay: field(t.number, 0),
  /** AdamW's first-moment decay β1. */
  beta1: field(Fraction, 0.9),
  /** AdamW's second-moment decay β2. */
  beta2: field(Fraction, 0.95),
  /** AdamW's ε, added to √v̂. */
  eps: field(PositiveNumber, 1e-8),
  /** Global gradient-norm clip. */
  clip: field(PositiveNumber, 1.0),
  /** Use only the first `limit` records of the file. */
  limit: optional(PositiveInt),
  /**
   * Records held out to measure the response loss on before and after (unset: a tenth of the
   * usable records, at most 32).
   */
  evalExamples: optional(NonNegativeInt),
  /** Steps between checkpoints. */
  checkpointEvery: field(PositiveInt, 100),
  /** Steps between progress lines. */
  logEvery: field(PositiveInt, 10),
  /** Steps in a row with a non-finite loss or gradient (skipped, weights unchanged) that stop the run. */
  maxSkippedSteps: field(PositiveInt, 3),
  /** Whether the metrics are also written as TensorBoard event files (`--no-tensorboard`: not). */
  tensorboard: ON_BY_DEFAULT,
};
/** The `finetune` command's settings (see the module doc for where the defaults come from). */
export const FinetuneCodec: Section<typeof FINETUNE_FIELDS> = section("finetune", FINETUNE_FIELDS);
/** A fine-tuning run's settings. */
export type FinetuneSettings = ext.TypeOf<typeof FinetuneCodec>;

/** Every setting at its default. */
export const FINETUNE_DEFAULTS: FinetuneSettings = withDefaults(FinetuneCodec, {});

/** The inputs a {@link FinetuneRecordCodec} record names. */
export const FINETUNE_RECORD_INPUTS = {
  /** The base checkpoint's real path. */
  base: t.string,
  /** FNV-1a of the records used, as hex. */
  dataHash: t.string,
  /** Records used (after `--limit`). */
  records: t.number,
  /** `--limit`, or null without one. */
  limit: t.union([t.number, t.null]),
  /** Examples held out (`evalExamples` resolved). */
  heldOut: t.number,
};
/** The settings a {@link FinetuneRecordCodec} record holds: those the run's steps depend on. */
export const FINETUNE_RECORD_SETTINGS: FieldCodecs<
  typeof FINETUNE_FIELDS,
  "limit" | "evalExamples" | "checkpointEvery" | "logEvery" | "maxSkippedSteps" | "tensorboard"
> = fieldCodecs(FinetuneCodec, [
  "limit",
  "evalExamples",
  "checkpointEvery",
  "logEvery",
  "maxSkippedSteps",
  "tensorboard",
]);
/**
 * What fixes a run's steps, kept in its checkpoints: the inputs (the base's real path, the
 * records used and their FNV-1a, so an edited data file is noticed), the examples held out, and
 * the settings the steps depend on. How often the run logs and checkpoints (and whether it writes
 * TensorBoard events) may change between sessions; these may not.
 */
export const FinetuneRecordCodec: ext.ReadonlyC<
  ext.TypeC<typeof FINETUNE_RECORD_INPUTS & typeof FINETUNE_RECORD_SETTINGS>
> = t.readonly(t.type({ ...FINETUNE_RECORD_INPUTS, ...FINETUNE_RECORD_SETTINGS }));
/** What fixes a fine-tuning run's steps. */
export type FinetuneRecord = ext.TypeOf<typeof FinetuneRecordCodec>;

/** The inputs a {@link finetuneRecord} names beside the settings. */
export interface FinetuneInputs {
  /** The base checkpoint's real path. */
  readonly base: string;
  /** FNV-1a of the records used, as hex. */
  readonly dataHash: string;
  /** Records used (after `--limit`). */
  readonly records: number;
  /** Examples held out (`evalExamples` resolved). */
  readonly heldOut: number;
  /** Examples per forward pass (`microBatch` resolved). */
  readonly microBatch: number;
}

/**
 * The record of a run of `settings` on `inputs` (whose `microBatch` is the resolved one), its
 * fields in the codec's order, which `report.json` shows.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FINETUNE_DEFAULTS, finetuneRecord } from "./finetune_settings.ts";
 * const r = finetuneRecord(FINETUNE_DEFAULTS, {
 *   base: "/b", dataHash: "00000000", records: 10, heldOut: 1, microBatch: 8,
 * });
 * assert(r.limit === null && r.microBatch === 8 && !("logEvery" in r));
 * ```
 */
export function finetuneRecord(settings: FinetuneSettings, inputs: FinetuneInputs): FinetuneRecord {
  const values: Readonly<Record<string, unknown>> = {
    ...settings,
    ...inputs,
    limit: settings.limit ?? null,
  };
  // The codec's fields, in its order: what is recorded is declared once, there.
  return Object.fromEntries(
    Object.keys(FinetuneRecordCodec.type.props).map((key) => [key, values[key]]),
  ) as FinetuneRecord;
}

/** How the command spells a record field that is not `--` plus its name in kebab case. */
const SPELLING: Partial<Record<keyof FinetuneRecord, string>> = {
  base: "CHECKPOINT",
  dataHash: "the records of --data",
  records: "the record count of --data",
  heldOut: "--eval-examples",
  beta1: "beta1",
  beta2: "beta2",
  eps: "eps",
  clip: "clip",
};

function spelling(key: keyof FinetuneRecord): string {
  return SPELLING[key] ?? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * The first field where the record a checkpoint was written with differs from this command's,
 * as the refusal of `--resume`, naming the flag and both values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FINETUNE_DEFAULTS, finetuneRecord, resumeProblem } from "./finetune_settings.ts";
 * const inputs = { base: "/b", dataHash: "0", records: 10, heldOut: 1, microBatch: 8 };
 * const was = finetuneRecord(FINETUNE_DEFAULTS, inputs);
 * const now = finetuneRecord(FINETUNE_DEFAULTS, { ...inputs, microBatch: 4 });
 * assert(resumeProblem(was, was) === undefined);
 * assert(resumeProblem(was, now)?.message.startsWith("the checkpoint was written with --micro-batch 8"));
 * ```
 */
export function resumeProblem(
  was: FinetuneRecord,
  now: FinetuneRecord,
): ConfigInvalid | undefined {
  for (const key of Object.keys(FinetuneRecordCodec.type.props) as (keyof FinetuneRecord)[]) {
    if (was[key] === now[key]) continue;
    return configInvalid(
      "--resume",
      `the checkpoint was written with ${spelling(key)} ${JSON.stringify(was[key])}, this ` +
        `command gives ${JSON.stringify(now[key])}: repeat the original command with --resume, ` +
        "or use --force or another --out to start over",
    );
  }
  return undefined;
}

/**
 * Decodes settings (the command line's flags as a document), every default applied; a refusal
 * names the field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFinetune } from "./finetune_settings.ts";
 * const s = decodeFinetune({ epochs: 3 });
 * assert(s._tag === "Right" && s.right.epochs === 3 && s.right.lr === 1e-4);
 * assert(decodeFinetune({ epochs: 0 })._tag === "Left");
 * ```
 */
export function decodeFinetune(u: unknown): ext.Either<ConfigInvalid, FinetuneSettings> {
  return E.mapLeft((lines: string[]) => configInvalid("finetune settings", lines.join("; ")))(
    decodeWith(FinetuneCodec, u),
  );
}
