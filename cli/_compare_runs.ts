/**
 * What `deno task compare` reads from a comparison folder's runs before it goes on: the graph
 * each run recorded (against its graph file and the config), a run still held by a process an
 * earlier comparison left behind, and a finished run's report.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { contentInvalid, describeUnknown, ioFailed, type PipelineError } from "../base/mod.ts";
import { exists, readCheckpointState, RUN_DIR } from "../checkpoint/mod.ts";
import {
  type GraphFileState,
  graphFromYaml,
  graphId,
  type RunGraphEvidence,
} from "../pipeline/mod.ts";
import { lockHolder } from "../store/mod.ts";

/** The fingerprint `deno task run` gives the graph in `text` (YAML), or why it has none. */
export function graphFingerprint(text: string, where: string): E.Either<string, string> {
  return E.map(graphId)(graphFromYaml(text, where));
}

async function graphFileState(path: string): Promise<GraphFileState> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { kind: "absent" };
    return { kind: "damaged", reason: `unreadable: ${describeUnknown(e)}` };
  }
  const id = graphFingerprint(text, path);
  return E.isLeft(id) ? { kind: "damaged", reason: id.left } : { kind: "graph", graphId: id.right };
}

/**
 * The graph the run recorded: its `pipeline.yaml` (written when it finished), else its
 * checkpoint's progress. Neither readable: nothing recorded (the run, resumed, says what is
 * wrong with its own checkpoint).
 */
async function recordedGraph(
  runDir: string,
): Promise<{ readonly graphId: string; readonly file: string } | undefined> {
  const pipeline = join(runDir, RUN_DIR.pipeline);
  const text = await Deno.readTextFile(pipeline).catch(() => undefined);
  const fromPipeline = text === undefined ? undefined : graphFingerprint(text, pipeline);
  if (fromPipeline !== undefined && E.isRight(fromPipeline)) {
    return { graphId: fromPipeline.right, file: pipeline };
  }
  const checkpoint = join(runDir, RUN_DIR.checkpoint);
  const state = await readCheckpointState(checkpoint)();
  const id = E.isRight(state) ? state.right.progress.graphId : undefined;
  return typeof id === "string" ? { graphId: id, file: join(checkpoint, "state.json") } : undefined;
}

/** What the folder says about one run's graph, beside the config's graph `now`. */
export async function graphEvidence(
  paths: { readonly graphFile: string; readonly runDir: string },
  now: string,
): Promise<RunGraphEvidence> {
  const recorded = await recordedGraph(paths.runDir);
  return {
    ...paths,
    graphFileState: await graphFileState(paths.graphFile),
    started: await exists(paths.runDir),
    now,
    ...(recorded === undefined ? {} : { recorded }),
  };
}

const POLL_MS = 500;

/**
 * Waits while a live process holds the run directory's lock: a run an earlier comparison left
 * running (one killed before its runs learnt to end with it) or one started by hand. The
 * comparison folder's own lock rules out a live comparison. Says once whom it waits for.
 */
export async function waitForHolder(id: string, runDir: string): Promise<void> {
  let holder = await lockHolder(runDir);
  if (holder === undefined) return;
  const who = holder.pid === undefined ? "another process" : `pid ${holder.pid}`;
  console.log(
    `${id}: ${runDir} is held by ${who}, a run left running by an earlier compare or started ` +
      `by hand; waiting for it to end (stop it to go on sooner)`,
  );
  while (holder !== undefined) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    holder = await lockHolder(runDir);
  }
  console.log(`${id}: ${who} has ended`);
}

/**
 * A finished run's `report.json`: unreadable is `IoFailed`, damaged (not a JSON object)
 * `ContentInvalid`, both naming the file and how to write it again.
 */
export async function readRunReport(
  runDir: string,
): Promise<E.Either<PipelineError, Record<string, unknown>>> {
  const path = join(runDir, RUN_DIR.report);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    return E.left(ioFailed(path, `cannot read the run's report: ${describeUnknown(e)}`));
  }
  const again = "delete it and run the same command again: the run resumes from its last " +
    "checkpoint and writes it again";
  let report: unknown;
  try {
    report = JSON.parse(text);
  } catch (e) {
    return E.left(contentInvalid(path, `not readable JSON (${describeUnknown(e)}); ${again}`));
  }
  return typeof report === "object" && report !== null && !Array.isArray(report)
    ? E.right(report as Record<string, unknown>)
    : E.left(contentInvalid(path, `not a run report (expected a JSON object); ${again}`));
}
