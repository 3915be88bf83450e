/**
 * The training loop on an engine that sends steps ahead (`Engine.stepAhead`, the torch
 * engine's way): here the tfjs engine wrapped so each step's report arrives a timer tick after
 * the step was sent, as a trainer's reply would. The loop must keep several steps in flight and
 * still write the records and lines of a loop that waits for every step; a step that fails in
 * the window is reported with its number after the records of the steps before it; the skip
 * verdict stops the run at the same step.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { ofType, runMetrics } from "./metrics.ts";
import { wireRun } from "../effects/mod.ts";
import { type KernelFailed, kernelFailed } from "../base/mod.ts";
import {
  decodePipeline,
  type Engine,
  type RunMetric,
  runPipeline,
  type StepReport,
  STEPS_AHEAD,
  validateGraph,
} from "../pipeline/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OPTS = { sanitizeOps: false, sanitizeResources: false } as const;

/** Two stages: a `train`, growth, ReLoRA with restarts, a `continue`; evaluations, checkpoints. */
const GRAPH = {
  version: 1,
  name: "ahead",
  model: { hidden: 16, intermediate: 32, heads: 2, layers: 3, vocab: 257, maxSeqLen: 32 },
  training: {
    backend: "cpu",
    seqLen: 16,
    microBatch: 4,
    batchTokens: 64,
    lr: 0.01,
    warmup: 2,
    evalEvery: 7,
    evalBatches: 1,
    checkpointEvery: 11,
    logEvery: 3,
    seed: 4,
  },
  data: { source: "builtin", builtinBytes: 20000, cacheDir: `${ROOT}.cache/tokens` },
  nodes: [
    { op: "train", id: "t", layers: 2, steps: 20 },
    { op: "grow", id: "g", add: 1 },
    {
      op: "attachPET",
      id: "p",
      kind: "relora",
      rank: 2,
      alpha: 4,
      resetEvery: 5,
      restartWarmup: 1,
      pruneRatio: 0.9,
    },
    { op: "continue", id: "c", steps: 12 },
  ],
};

/** What the wrapper saw: the most steps sent whose reports had not arrived yet. */
interface Seen {
  sent: number;
  arrived: number;
  mostInFlight: number;
}

/**
 * `engine` with `stepAhead`: each step runs at once, its report arrives on a later timer tick
 * (`edit` may change it, by step number from 1).
 */
function ahead(
  engine: Engine,
  seen: Seen,
  edit: (n: number, r: StepReport) => E.Either<KernelFailed, StepReport> = (_, r) => E.right(r),
): Engine {
  return {
    ...engine,
    stepAhead: (state, batches, hyper) => async () => {
      const done = await engine.step(state, batches, hyper)();
      if (E.isLeft(done)) return done;
      const n = ++seen.sent;
      seen.mostInFlight = Math.max(seen.mostInFlight, seen.sent - seen.arrived);
      const { state: next, ...report } = done.right;
      return E.right({
        state: next,
        report: new Promise((resolve) =>
          setTimeout(() => {
            seen.arrived++;
            resolve(edit(n, report));
          }, 1)
        ),
      });
    },
  };
}

/** Runs GRAPH (with `training` merged in) on the engine `wrap` makes of the tfjs one. */
async function runWith(
  training: Record<string, unknown>,
  wrap: (e: Engine) => Engine,
): Promise<
  {
    result: E.Either<{ _tag: string; message: string }, unknown>;
    metrics: RunMetric[];
    lines: string[];
  }
