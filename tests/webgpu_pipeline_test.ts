/**
 * The whole STEP pipeline (training steps, growth, ReLoRA attach and merges,
 * evaluation, export) on the WebGPU backend agrees with the CPU backend. On a
 * machine without a GPU, Mesa's software Vulkan driver provides the adapter;
 * without any adapter the test is skipped with a message.
 */
import YAML from "yaml";
import { assert, assertEquals } from "./assert.ts";
import { main } from "../cli/run.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function adapterMissing(): Promise<string | undefined> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (gpu === undefined) return "navigator.gpu is missing (run with --unstable-webgpu)";
  const adapter = await gpu.requestAdapter();
  return adapter === null ? "no WebGPU adapter (install mesa-vulkan-drivers)" : undefined;
}

const why = await adapterMissing();
if (why !== undefined) console.log(`skipping the WebGPU pipeline test: ${why}`);

function graph(backend: string): string {
  return YAML.stringify({
    version: 1,
    name: `tiny-${backend}`,
    model: {
      hidden: 16,
      intermediate: 32,
      heads: 2,
      kvHeads: 1,
      layers: 3,
      vocab: 257,
      maxSeqLen: 32,
    },
    training: {
      backend,
      seqLen: 16,
      microBatch: 4,
      batchTokens: 128,
      lr: 0.01,
      warmup: 3,
      evalEvery: 6,
      evalBatches: 2,
      checkpointEvery: 100,
      logEvery: 12,
      seed: 5,
    },
    data: { source: "builtin", builtinBytes: 30000, cacheDir: `${ROOT}.cache/tokens` },
    nodes: [
      { op: "train", id: "s1.train", layers: 2, steps: 10, scheduleSteps: 13, warmup: 3 },
      { op: "grow", id: "s2.grow", add: 1 },
      {
        op: "attachPET",
        id: "s2.pet",
        kind: "relora",
        rank: 2,
        alpha: 4,
        resetEvery: 4,
        restartWarmup: 1,
      },
      { op: "continue", id: "s2.continue", steps: 10, warmup: 2 },
    ],
  });
}

async function runOn(
  backend: string,
): Promise<{ losses: number[]; report: Record<string, number> }> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/g.yaml`, graph(backend));
  const code = await main([`${dir}/g.yaml`, "--out", `${dir}/out`], () => {});
  assertEquals(code, 0);
  const metrics = (await Deno.readTextFile(`${dir}/out/metrics.jsonl`)).split("\n")
    .filter((l) => l.length > 0).map((l) => JSON.parse(l));
  return {
    losses: metrics.filter((r) => r.type === "train").map((r) => r.loss),
    report: JSON.parse(await Deno.readTextFile(`${dir}/out/report.json`)),
  };
}

Deno.test({
  name: "webgpu runs a two-stage STEP pipeline with the same losses as cpu",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cpu = await runOn("cpu");
    const gpu = await runOn("webgpu");
    assertEquals(gpu.losses.length, cpu.losses.length);
    gpu.losses.forEach((l, i) =>
      assert(
        Math.abs(l - cpu.losses[i]!) <= 1e-4 * Math.max(1, Math.abs(l)),
        `step ${i + 1}: ${l} vs ${cpu.losses[i]}`,
      )
    );
    assert(Math.abs(gpu.report.finalValLoss! - cpu.report.finalValLoss!) <= 1e-4);
    assert(Math.abs(gpu.report.mergedValLoss! - gpu.report.finalValLoss!) <= 1e-4);
  },
});
