/**
 * A run's wall time is the time of the work it kept: each stage records the seconds of its
 * steps over every session, and what a stopped session did after its last checkpoint (done
 * again when the run resumes) is counted once. A clock that moves one second per optimizer step
 * makes the expected figure the number of steps each stage has.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "./assert.ts";
import { kernelFailed } from "../base/mod.ts";
import { wireRun } from "../effects/mod.ts";
import {
  decodePipeline,
  type Engine,
  type Env,
  runPipeline,
  validateGraph,
  type ValidGraph,
} from "../pipeline/mod.ts";
import { runReportJson } from "../report/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const STAGE_STEPS = [8, 6];

function tinyGraph(): ValidGraph {
  const g = E.flatMap(
    decodePipeline({
      version: 1,
      name: "wall-time",
      model: { hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 16 },
      training: {
        backend: "cpu",
        seqLen: 16,
        microBatch: 2,
        batchTokens: 32,
        warmup: 2,
        evalEvery: 3,
        evalBatches: 1,
        checkpointEvery: 4,
        logEvery: 4,
      },
      data: { source: "builtin", builtinBytes: 20000, cacheDir: `${ROOT}.cache/tokens` },
      nodes: [
        { op: "train", id: "s1", layers: 1, steps: STAGE_STEPS[0] },
        { op: "grow", id: "g2", add: 1 },
        { op: "continue", id: "s2", steps: STAGE_STEPS[1] },
      ],
    }, "wall-time"),
    validateGraph,
  );
  if (E.isLeft(g)) throw new Error(g.left.message);
  return g.right;
}

/**
 * The env with a clock that only moves when the engine takes a step (one second each), and an
 * engine that fails instead of taking step `failAt` (1-based, counted in this session).
 */
function steppingClock(env: Env, failAt?: number): Env {
  let ms = 0;
  let steps = 0;
  const engine = new Proxy(env.engine, {
    get(target, prop) {
      if (prop === "step") {
        return (...args: Parameters<Engine["step"]>) => async () => {
          steps++;
          if (steps === failAt) return E.left(kernelFailed("stopped here by the test"));
          ms += 1000;
          return await target.step(...args)();
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { ...env, engine, clock: { now: () => ms } };
}

async function session(
  g: ValidGraph,
  out: string,
  opts: { readonly resume: boolean; readonly failAt?: number },
) {
  const wired = await wireRun(g, {
    out,
    mode: opts.resume ? "resume" : "fresh",
    print: () => {},
  })();
  if (E.isLeft(wired)) throw new Error(wired.left.message);
  try {
    return await runPipeline(g, { resume: opts.resume })(
      steppingClock(wired.right.env, opts.failAt),
    )();
  } finally {
    await wired.right.release();
  }
}

Deno.test({
  name: "run: each stage records the seconds of the steps it kept, over every session",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const g = tinyGraph();
    const out = await Deno.makeTempDir({ prefix: "wall-time-" });
    try {
      // Stage 2's 3rd step fails: its checkpoint at global step 8 + 4 = 12 is not reached, so
      // the last checkpoint is stage 1's end (global step 8) and stage 2's two steps are lost.
      const stopped = await session(g, out, {
        resume: false,
        failAt: STAGE_STEPS[0]! + 3,
      });
      assert(E.isLeft(stopped) && stopped.left._tag === "KernelFailed");
      const resumed = await session(g, out, { resume: true });
      if (E.isLeft(resumed)) throw new Error(resumed.left.message);
      const r = resumed.right;
      assertEquals(r.resumedFrom, STAGE_STEPS[0]);
      // One second per step kept: the two lost steps of the stopped session never appear.
      assertEquals(r.stages.map((s) => s.wallSeconds), STAGE_STEPS);
      const report = runReportJson(g, r, {});
      assertEquals(report.runWallSeconds, STAGE_STEPS[0]! + STAGE_STEPS[1]!);

      // Stopped in the middle of a stage: the time up to its checkpoint comes back with it.
      const mid = await Deno.makeTempDir({ prefix: "wall-time-mid-" });
      try {
        const cut = await session(g, mid, { resume: false, failAt: 7 });
        assert(E.isLeft(cut));
        const state = JSON.parse(await Deno.readTextFile(`${mid}/checkpoint/state.json`));
        assertEquals(state.progress.stepInNode, 4);
        assertEquals(state.progress.stageSeconds, 4);
        const done = await session(g, mid, { resume: true });
        if (E.isLeft(done)) throw new Error(done.left.message);
        assertEquals(done.right.stages.map((s) => s.wallSeconds), STAGE_STEPS);
      } finally {
        await Deno.remove(mid, { recursive: true });
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
