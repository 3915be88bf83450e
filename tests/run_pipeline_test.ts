/**
 * `deno task run` end to end on a tiny STEP graph: the report's per-stage
 * figures, measured against predicted memory, the merged export, and a run
 * killed in the middle of stage 2 that resumes to the same result.
 */
import YAML from "yaml";
import { assert, assertAlmostEquals, assertEquals, assertStringIncludes } from "./assert.ts";
import { main } from "../cli/run.ts";
import { stopAtCheckpoint } from "./kill_run.ts";
import { ofType, runMetrics } from "./metrics.ts";

const ROOT = new URL("../", import.meta.url).pathname;

function graph(stages: 2 | 3): unknown {
  const nodes: unknown[] = [
    { op: "train", id: "s1.train", layers: 2, steps: 12, scheduleSteps: 16, warmup: 3 },
    { op: "grow", id: "s2.grow", add: 1 },
    {
      op: "attachPET",
      id: "s2.pet",
      kind: "relora",
      rank: 2,
      alpha: 4,
      resetEvery: 5,
      restartWarmup: 2,
    },
    { op: "continue", id: "s2.continue", steps: 12, warmup: 2 },
  ];
  if (stages === 3) {
    nodes.push(
      { op: "grow", id: "s3.grow", add: 1, placement: "uniform" },
      {
        op: "attachPET",
        id: "s3.pet",
        kind: "relora",
        rank: 2,
        alpha: 4,
        resetEvery: 5,
        restartWarmup: 2,
      },
      { op: "continue", id: "s3.continue", steps: 8, warmup: 2 },
    );
  }
  return {
    version: 1,
    name: `tiny-${stages}`,
    model: {
      hidden: 16,
      intermediate: 32,
      heads: 2,
      layers: stages === 2 ? 3 : 4,
      vocab: 257,
      maxSeqLen: 32,
    },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 4,
      batchTokens: 128,
      lr: 0.01,
      warmup: 3,
      evalEvery: 6,
      evalBatches: 2,
      checkpointEvery: 4,
      logEvery: 4,
      seed: 3,
    },
    data: { source: "builtin", builtinBytes: 30000, cacheDir: `${ROOT}.cache/tokens` },
    nodes,
  };
}

async function writeGraph(dir: string, stages: 2 | 3): Promise<string> {
  const path = `${dir}/g${stages}.yaml`;
  await Deno.writeTextFile(path, YAML.stringify(graph(stages)));
  return path;
}

async function run(...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(args, (l) => lines.push(l));
  return { code, out: lines.join("\n") };
}

interface Report {
  stages: {
    layers: number;
    trainableParams: number;
    frozenParams: number;
    adapterParams: number;
    valLoss: number;
    measuredPeakBytes: number;
    predictedPeakBytes: number;
    accountedStateBytes: number;
    predictedStateBytes: number;
    processPeakBytes?: number;
    withinBudget?: boolean;
    merges: number;
  }[];
  standardPredictedPeakBytes: number;
  memoryBudgetBytes: number | null;
  finalCheckpoint: string;
  finalValLoss: number;
  mergedValLoss: number;
  resumedFrom: number | null;
}

async function report(dir: string): Promise<Report> {
  return JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
}

async function trainLosses(dir: string): Promise<(number | null)[]> {
  return ofType(await runMetrics(dir), "train").map((r) => r.loss);
}

Deno.test({
  name:
    "run: a two-stage graph reports the engine's measured peak within 10% of the prediction, and a merged export",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const r = await run(await writeGraph(dir, 2), "--out", `${dir}/out`);
    assertEquals(r.code, 0, r.out);
    assertStringIncludes(r.out, "ReLoRA merge @ step 5");
    assertStringIncludes(r.out, "tok/s");
    const rep = await report(`${dir}/out`);
    assertEquals(rep.stages.map((s) => s.layers), [2, 3]);
    for (const s of rep.stages) {
      // Read from the engine's buffers during the steps, against the replay of the step.
      assertAlmostEquals(s.measuredPeakBytes / s.predictedPeakBytes, 1, 0.1);
      // The live tensors by role (frozen layers without gradients or moments, adapters once)
      // against the plan's model state.
      assertEquals(s.accountedStateBytes, s.predictedStateBytes);
      assert(s.predictedStateBytes < s.measuredPeakBytes);
      // The OS's resident high-water holds every tensor buffer and more.
      if (s.processPeakBytes !== undefined) assert(s.processPeakBytes > s.measuredPeakBytes);
    }
    const [s1, s2] = rep.stages;
    assert(s1 !== undefined && s2 !== undefined);
    assertEquals(s1.adapterParams, 0);
    assertEquals(s1.frozenParams, 0);
    assert(s2.adapterParams > 0 && s2.frozenParams > 0 && s2.trainableParams > 0);
    assertEquals(s2.merges, 2);
    assert(rep.standardPredictedPeakBytes > Math.max(s1.measuredPeakBytes, s2.measuredPeakBytes));
    assertAlmostEquals(rep.mergedValLoss, rep.finalValLoss, 1e-4);
    assert((await Deno.stat(rep.finalCheckpoint)).isFile);
    assert((await Deno.readTextFile(`${dir}/out/loss.svg`)).startsWith("<svg"));
    assert((await Deno.readTextFile(`${dir}/out/memory.svg`)).startsWith("<svg"));
  },
});

