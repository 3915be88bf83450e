/**
 * A run's TensorBoard event files, written beside `metrics.jsonl`: each record the log writes is
 * appended at once as one event holding its scalars (`metricScalars`: the same tags, steps and
 * values, as 32-bit floats), plus `train/tokensPerSecond`, measured here between two train
 * records of one session (the only tag `metrics.jsonl` does not have).
 *
 * Each session of a run writes its own file, `events.out.tfevents.<seconds>.<host>`, named one
 * second after any file already in the folder so TensorBoard reads the sessions in order. A
 * resumed session begins its file with `SessionLog.START` at the first step it writes again:
 * TensorBoard drops what the killed session logged from that step on, so the curves go on as
 * one, as `metrics.jsonl` does after its truncation.
 *
 * The event files are a side output: a write that fails is reported once, as a warning, and the
 * run goes on without them (`metrics.jsonl` holds every record).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { decodeWith, describeUnknown } from "../base/mod.ts";
import {
  FinetuneMetricCodec,
  type MetricRecord,
  metricScalars,
  RunMetricCodec,
} from "../pipeline/mod.ts";
import {
  type Event,
  eventRecords,
  EVENTS_FILE_VERSION,
  eventsFileName,
  eventsFileSeconds,
  type ScalarValue,
} from "../store/mod.ts";

/** The tag of the throughput measured between two train records (input tokens per second). */
export const TOKENS_PER_SECOND_TAG = "train/tokensPerSecond";

/** Options of {@link tensorboardLog}. */
export interface TensorboardLogOptions {
  /** Where the one warning goes when a write fails. */
  readonly print: (line: string) => void;
  /** Milliseconds since the Unix epoch (default `Date.now`): events' wall times, files' names. */
  readonly now?: () => number;
  /** The host in the file's name (default: this machine's name). */
  readonly host?: string;
}

/** The event files of one session of a run. */
export interface TensorboardLog {
  /** Appends the record's scalars as one event (the session's file is begun by the first). */
  record(record: MetricRecord): void;
  /**
   * A resumed session: `kept` are the `metrics.jsonl` lines the checkpoint counted, `dropped`
   * the ones after them that the session will write again. Begins the session's file with
   * `SessionLog.START` at the first dropped record's step (after the last kept one when none
   * is dropped) and writes again the kept records at that step or later, which the start
   * discards too.
   */
  resumed(kept: readonly string[], dropped: readonly string[]): void;
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

/** A `metrics.jsonl` line as a record, or undefined when it is not one (a torn last line). */
function recordOf(line: string): MetricRecord | undefined {
  let u: unknown;
  try {
    u = JSON.parse(line);
  } catch {
    return undefined;
  }
  const run = decodeWith(RunMetricCodec, u);
  if (E.isRight(run)) return run.right;
  const finetune = decodeWith(FinetuneMetricCodec, u);
  return E.isRight(finetune) ? finetune.right : undefined;
}

/** The records among `lines` (a line that is not one is left out). */
function recordsOf(lines: readonly string[]): MetricRecord[] {
  return lines.flatMap((l) => {
    const r = recordOf(l);
    return r === undefined ? [] : [r];
  });
}

/**
 * The event files of a session of the run whose folder for them is `folder` (made on the first
 * write). Nothing is written before the first record, or before `resumed`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensorboardLog } from "./tensorboard_log.ts";
 * const dir = await Deno.makeTempDir();
 * const log = tensorboardLog(`${dir}/tensorboard`, { print: console.log, host: "box", now: () => 1.7e12 });
 * log.record({ type: "grow", node: "s2.grow", add: 1, layers: 3, globalStep: 12 });
 * assert.deepEqual([...Deno.readDirSync(`${dir}/tensorboard`)].map((e) => e.name), [
 *   "events.out.tfevents.1700000000.box",
 * ]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function tensorboardLog(folder: string, options: TensorboardLogOptions): TensorboardLog {
  const now = options.now ?? Date.now;
  let file: string | undefined;
  let failed = false;
  let lastTrain: { readonly tokens: number; readonly at: number } | undefined;

  /** The session's file, begun with its `file_version` event: after every file in the folder. */
  function begin(): string {
    Deno.mkdirSync(folder, { recursive: true });
    let latest = -1;
    for (const e of Deno.readDirSync(folder)) {
      latest = Math.max(latest, eventsFileSeconds(e.name) ?? -1);
    }
    const seconds = Math.max(Math.floor(now() / 1000), latest + 1);
    const path = `${folder}/${eventsFileName(seconds, options.host ?? hostName())}`;
    const head: Event = {
      wallTime: now() / 1000,
      step: 0,
      payload: { kind: "fileVersion", version: EVENTS_FILE_VERSION },
    };
    Deno.writeFileSync(path, eventRecords([head]), { createNew: true });
    return path;
  }

  function write(events: readonly Event[]): void {
    if (failed) return;
    try {
      file ??= begin();
      Deno.writeFileSync(file, eventRecords(events), { append: true });
    } catch (e) {
      failed = true;
      options.print(
        `Warning: TensorBoard events are not written from here on (${file ?? folder}: ${
          describeUnknown(e)
        }); the run goes on, and metrics.jsonl has every record`,
      );
    }
  }

  function scalarsEvent(record: MetricRecord, extra: readonly ScalarValue[] = []): Event {
    const s = metricScalars(record);
    return {
      wallTime: now() / 1000,
      step: s.step,
      payload: { kind: "scalars", values: [...s.values, ...extra] },
    };
  }

  return {
    record(record) {
      const extra: ScalarValue[] = [];
      if (record.type === "train" && "tokens" in record) {
        const at = now();
        if (lastTrain !== undefined && at > lastTrain.at) {
          const value = (record.tokens - lastTrain.tokens) / ((at - lastTrain.at) / 1000);
          extra.push({ tag: TOKENS_PER_SECOND_TAG, value });
        }
        lastTrain = { tokens: record.tokens, at };
      }
      write([scalarsEvent(record, extra)]);
    },
    resumed(keptLines, droppedLines) {
      const kept = recordsOf(keptLines);
      const keptSteps = kept.map((r) => metricScalars(r).step);
      const dropped = recordsOf(droppedLines).map((r) => metricScalars(r).step);
      // A long run has more records than a spread may pass as arguments: reduce, not min(...).
      const from = dropped.length > 0
        ? dropped.reduce((a, b) => Math.min(a, b))
        : keptSteps.reduce((a, b) => Math.max(a, b), -1) + 1;
      write([
        { wallTime: now() / 1000, step: from, payload: { kind: "sessionStart" } },
        ...kept.filter((_, i) => keptSteps[i]! >= from).map((r) => scalarsEvent(r)),
      ]);
    },
  };
}
