/**
 * What a run carries from node to node: the progress record (plain data,
 * saved with every checkpoint and decoded by its codec when a run resumes)
 * and the engine's model with its counts. Nothing here is mutated: every
 * transition returns a new state.
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
  Count,
  type ext,
  type ReadonlyObjectC,
  reportErrors,
} from "../base/mod.ts";
import { type EngineState, MeasuredPeakCodec } from "./effects.ts";
import { FinetuneRecordCodec } from "./finetune_settings.ts";
import { AccountedStateCodec, StageRecordCodec } from "./metrics_records.ts";
import type { ModelAccount } from "./model_account.ts";

export type { StageRecord } from "./metrics_records.ts";

/** The fields every {@link RunProgressCodec} record has. */
export const RUN_PROGRESS_REQUIRED = {
  /** The record's format. */
  version: t.literal(1),
  /** Fingerprint of the graph; a checkpoint only resumes the graph that wrote it. */
  graphId: t.string,
  /** The node the run is in (its index in the graph's nodes). */
  nodeIndex: Count,
  /** Steps of that node done. */
  stepInNode: Count,
  /** Optimizer steps of the whole run done. */
  globalStep: Count,
  /** Tokens trained on so far. */
  tokens: Count,
  /** Where the data stream stands (the data effect's own record). */
  data: t.UnknownRecord,
  /** Metrics records written so far (a resumed run truncates the log to this). */
  metrics: Count,
  /** The records of the finished stages. */
  stages: t.readonlyArray(StageRecordCodec),
  /**
   * The running stage's largest accounted model state and measured peaks so far (null before
   * its first step); the name is `state.json`'s.
   */
  stagePeak: t.union([
    t.readonly(t.type({ accounted: AccountedStateCodec, measured: MeasuredPeakCodec })),
    t.null,
  ]),
  /** ReLoRA merges in the running stage. */
  merges: Count,
  /** Consecutive steps skipped for a non-finite loss or gradient. */
  skippedInARow: Count,
};
/** The fields a {@link RunProgressCodec} record may have. */
export const RUN_PROGRESS_OPTIONAL = {
  /** Seconds spent so far on the running stage's kept work (its `wallSeconds` in the making). */
  stageSeconds: t.number,
  /**
   * A fine-tuning run's record of what fixes its steps (`finetune_settings.ts`): a resumed
   * command must repeat it, setting by setting, where a graph is matched by `graphId`.
   */
  finetune: FinetuneRecordCodec,
};
/** The interpreter's progress: saved with every checkpoint, decoded when a run resumes. */
export const RunProgressCodec: ReadonlyObjectC<
  typeof RUN_PROGRESS_REQUIRED,
  typeof RUN_PROGRESS_OPTIONAL
> = t.readonly(t.intersection([t.type(RUN_PROGRESS_REQUIRED), t.partial(RUN_PROGRESS_OPTIONAL)]));
/** The interpreter's progress. */
export type RunProgress = ext.TypeOf<typeof RunProgressCodec>;

/** The engine's model: its handle, and its counts by role taken from the snapshot it was loaded from. */
export interface RunModel {
  /** The engine's handle on the model (used once: each step replaces it). */
  readonly handle: EngineState;
  /** Parameter counts and accounted state by role. */
  readonly account: ModelAccount;
}

/** The state threaded through the nodes: progress and the engine's model (none before training). */
export interface RunState {
  /** Where the run stands: saved with every checkpoint. */
  readonly progress: RunProgress;
  /** The engine's model; undefined before the first stage loads one. */
  readonly model: RunModel | undefined;
  /** Global step of the run directory's checkpoint, when one exists. */
  readonly savedAt: number | undefined;
}

/** What a stopped run leaves to resume from, for its error message. */
export function keptCheckpoint(s: RunState): string {
  return s.savedAt === undefined
    ? "no checkpoint was written before it"
    : `the checkpoint of global step ${s.savedAt} is kept`;
}

/** The progress of a run that has not started. */
export function initialProgress(
  graphId: string,
  data: Readonly<Record<string, unknown>>,
): RunProgress {
  return {
    version: 1,
    graphId,
    nodeIndex: 0,
    stepInNode: 0,
    globalStep: 0,
    tokens: 0,
    data,
    metrics: 0,
    stages: [],
    stagePeak: null,
    merges: 0,
    skippedInARow: 0,
    stageSeconds: 0,
  };
}

/**
 * Decodes a checkpoint's progress record for a graph of `nodes` nodes with fingerprint
 * `graphId`; every problem names the field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeProgress, initialProgress } from "./run_state.ts";
 * const ok = decodeProgress(initialProgress("abc", {}), { graphId: "abc", nodes: 3 });
 * assert(ok._tag === "Right");
 * ```
 */
export function decodeProgress(
  u: unknown,
  graph: { readonly graphId: string; readonly nodes: number },
): ext.Either<ContentInvalid | ConfigInvalid, RunProgress> {
  const where = "checkpoint/state.json";
  const decoded = RunProgressCodec.decode(u);
  if (E.isLeft(decoded)) {
    return E.left(
      contentInvalid(where, `progress.${reportErrors(decoded.left).join("; progress.")}`),
    );
  }
  const p = decoded.right;
  if (p.graphId !== graph.graphId) {
    return E.left(configInvalid(
      "--resume",
      `the checkpoint was written by a different stage graph (${p.graphId}, this one is ${graph.graphId}); use another --out directory`,
    ));
  }
  if (p.nodeIndex > graph.nodes) {
    return E.left(
      contentInvalid(
        where,
        `progress.nodeIndex ${p.nodeIndex} is past the graph's ${graph.nodes} nodes`,
      ),
    );
  }
  return E.right(p);
}
