/**
 * Whether a run or a comparison is running, finished, failed or stopped, read from what its
 * folder already records: a live process holding the folder's lock is running; a `report.json`
 * (written last) is finished; a run whose last logged step was skipped for a non-finite loss
 * or gradient failed (the run stops when `maxSkippedSteps` in a row are); anything else ended
 * before its report, which is stopped. Nothing records other failures (an engine error, a
 * full disk) apart from a stop, so they show as stopped.
 *
 * @module
 */
import { exists, RUN_DIR } from "../checkpoint/mod.ts";
import { decodeWith } from "../base/mod.ts";
import { RunMetricCodec } from "../pipeline/mod.ts";
import { LOCK_FILE, lockHolder } from "../store/mod.ts";
import { readBytesFrom } from "./file_bytes.ts";

/** The four states of a run or comparison. */
export type RunStatus = "running" | "finished" | "failed" | "stopped";

/** A status and the evidence it was read from, in words. */
export interface StatusView {
  readonly status: RunStatus;
  readonly detail: string;
}

// Enough of the log's end to hold its last `train` record, however long the run.
const TAIL_BYTES = 64 * 1024;

/** Whether the last `train` record of a `metrics.jsonl` is a skipped step (false without one). */
export async function lastStepSkipped(metrics: string): Promise<boolean> {
  const bytes = await readBytesFrom(metrics, -TAIL_BYTES).catch(() => undefined);
  if (bytes === undefined || bytes === "truncated") return false;
  for (const line of new TextDecoder().decode(bytes).split("\n").reverse()) {
    let u: unknown;
    try {
      u = JSON.parse(line);
    } catch {
      continue;
    }
    const r = decodeWith(RunMetricCodec, u);
    if (r._tag === "Right" && r.right.type === "train") return r.right.skipped === true;
  }
  return false;
}

/**
 * Whether the pid a lock file recorded is certainly dead: Linux's /proc says so without
 * touching the lock. Probing the lock takes it for an instant, which a run starting right then
 * would find held; this leaves the probe to the case where the recorded process lives.
 */
async function recordedHolderDead(dir: string): Promise<boolean> {
  const pid = (await Deno.readTextFile(`${dir}/${LOCK_FILE}`).catch(() => "")).trim();
  if (!/^\d+$/.test(pid) || !(await exists("/proc/self"))) return false;
  return !(await exists(`/proc/${pid}`));
}

async function holder(dir: string): Promise<StatusView | undefined> {
  if (await recordedHolderDead(dir)) return undefined;
  const h = await lockHolder(dir);
  if (h === undefined) return undefined;
  return {
    status: "running",
    detail: h.pid === undefined ? "a live process holds its lock" : `pid ${h.pid} holds its lock`,
  };
}

/**
 * A run directory's status.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runStatus } from "./run_status.ts";
 * const dir = await Deno.makeTempDir();
 * assert.equal((await runStatus(dir)).status, "stopped");
 * await Deno.writeTextFile(`${dir}/report.json`, "{}");
 * assert.equal((await runStatus(dir)).status, "finished");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runStatus(dir: string): Promise<StatusView> {
  const live = await holder(dir);
  if (live !== undefined) return live;
  if (await exists(`${dir}/${RUN_DIR.report}`)) {
    return { status: "finished", detail: "its report.json is written" };
  }
  if (await lastStepSkipped(`${dir}/${RUN_DIR.metrics}`)) {
    return {
      status: "failed",
      detail: "its last step was skipped (loss or gradient not finite): the run stops when " +
        "training.maxSkippedSteps steps in a row are",
    };
  }
  const resumable = await exists(`${dir}/${RUN_DIR.checkpoint}`);
  return {
    status: "stopped",
    detail: "no process holds its lock and it has no report.json; " +
      (resumable
        ? "`deno task run … --out DIR --resume` continues it from its checkpoint"
        : "it wrote no checkpoint"),
  };
}

/** A comparison folder's status: its lock, then its `report.json`. */
export async function comparisonStatus(dir: string): Promise<StatusView> {
  const live = await holder(dir);
  if (live !== undefined) return live;
  return await exists(`${dir}/report.json`)
    ? { status: "finished", detail: "its report.json is written" }
    : {
      status: "stopped",
      detail: "no process holds its lock and it has no report.json; the same " +
        "`deno task compare` command goes on where it stopped",
    };
}
