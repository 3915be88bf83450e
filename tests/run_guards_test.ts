/**
 * `deno task run` guards, each found by trying the tool as a new user would:
 * output that cannot escape its place, one writer per run directory, one
 * history per run, no leftovers from killed writers, a diverged model never
 * saved, data read as the user sees it, and sizes checked before anything is
 * allocated.
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { ofType, runMetrics } from "./metrics.ts";
import { main } from "../cli/run.ts";
import { machineMemory, openRunDir, wireRun } from "../effects/mod.ts";
import {
  backendLimit,
  decodePipeline,
  memoryFit,
  runPipeline,
  type StepOutcome,
  validateGraph,
} from "../pipeline/mod.ts";
import { readSafetensors, tensorToFloat32 } from "../store/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OPTS = { sanitizeOps: false, sanitizeResources: false } as const;

function config(extra: Record<string, unknown> = {}, training: Record<string, unknown> = {}) {
  return {
    name: "guard",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 32 },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 4,
      batchTokens: 64,
      lr: 0.01,
      warmup: 2,
      steps: 6,
      evalEvery: 3,
      evalBatches: 1,
      checkpointEvery: 3,
      logEvery: 3,
      seed: 2,
      ...training,
    },
    data: { source: "builtin", builtinBytes: 20000, cacheDir: `${ROOT}.cache/tokens` },
    ...extra,
  };
}

async function write(dir: string, doc: unknown): Promise<string> {
  await Deno.writeTextFile(`${dir}/c.yaml`, YAML.stringify(doc));
  return `${dir}/c.yaml`;
}

function run(...args: string[]): Promise<Captured> {
  return capture(main, args);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test({
  ...OPTS,
  name: "run refuses an empty --out and a name that is not a plain file name, writing nothing",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const empty = await run(await write(dir, config()), "--out", "");
    assertEquals(empty.code, 2, empty.err);
    assertStringIncludes(empty.err, "--out");
    const escaping = await run(await write(dir, config({ name: "../../escaped" })));
    assertEquals(escaping.code, 2, escaping.err);
    assertStringIncludes(escaping.err, "name");
    assertStringIncludes(escaping.err, "plain file name");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["c.yaml"]);
  },
});

Deno.test({
  ...OPTS,
  name:
    "run refuses a folder that holds an earlier run unless --resume or --force, and --force replaces it",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await write(dir, config());
    assertEquals((await run(file, "--out", `${dir}/out`)).code, 0);
    await Deno.writeTextFile(`${dir}/out/report.json`, '{"old": true}');
    const again = await run(file, "--out", `${dir}/out`);
    assertEquals(again.code, 2, again.err);
    assertStringIncludes(again.err, "holds an earlier run");
    assertEquals(await Deno.readTextFile(`${dir}/out/report.json`), '{"old": true}');
    const replaced = await run(file, "--out", `${dir}/out`, "--force");
    assertEquals(replaced.code, 0, replaced.err);
    assert(!(await Deno.readTextFile(`${dir}/out/report.json`)).includes('"old"'));
    const steps = ofType(await runMetrics(`${dir}/out`), "train");
    assertEquals(steps.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
  },
});

Deno.test({
  ...OPTS,
  name: "run --resume is an error on a missing folder and on a folder with no run",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await write(dir, config());
    const missing = await run(file, "--out", `${dir}/nothing`, "--resume");
    assertEquals(missing.code, 2, missing.err);
    assertStringIncludes(missing.err, "does not exist");
    assert(!(await exists(`${dir}/nothing`)));
    await Deno.mkdir(`${dir}/empty`);
    const empty = await run(file, "--out", `${dir}/empty`, "--resume");
    assertEquals(empty.code, 2, empty.err);
    assertStringIncludes(empty.err, "holds no run to resume");
  },
});

Deno.test({
  ...OPTS,
  name: "a second run into a directory another run holds stops at once, leaving its files alone",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const held = await openRunDir(`${dir}/out`, { mode: "fresh", print: () => {} })();
    assert(E.isRight(held));
    try {
      const second = await run(await write(dir, config()), "--out", `${dir}/out`);
      assertEquals(second.code, 4, second.err);
      assertStringIncludes(second.err, "another run is writing it");
      assert(!(await exists(`${dir}/out/metrics.jsonl`)));
    } finally {
      held.right.release();
    }
  },
});

Deno.test({
  ...OPTS,
  name: "resuming a run killed before its first checkpoint starts over with a clean history",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await write(dir, config());
    await Deno.mkdir(`${dir}/out`);
    // What a run killed at step 2, before any checkpoint, leaves behind.
    const dead = [1, 2].map((step) => JSON.stringify({ type: "train", step, loss: 9 }));
    await Deno.writeTextFile(`${dir}/out/metrics.jsonl`, dead.join("\n") + "\n");
    const r = await run(file, "--out", `${dir}/out`, "--resume");
    assertEquals(r.code, 0, r.err);
    const steps = ofType(await runMetrics(`${dir}/out`), "train");
    assertEquals(steps.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
    assert(steps.every((x) => x.loss !== 9));
  },
});

Deno.test({
  ...OPTS,
  name: "a run removes the temporaries a killed run left in its directory",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await write(dir, config());
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/metrics.jsonl`, "");
    // A dead writer's (pid 2^31 - 1) half-written final model and checkpoint.
    for (const name of [".final.tmp-2147483647-abc", ".checkpoint.tmp-2147483647-def"]) {
      await Deno.mkdir(`${dir}/out/${name}`);
      await Deno.writeTextFile(`${dir}/out/${name}/model.safetensors`, "partial");
    }
    assertEquals((await run(file, "--out", `${dir}/out`, "--resume")).code, 0);
    const hidden = [...Deno.readDirSync(`${dir}/out`)].filter((e) => e.name.startsWith(".tmp"));
    assertEquals(hidden, []);
    assert(!(await exists(`${dir}/out/.final.tmp-2147483647-abc`)));
    assert(!(await exists(`${dir}/out/.checkpoint.tmp-2147483647-def`)));
  },
});

/** A validated graph of `nodes` over the test config, wired to a fresh run directory. */
async function wiredGraph(training: Record<string, unknown>, nodes: unknown[]) {
  const dir = await Deno.makeTempDir();
  const { steps: _, ...rest } = config({}, training).training;
  const graph = E.flatMap(
    decodePipeline({ ...config(), version: 1, training: rest, nodes }, "g"),
    validateGraph,
  );
  assert(E.isRight(graph), JSON.stringify(graph));
  const wired = await wireRun(graph.right, { out: `${dir}/out`, mode: "fresh", print: () => {} })();
  assert(E.isRight(wired));
  return { graph: graph.right, wired: { ...wired.right, dir } };
}

