/**
 * `deno task compare` survives being stopped: its runs end when it is killed and the next
 * comparison resumes them; a run's time is its stages' own; a damaged graph file is told from a
 * changed config; one comparison writes a folder at a time and waits for a run another process
 * still holds; a damaged run report is named with the exit code of damaged content.
 */
import { join } from "node:path";
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { capture } from "./cli_capture.ts";
import { ofType, runMetrics } from "./metrics.ts";
import { main } from "../cli/compare.ts";
import { lockHolder } from "../store/mod.ts";

const COMPARE = new URL("../cli/compare.ts", import.meta.url).pathname;
const DIR_LOCK = new URL("../store/dir_lock.ts", import.meta.url).href;
const ROOT = new URL("../", import.meta.url).pathname;
const RUN = "standard-s0";

/** A one-run comparison of a 2-layer, width-16 model, checkpointed every 10 steps. */
function tinyConfig(steps: number, lr = 3e-3): string {
  return YAML.stringify({
    name: "guard-tiny",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 16 },
    budget: { standardSteps: steps, accounting: "paper" },
    training: {
      seqLen: 16,
      microBatch: 2,
      batchTokens: 32,
      lr,
      warmup: 5,
      evalEvery: 100,
      evalBatches: 1,
      checkpointEvery: 10,
      logEvery: 100,
    },
    data: {
      source: "builtin",
      builtinBytes: 20000,
      tokenizer: "bytes",
      cacheDir: `${ROOT}.cache/tokens`,
    },
    compare: { methods: ["standard"], seeds: 1, eval: false },
  });
}

async function tempConfig(dir: string, steps: number, lr?: number): Promise<string> {
  const path = join(dir, `tiny-${steps}-${lr ?? "lr"}.yaml`);
  await Deno.writeTextFile(path, tinyConfig(steps, lr));
  return path;
}

/** What the tests read of a checkpoint's progress, a run's report and the comparison's. */
interface Progress {
  readonly globalStep: number;
  readonly stageSeconds: number;
}
interface RunReport {
  readonly resumedFrom: number | null;
  readonly stages: readonly { readonly wallSeconds: number }[];
}
interface CompareReport {
  readonly runs: readonly { readonly wallSeconds: number | null }[];
}

async function json<T>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(path)) as T;
}

async function checkpointProgress(runDir: string): Promise<Progress | undefined> {
  try {
    return (await json<{ progress: Progress }>(join(runDir, "checkpoint", "state.json"))).progress;
  } catch {
    return undefined; // not written yet, or being replaced
  }
}

/** Whether `pid` is a live process (a zombie has ended: only its exit status is left). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** The processes whose parent is `pid` (from /proc). */
async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${e.name}/stat`).catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) found.push(Number(e.name));
  }
  return found;
}

async function waitFor(what: string, ok: () => Promise<boolean>, seconds: number): Promise<void> {
  for (let i = 0; i < seconds * 20; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${seconds} s`);
}

/**
 * Every file under `dir` with its size, modification time and a checksum: what "untouched"
 * means. Lock files are left out: taking a lock writes the taker's pid.
 */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.name === ".lock") continue;
      if (e.isDirectory) await walk(p);
      else {
        const st = await Deno.stat(p);
        const bytes = await Deno.readFile(p);
        const sum = bytes.reduce((a, b) => (a * 31 + b) >>> 0, 7);
        out.set(p, `${st.size} ${st.mtime?.getTime()} ${sum}`);
      }
    }
  };
  await walk(dir);
  return out;
}