> {
  const dir = await Deno.makeTempDir({ prefix: "step-ahead-" });
  try {
    const graph = E.flatMap(
      decodePipeline({ ...GRAPH, training: { ...GRAPH.training, ...training } }, "g"),
      validateGraph,
    );
    assert(E.isRight(graph), JSON.stringify(graph));
    const lines: string[] = [];
    const wired = await wireRun(graph.right, {
      out: `${dir}/out`,
      mode: "fresh",
      print: (l) => lines.push(l),
    })();
    assert(E.isRight(wired), JSON.stringify(wired));
    const env = wired.right.env;
    const result = await runPipeline(graph.right, { resume: false })({
      ...env,
      engine: wrap(env.engine),
    })();
    await wired.right.release();
    return { result, metrics: await runMetrics(`${dir}/out`), lines };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The lines from the first stage on, without what depends on the clock (tokens/s, ETA,
 * durations, the process's memory) or on the run's directory.
 */
function steadyLines(lines: readonly string[]): string[] {
  return lines.slice(lines.findIndex((l) => l.startsWith("Stage 1"))).map((l) =>
    steady(l.replace(/\/tmp\/step-ahead-\w+/g, "DIR"))
  );
}

function steady(line: string): string {
  return line.replace(/\d+ tok\/s/g, "_ tok/s").replace(/ETA \S+/g, "ETA _")
    .replace(/in [\d.]+ m?s/g, "in _").replace(/process [\d.]+ \w+/g, "process _")
    .replace(/\d+(\.\d+)?\s?s\b/g, "_s");
}

/** The records that do not depend on the clock: train, eval and merge. */
function steadyRecords(ms: readonly RunMetric[]): RunMetric[] {
  return ms.filter((m) => m.type === "train" || m.type === "eval" || m.type === "merge");
}

Deno.test({
  ...OPTS,
  name:
    "steps sent ahead: several in flight, and the same records and log lines as a loop that waits for each",
  fn: async () => {
    const waiting = await runWith({}, (e) => e);
    const seen: Seen = { sent: 0, arrived: 0, mostInFlight: 0 };
    const sentAhead = await runWith({}, (e) => ahead(e, seen));
    assert(E.isRight(waiting.result), JSON.stringify(waiting.result));
    assert(E.isRight(sentAhead.result), JSON.stringify(sentAhead.result));
    assertEquals(seen.sent, 32);
    // The loop went on sending while reports were out, up to its window and no further.
    assert(seen.mostInFlight >= 2, `at most ${seen.mostInFlight} step(s) in flight`);
    assert(seen.mostInFlight <= STEPS_AHEAD, `${seen.mostInFlight} steps in flight`);
    const records = steadyRecords(sentAhead.metrics);
    assertEquals(records, steadyRecords(waiting.metrics));
    assertEquals(ofType(records, "train").length, 32);
    assertEquals(ofType(records, "merge").length, 2);
    assert(ofType(records, "eval").length >= 4);
    const lines = steadyLines(sentAhead.lines);
    assert(lines.length > 20, lines.join("\n"));
    assertEquals(lines, steadyLines(waiting.lines));
  },
});

Deno.test({
  ...OPTS,
  name:
    "steps sent ahead: a step that fails in the window is reported with its number, after the records of the steps before it",
  fn: async () => {
    const seen: Seen = { sent: 0, arrived: 0, mostInFlight: 0 };
    const r = await runWith({}, (e) =>
      ahead(
        e,
        seen,
        (n, report) => n === 5 ? E.left(kernelFailed("the trainer fell over")) : E.right(report),
      ));
    assert(E.isLeft(r.result), "the run went on past a failed step");
    assertEquals(r.result.left._tag, "KernelFailed");
    assertStringIncludes(r.result.left.message, 'step 5 of "t": the trainer fell over');
    // Steps 6 and on were sent before step 5's report came back; none of them was recorded.
    assert(seen.sent > 5, `only ${seen.sent} steps were sent`);
    assertEquals(ofType(r.metrics, "train").map((m) => m.step), [1, 2, 3, 4]);
  },
});

Deno.test({
  ...OPTS,
  name:
    "steps sent ahead: skipped steps are counted in order and the verdict stops at the same step",
  fn: async () => {
    // Steps 3 and 5 to 7 come back skipped (non-finite gradient); 3 in a row stop the run.
    const skip = (n: number, report: StepReport) =>
      E.right(n === 3 || (n >= 5 && n <= 7) ? { ...report, gradNorm: NaN, skipped: true } : report);
    const edit = (e: Engine): Engine => {
      let n = 0;
      return {
        ...e,
        step: (state, batches, hyper) => async () => {
          const done = await e.step(state, batches, hyper)();
          if (E.isLeft(done)) return done;
          const { state: next, ...report } = done.right;
          const edited = skip(++n, report);
          return E.isLeft(edited) ? edited : E.right({ state: next, ...edited.right });
        },
      };
    };
    // No evaluation or checkpoint in the first steps: the loop does not wait there.
    const training = { maxSkippedSteps: 3, evalEvery: 50, checkpointEvery: 50 };
    const waiting = await runWith(training, edit);
    const seen: Seen = { sent: 0, arrived: 0, mostInFlight: 0 };
    const sentAhead = await runWith(training, (e) => ahead(e, seen, skip));
    for (const r of [waiting, sentAhead]) {
      assert(
        E.isLeft(r.result) && r.result.left._tag === "TrainingDiverged",
        JSON.stringify(r.result),
      );
      assertStringIncludes(r.result.left.message, "3 steps in a row");
      assertEquals(ofType(r.metrics, "train").map((m) => m.skipped === true), [
        false,
        false,
        true,
        false,
        true,
        true,
        true,
      ]);
    }
    assert(seen.sent > 7, `only ${seen.sent} steps were sent`);
    assertEquals(steadyLines(sentAhead.lines), steadyLines(waiting.lines));
  },
});