async function finiteFile(path: string): Promise<boolean> {
  const file = await readSafetensors(path)();
  assert(E.isRight(file), JSON.stringify(file));
  for (const [name, raw] of file.right.tensors) {
    const values = tensorToFloat32(raw, name);
    assert(E.isRight(values));
    if (!values.right.every(Number.isFinite)) return false;
  }
  return true;
}

Deno.test({
  ...OPTS,
  name: "a first update that overflows every weight is never saved: no checkpoint, no final model",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await write(
      dir,
      config({}, { lr: 1e39, warmup: 1, steps: 6, checkpointEvery: 1 }),
    );
    const r = await run(file, "--out", `${dir}/out`);
    assertEquals(r.code, 6, r.err);
    assertStringIncludes(r.err, "this model is not saved (no checkpoint was written before it)");
    assert(
      !(await exists(`${dir}/out/checkpoint`)),
      "a checkpoint of infinite weights was written",
    );
    assert(!(await exists(`${dir}/out/final`)));
  },
});

Deno.test({
  ...OPTS,
  name: "a stage that diverges keeps the previous stage's finite checkpoint, which resumes",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const { steps: _, ...training } = config({}, { checkpointEvery: 1 }).training;
    const file = await write(dir, {
      ...config(),
      version: 1,
      training,
      nodes: [
        { op: "train", id: "s1.train", layers: 1, steps: 3 },
        { op: "grow", id: "s2.grow", add: 1 },
        { op: "continue", id: "s2.continue", steps: 3, lr: 1e39, warmup: 1 },
      ],
    });
    const r = await run(file, "--out", `${dir}/out`);
    assertEquals(r.code, 6, r.err);
    assertStringIncludes(r.err, 'at node "s2.continue"');
    assertStringIncludes(r.err, "the checkpoint of global step 3 is kept");
    const ckpt = `${dir}/out/checkpoint`;
    assert(
      await finiteFile(`${ckpt}/model.safetensors`),
      "the checkpoint holds non-finite weights",
    );
    assert(await finiteFile(`${ckpt}/moments.safetensors`), "the moments are not finite");
    const state = JSON.parse(await Deno.readTextFile(`${ckpt}/state.json`));
    assertEquals(state.progress.globalStep, 3);
    const again = await run(file, "--out", `${dir}/out`, "--resume");
    assertStringIncludes(again.out, "Resumed at node");
    assertEquals(again.code, 6, again.err);
    assert(await finiteFile(`${ckpt}/model.safetensors`));
  },
});