Deno.test({
  name: "run: a three-stage graph grows twice and trains adapters on the frozen layers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const r = await run(await writeGraph(dir, 3), "--out", `${dir}/out`);
    assertEquals(r.code, 0, r.out);
    const rep = await report(`${dir}/out`);
    assertEquals(rep.stages.map((s) => s.layers), [2, 3, 4]);
    for (const s of rep.stages) {
      assertAlmostEquals(s.measuredPeakBytes / s.predictedPeakBytes, 1, 0.1);
      assertEquals(s.accountedStateBytes, s.predictedStateBytes);
    }
    assert((rep.stages[2]?.adapterParams ?? 0) > (rep.stages[1]?.adapterParams ?? 0));
  },
});

Deno.test({
  name: "run: a run killed in the middle of stage 2 resumes to the uninterrupted run's losses",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await writeGraph(dir, 2);
    const whole = await run(file, "--out", `${dir}/whole`);
    assertEquals(whole.code, 0, whole.out);

    // Wait for a checkpoint inside stage 2's `continue` (node index 3), then kill -9.
    const { at: killedAt } = await stopAtCheckpoint(
      [file, "--out", `${dir}/killed`],
      `${dir}/killed`,
      { nodeIndex: 3, minStep: 1 },
    );
    assert(killedAt > 12, `killed at global step ${killedAt}`);

    const resumed = await run(file, "--out", `${dir}/killed`, "--resume");
    assertEquals(resumed.code, 0, resumed.out);
    assertStringIncludes(resumed.out, "Resumed at node");
    const a = await report(`${dir}/whole`);
    const b = await report(`${dir}/killed`);
    assert(b.resumedFrom !== null && b.resumedFrom >= killedAt);
    assertEquals(b.finalValLoss, a.finalValLoss);
    assertEquals(await trainLosses(`${dir}/killed`), await trainLosses(`${dir}/whole`));
  },
});

Deno.test({
  name:
    "`deno task run examples/pipeline.ts --dry-run` plans the README's main job and prints its stages",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "run", "examples/pipeline.ts", "--dry-run"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    // The split the planner picks, counting activations (4 layers in two stages).
    const split = /split \[(\d+), (\d+)\]/.exec(text);
    assert(split !== null, text);
    assertEquals(Number(split[1]) + Number(split[2]), 4);
    assertStringIncludes(text, "activations");
    assertStringIncludes(text, "s2.continue");
    assertStringIncludes(text, "Standard pre-training of the final model");
  },
});

Deno.test({
  name: "plan --budget, then run the emitted graph: every stage's measured peak stays within it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { main: plan } = await import("../cli/plan.ts");
    const { capture } = await import("./cli_capture.ts");
    const dir = await Deno.makeTempDir();
    // Model state dominates (6 layers, one short sequence, layers recomputed), so stages help.
    const config = {
      name: "budget",
      model: { hidden: 64, intermediate: 176, heads: 4, layers: 6, vocab: 257, maxSeqLen: 32 },
      pet: { rank: 4, alpha: 8, resetEvery: 5, restartWarmup: 2 },
      memory: { precision: "fp32", embeddings: true, activations: true },
      training: {
        backend: "auto",
        seqLen: 32,
        microBatch: 1,
        batchTokens: 64,
        recompute: "layers",
        steps: 6,
        warmup: 2,
        evalEvery: 6,
        evalBatches: 1,
        checkpointEvery: 6,
        logEvery: 3,
      },
      data: { source: "builtin", builtinBytes: 20000, cacheDir: `${ROOT}.cache/tokens` },
    };
    const configPath = `${dir}/budget.yaml`;
    await Deno.writeTextFile(configPath, YAML.stringify(config));
    const planned = JSON.parse((await capture(plan, [configPath, "--json"])).out);
    // Below standard pre-training's peak: only a staged run fits.
    const budget = Math.round(0.85 * planned.standardBytes);
    const emitted = await capture(plan, [
      configPath,
      "--budget",
      String(budget),
      "--emit",
      `${dir}/g.yaml`,
    ]);
    assertEquals(emitted.code, 0, emitted.err);
    const r = await run(`${dir}/g.yaml`, "--out", `${dir}/out`);
    assertEquals(r.code, 0, r.out);
    assertStringIncludes(r.out, "every stage's measured peak within it");
    const rep = await report(`${dir}/out`);
    assertEquals(rep.memoryBudgetBytes, budget);
    assert(rep.stages.length >= 2);
    for (const s of rep.stages) {
      assert(
        s.withinBudget === true && s.measuredPeakBytes <= budget,
        `${s.measuredPeakBytes} > ${budget}`,
      );
    }
  },
});

Deno.test({
  name:
    "run: a stage predicted over the graph's memory budget is warned of, and the excess reported",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/tight.yaml`;
    await Deno.writeTextFile(
      path,
      YAML.stringify({ ...graph(2) as object, memoryBudget: "100KB" }),
    );
    const dry = await run(path, "--dry-run");
    assertEquals(dry.code, 0, dry.out);
    assertStringIncludes(dry.out, "Memory budget 100.00 KB: stage 1, 2 predicted over it");
    const r = await run(path, "--out", `${dir}/out`);
    assertEquals(r.code, 0, r.out);
    assertStringIncludes(r.out, "warning: stage 1's predicted peak");
    assertStringIncludes(r.out, "Memory budget 100.00 KB EXCEEDED by stage 1");
    const rep = await report(`${dir}/out`);
    assert(rep.stages.every((s) => s.withinBudget === false));
  },
});
