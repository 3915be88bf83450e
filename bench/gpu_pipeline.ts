/**
 * The two-stage STEP pipeline of tests/webgpu_pipeline_test.ts (GQA,
 * training, growth, ReLoRA attach and merges, evaluation) run through the
 * CLI on two backends, step by step, as a function: the GPU device program
 * calls it where `deno test` does not exist.
 *
 * @module
 */
import YAML from "yaml";
import { main } from "../cli/run.ts";

/** What one backend's run produced. */
export interface PipelineRun {
  readonly backend: string;
  /** Training loss per logged step, in order. */
  readonly losses: number[];
  readonly finalValLoss: number;
  readonly mergedValLoss: number;
  readonly seconds: number;
}

/** Two backends' runs side by side. */
export interface PipelineComparison {
  readonly runs: readonly [PipelineRun, PipelineRun];
  /** Largest |Δloss| / max(1, |loss|) over the training steps. */
  readonly worstStep: number;
  /** |Δ| of the final validation losses. */
  readonly valDiff: number;
  /** Steps compared (both runs must log the same number). */
  readonly steps: number;
  /** Within 1e-4, as the test asserts. */
  readonly passed: boolean;
}

/** The pipeline's stage graph for `backend`, data cached under `cacheDir`. */
function graph(backend: string, cacheDir: string): string {
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
    data: { source: "builtin", builtinBytes: 30000, cacheDir },
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

async function runOn(backend: string, dir: string): Promise<PipelineRun> {
  const t0 = performance.now();
  const at = `${dir}/${backend}`;
  await Deno.mkdir(at, { recursive: true });
  await Deno.writeTextFile(`${at}/g.yaml`, graph(backend, `${dir}/tokens`));
  const code = await main([`${at}/g.yaml`, "--out", `${at}/out`], () => {});
  if (code !== 0) throw new Error(`The pipeline on "${backend}" exited with ${code}`);
  const metrics = (await Deno.readTextFile(`${at}/out/metrics.jsonl`)).split("\n")
    .filter((l) => l.length > 0).map((l) => JSON.parse(l) as { type: string; loss: number });
  const report = JSON.parse(await Deno.readTextFile(`${at}/out/report.json`)) as {
    finalValLoss: number;
    mergedValLoss: number;
  };
  return {
    backend,
    losses: metrics.filter((r) => r.type === "train").map((r) => r.loss),
    finalValLoss: report.finalValLoss,
    mergedValLoss: report.mergedValLoss,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * Runs the pipeline on `reference` then `candidate` (in a fresh temporary
 * directory) and compares their losses step by step.
 *
 * @example
 * ```ts
 * import { comparePipelines } from "./gpu_pipeline.ts";
 * const c = await comparePipelines("cpu", "webgpu");
 * console.log(c.passed, c.worstStep);
 * ```
 */
export async function comparePipelines(
  reference: string,
  candidate: string,
): Promise<PipelineComparison> {
  const dir = await Deno.makeTempDir({ prefix: "step-gpu-pipeline-" });
  try {
    const a = await runOn(reference, dir);
    const b = await runOn(candidate, dir);
    const steps = Math.min(a.losses.length, b.losses.length);
    let worstStep = a.losses.length === b.losses.length ? 0 : Infinity;
    for (let i = 0; i < steps; i++) {
      const l = b.losses[i]!;
      worstStep = Math.max(worstStep, Math.abs(l - a.losses[i]!) / Math.max(1, Math.abs(l)));
    }
    const valDiff = Math.abs(a.finalValLoss - b.finalValLoss);
    const mergeDiff = Math.abs(b.mergedValLoss - b.finalValLoss);
    return {
      runs: [a, b],
      worstStep,
      valDiff,
      steps,
      passed: steps > 0 && worstStep <= 1e-4 && valDiff <= 1e-4 && mergeDiff <= 1e-4,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