Deno.test({
  ...OPTS,
  name:
    "the interpreter skips steps with a non-finite gradient, counts them, and stops after maxSkippedSteps",
  fn: async () => {
    const { graph, wired } = await wiredGraph({ maxSkippedSteps: 3 }, [
      { op: "train", id: "t", layers: 2, steps: 8 },
    ]);
    const dir = wired.dir;
    const env = wired.env;
    let calls = 0;
    let last: StepOutcome | undefined;
    // Steps 3 and 5 to 7 come back with a NaN gradient: the engine skipped them.
    const engine = {
      ...env.engine,
      step: (...args: Parameters<typeof env.engine.step>) => {
        calls++;
        if (calls !== 3 && calls < 5) {
          return TE.map((o: StepOutcome) => (last = o))(env.engine.step(...args));
        }
        return TE.right({
          state: args[0],
          loss: 2,
          gradNorm: NaN,
          skipped: true,
          accounted: last!.accounted,
          measured: { bufferBytes: 0, tensorCountBytes: 0 },
        });
      },
    };
    const r = await runPipeline(graph, { resume: false })({ ...env, engine })();
    await wired.release();
    assert(E.isLeft(r) && r.left._tag === "TrainingDiverged", JSON.stringify(r));
    assertStringIncludes(r.left.message, "3 steps in a row");
    const train = ofType(await runMetrics(`${dir}/out`), "train");
    assertEquals(train.map((x) => x.skipped === true), [
      false,
      false,
      true,
      false,
      true,
      true,
      true,
    ]);
  },
});

Deno.test({
  ...OPTS,
  name: "a corpus directory of symbolic links is read through them, and a FIFO is refused",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await Deno.mkdir(`${dir}/books`);
    await Deno.mkdir(`${dir}/corpus`);
    const text = "the quick brown fox jumps over the lazy dog. ".repeat(200);
    for (const name of ["a", "b", "c"]) {
      await Deno.writeTextFile(`${dir}/books/${name}.txt`, `${name} ${text}`);
    }
    await Deno.writeTextFile(`${dir}/corpus/a.txt`, `a ${text}`);
    await Deno.symlink(`${dir}/books/b.txt`, `${dir}/corpus/b.txt`);
    await Deno.symlink(`${dir}/books/c.txt`, `${dir}/corpus/c.txt`);
    await Deno.mkdir(`${dir}/links`);
    await Deno.symlink(`${dir}/books`, `${dir}/links/books`);
    // Bytes tokeniser: each document is its bytes plus one end-of-text token.
    const expected = 3 * (new TextEncoder().encode(`a ${text}`).length + 1);
    for (const [i, source] of [`${dir}/corpus`, `${dir}/links`].entries()) {
      const data = { source, tokenizer: "bytes", cacheDir: `${dir}/tokens` };
      const r = await run(await write(dir, config({ data })), "--out", `${dir}/out-${i}`);
      assertEquals(r.code, 0, r.err);
      const m = /bytes tokens: (\d+) train \/ (\d+) validation/.exec(r.out);
      assert(m !== null, r.out);
      assertEquals(Number(m[1]) + Number(m[2]), expected, source);
    }
    const fifo = new Deno.Command("mkfifo", { args: [`${dir}/pipe.txt`] }).outputSync();
    if (fifo.success) {
      const r = await run(
        await write(dir, config({ data: { source: `${dir}/pipe.txt`, tokenizer: "bytes" } })),
        "--out",
        `${dir}/out-fifo`,
      );
      assertEquals(r.code, 4, r.err);
      assertStringIncludes(r.err, "not a regular file");
    }
  },
});

Deno.test({
  ...OPTS,
  name: "run refuses a model too large for any machine, or for this one, before allocating",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const deep = config({
      model: { hidden: 16, intermediate: 32, heads: 2, layers: 1e9, vocab: 257, maxSeqLen: 32 },
    });
    const r = await run(await write(dir, deep), "--out", `${dir}/deep`);
    assertEquals(r.code, 2, r.err);
    assertStringIncludes(r.err, "65536");
    const huge = config({
      model: { hidden: 8192, intermediate: 28672, heads: 64, layers: 4096, vocab: 257 },
    }, { seqLen: 16 });
    const h = await run(await write(dir, huge), "--out", `${dir}/huge`);
    assertEquals(h.code, 3, h.err);
    assertStringIncludes(h.err, "this machine has");
    assert(!(await exists(`${dir}/huge/metrics.jsonl`)));
  },
});