/** A separate process holding `dir`'s lock (as `what`) until its stdin closes. */
async function holdLock(dir: string, what: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { lockDir } from "${DIR_LOCK}";
       const held = await lockDir(${JSON.stringify(dir)}, "${what}");
       if (held._tag !== "Right") Deno.exit(9);
       console.log("held");
       for await (const _ of Deno.stdin.readable) { /* until the test lets go */ }`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  assertEquals(first.value?.trim(), "held");
  reader.releaseLock();
  return child;
}

async function letGo(child: Deno.ChildProcess): Promise<void> {
  await child.stdin.close();
  await child.status;
  await child.stdout.cancel().catch(() => {});
}

/** A finished one-run comparison of `steps` steps in a new folder. */
async function finished(steps: number): Promise<{ dir: string; config: string; out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "compare-guard-" });
  const config = await tempConfig(dir, steps);
  const out = join(dir, "out");
  const r = await capture(main, [config, "--out", out]);
  assertEquals(r.code, 0, r.err);
  return { dir, config, out };
}

Deno.test({
  name: "compare killed with -9: its run ends with it, and the next compare resumes the run",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "compare-kill-" });
    try {
      const config = await tempConfig(dir, 300);
      const out = join(dir, "out");
      const runDir = join(out, "runs", RUN);
      const compare = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", COMPARE, config, "--out", out],
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitFor(
        "the run's first checkpoint",
        async () => ((await checkpointProgress(runDir))?.globalStep ?? 0) >= 10,
        120,
      );
      const run = (await lockHolder(runDir))?.pid;
      assert(run !== undefined && (await alive(run)), "the run holds its directory");
      const children = await childrenOf(compare.pid);
      assert(children.includes(run), `the run ${run} is compare's child (${children})`);

      // Meanwhile a second comparison of the same folder is refused, naming the first.
      const second = await capture(main, [config, "--out", out]);
      assertEquals(second.code, 4, second.err);
      assertStringIncludes(second.err, `another comparison is writing it (pid ${compare.pid})`);

      compare.kill("SIGKILL");
      await compare.status;
      for (const child of children) {
        await waitFor(
          `compare's child ${child} to end with it`,
          async () => !(await alive(child)),
          3,
        );
      }
      // A thread-group leader shows as a zombie while its other threads are still exiting and
      // still share its open files, so the lock is freed a moment after.
      await waitFor(
        "the run's lock to be freed",
        async () => (await lockHolder(runDir)) === undefined,
        3,
      );
      const kept = (await checkpointProgress(runDir))!;
      const killedAt = kept.globalStep;
      await new Promise((r) => setTimeout(r, 1000));
      assertEquals((await checkpointProgress(runDir))!.globalStep, killedAt, "nothing trains on");
      assert(
        !(await Deno.stat(join(runDir, "report.json")).then(() => true, () => false)),
        "the killed compare's run went on to the end",
      );

      const t0 = performance.now();
      const again = await capture(main, [config, "--out", out]);
      const rerunSeconds = (performance.now() - t0) / 1000;
      assertEquals(again.code, 0, again.err);
      assertStringIncludes(again.out, `=== ${RUN}: resuming`);
      assertStringIncludes(again.out, `Resumed at node "standard", step ${killedAt}`);
      const report = await json<RunReport>(join(runDir, "report.json"));
      assertEquals(report.resumedFrom, killedAt);
      // The metrics continue from the checkpoint: every step once, in order.
      const steps = ofType(await runMetrics(runDir), "train").map((m) => m.step);
      assertEquals(steps, Array.from({ length: 300 }, (_, i) => i + 1));

      // The run's time is what its stage recorded: the kept work of the killed session (up to
      // its checkpoint) and the resumed one; no timing of the killed attempt is kept anywhere.
      let stageSum = 0;
      for (const stage of report.stages) stageSum += stage.wallSeconds;
      const wall = (await json<CompareReport>(join(out, "report.json"))).runs[0]!.wallSeconds!;
      assert(Math.abs(wall - stageSum) < 1e-9, `${wall} vs ${stageSum}`);
      assert(wall > kept.stageSeconds, "the killed session's kept steps count");
      assert(
        wall < kept.stageSeconds + rerunSeconds,
        `${wall} s: more than the checkpoint's ${kept.stageSeconds} s and the rerun's ` +
          `${rerunSeconds} s`,
      );
      assert(!(await Deno.stat(join(out, "timing.json")).then(() => true, () => false)));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "compare tells a damaged graph file (rebuilt) from a changed config (refused)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { dir, config, out } = await finished(20);
    try {
      const graphFile = join(out, "graphs", `${RUN}.yaml`);
      const runDir = join(out, "runs", RUN);
      const graph = await Deno.readTextFile(graphFile);

      // A finished run: its pipeline.yaml matches the config, so the damaged file is rebuilt.
      await Deno.writeTextFile(graphFile, "nodes: [ {op: train");
      const rebuilt = await capture(main, [config, "--out", out]);
      assertEquals(rebuilt.code, 0, rebuilt.err);
      assertStringIncludes(rebuilt.out, `${graphFile} is damaged (not valid YAML`);
      assertStringIncludes(rebuilt.out, `which gives the graph ${runDir}/pipeline.yaml records`);
      assertStringIncludes(rebuilt.out, `${RUN}: finished earlier, not run again`);
      assertEquals(await Deno.readTextFile(graphFile), graph);

      // An interrupted run (its checkpoint is the record): rebuilt, and the run resumes.
      await Deno.writeTextFile(graphFile, "version: 1\nnodes: []\n");
      for (const f of ["report.json", "pipeline.yaml", "final"]) {
        await Deno.remove(join(runDir, f), { recursive: true });
      }
      const resumed = await capture(main, [config, "--out", out]);
      assertEquals(resumed.code, 0, resumed.err);
      assertStringIncludes(resumed.out, `${graphFile} is damaged (not a valid stage graph`);
      assertStringIncludes(resumed.out, `${runDir}/checkpoint/state.json records`);
      assertStringIncludes(resumed.out, `=== ${RUN}: resuming`);

      // The config changed: refused, naming the run's record; nothing is rewritten.
      const changed = await tempConfig(dir, 20, 1e-3);
      const before = await snapshot(out);
      const refused = await capture(main, [changed, "--out", out]);
      assertEquals(refused.code, 2, refused.err);
      assertStringIncludes(refused.err, `${runDir}/pipeline.yaml records graph`);
      assertStringIncludes(refused.err, "the config changed since");
      assertEquals(await snapshot(out), before);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a second compare on a held folder exits 4 naming the holder's pid, touching nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { dir, config, out } = await finished(20);
    try {
      await Deno.writeTextFile(join(out, "timing.json"), '{"standard-s0": 0.72}');
      const holder = await holdLock(out, "comparison");
      try {
        const before = await snapshot(out);
        const r = await capture(main, [config, "--out", out]);
        assertEquals(r.code, 4, r.err);
        assertStringIncludes(r.err, `another comparison is writing it (pid ${holder.pid})`);
        assertEquals(await snapshot(out), before);
      } finally {
        await letGo(holder);
      }
      // An old folder's timing.json is no longer read: the time is the run's own.
      const r = await capture(main, [config, "--out", out]);
      assertEquals(r.code, 0, r.err);
      const report = await json<RunReport>(join(out, "runs", RUN, "report.json"));
      assertEquals(
        (await json<CompareReport>(join(out, "report.json"))).runs[0]!.wallSeconds,
        report.stages[0]!.wallSeconds,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "compare waits for a run directory another process holds, naming its pid",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "compare-orphan-" });
    try {
      const config = await tempConfig(dir, 20);
      const out = join(dir, "out");
      const runDir = join(out, "runs", RUN);
      await Deno.mkdir(runDir, { recursive: true });
      // Stands for a run an earlier compare left running: it ends a second later.
      const orphan = await holdLock(runDir, "run");
      const ended = new Promise((r) => setTimeout(r, 1000)).then(() => letGo(orphan));
      const r = await capture(main, [config, "--out", out]);
      await ended;
      assertEquals(r.code, 0, r.err);
      assertStringIncludes(r.out, `${runDir} is held by pid ${orphan.pid}`);
      assertStringIncludes(r.out, `${RUN}: pid ${orphan.pid} has ended`);
      assertStringIncludes(r.out, `=== ${RUN}: starting`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a damaged run report.json exits 2 naming it; an unreadable one exits 4",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { dir, config, out } = await finished(20);
    try {
      const path = join(out, "runs", RUN, "report.json");
      await Deno.writeTextFile(path, '{ "finalValLoss": 2.');
      const before = await snapshot(out);
      const damaged = await capture(main, [config, "--out", out]);
      assertEquals(damaged.code, 2, damaged.err);
      assertStringIncludes(damaged.err, `Invalid content in "${path}": not readable JSON`);
      assertStringIncludes(damaged.err, "delete it and run the same command again");
      assertEquals(await snapshot(out), before, "no report is written");

      await Deno.remove(path);
      await Deno.mkdir(path);
      const unreadable = await capture(main, [config, "--out", out]);
      assertEquals(unreadable.code, 4, unreadable.err);
      assertStringIncludes(unreadable.err, `Cannot use "${path}"`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