Deno.test({
  ...OPTS,
  name:
    "run and --dry-run refuse a model past the wasm heap with the limit and the predicted bytes, writing nothing",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const at = (layers: number) =>
      config({
        model: { hidden: 1024, intermediate: 2816, heads: 8, layers, vocab: 257, maxSeqLen: 64 },
      }, { backend: "auto", seqLen: 64, microBatch: 2, batchTokens: 128 });
    const limit = backendLimit(
      { engine: "tfjs", torch: { device: "cpu", nproc: 1 } },
      "auto",
      machineMemory(),
    );
    if (limit.kind !== "bytes" || limit.bytes > 5e9) {
      console.log(`skipped: the wasm heap is not what limits auto here (${limit.what})`);
      return;
    }
    const big = await write(dir, at(24));
    // The same model as the graph a config runs: one `train` node of the full depth.
    const nodes = [{ op: "train", id: "standard", layers: 24, steps: 6 }];
    const graph = E.flatMap(decodePipeline({ ...at(24), version: 1, nodes }, "big"), validateGraph);
    assert(E.isRight(graph));
    const predicted = memoryFit(graph.right, "auto", limit).stages[0]!.peakBytes;
    assert(predicted > limit.bytes);
    for (const extra of [["--dry-run"], []]) {
      const r = await run(big, "--out", `${dir}/out`, ...extra);
      assertEquals(r.code, 3, r.err);
      assertStringIncludes(r.err, "node standard");
      assertStringIncludes(r.err, `(${predicted} bytes)`);
      assertStringIncludes(r.err, `(${limit.bytes} bytes)`);
      assertStringIncludes(r.err, "wasm32 heap");
      assertStringIncludes(r.err, "largest standard pre-training that fits");
      assert(!(await exists(`${dir}/out`)), `${extra}: the run directory was made`);
    }
    // The depth the refusal names as the largest is itself accepted.
    const said = (await run(big, "--dry-run")).err.match(/that fits at [^:]*: (\d+) layers/);
    assert(said !== null);
    const ok = await run(await write(dir, at(Number(said[1]))), "--dry-run");
    assertEquals(ok.code, 0, ok.err);
    assertStringIncludes(ok.out, "stage 1 (standard): peak");
    assertStringIncludes(ok.out, " fits");
  },
});

Deno.test({
  ...OPTS,
  name: "an eval node evaluates on as many validation batches as it names",
  fn: async () => {
    const { graph, wired } = await wiredGraph({ evalBatches: 1 }, [
      { op: "train", id: "t", layers: 2, steps: 2 },
      { op: "eval", id: "wide", batches: 3 },
    ]);
    const env = wired.env;
    const asked: number[] = [];
    const seen: number[] = [];
    const data = {
      ...env.data,
      validation: (n: number) => (asked.push(n), env.data.validation(n)),
    };
    const engine = {
      ...env.engine,
      evaluate: (...a: Parameters<typeof env.engine.evaluate>) => {
        seen.push(a[1].length);
        return env.engine.evaluate(...a);
      },
    };
    const r = await runPipeline(graph, { resume: false })({ ...env, data, engine })();
    await wired.release();
    assert(E.isRight(r), JSON.stringify(r));
    assertEquals(asked, [1, 3]);
    // End of stage (1 batch), the eval node (3), the merged export (1).
    assertEquals(seen, [1, 3, 1]);
  },
});

Deno.test({
  ...OPTS,
  name: "a validation loss that is not finite stops the run at its node and is never recorded",
  fn: async () => {
    const { graph, wired } = await wiredGraph({ evalBatches: 1 }, [
      { op: "train", id: "t", layers: 2, steps: 2 },
      { op: "eval", id: "wide", batches: 2 },
    ]);
    const env = wired.env;
    // The weights stay finite; only the evaluation's outputs overflow (as float32 logits can).
    let evaluations = 0;
    const engine = {
      ...env.engine,
      evaluate: (...a: Parameters<typeof env.engine.evaluate>) =>
        TE.map((loss: number) => (++evaluations === 2 ? NaN : loss))(env.engine.evaluate(...a)),
    };
    const r = await runPipeline(graph, { resume: false })({ ...env, engine })();
    await wired.release();
    assert(E.isLeft(r) && r.left._tag === "TrainingDiverged", JSON.stringify(r));
    assertEquals(r.left.node, "wide");
    assertStringIncludes(r.left.message, "validation loss is NaN");
    const evals = ofType(await runMetrics(`${wired.dir}/out`), "eval");
    assertEquals(evals.length, 1, "the end of stage's finite evaluation only");
    assert(evals.every((m) => Number.isFinite(m.valLoss)), JSON.stringify(evals));
  },
});
