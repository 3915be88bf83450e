/**
 * The same stage graph run on two backends, step by step: how a backend is
 * shown to compute what the reference computes (training steps, growth,
 * ReLoRA attach and merges, evaluation, export). The WebGPU test and the GPU
 * device program both call it.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { renderError } from "../base/mod.ts";
import { type BackendName, runPipeline, type ValidGraph } from "../pipeline/mod.ts";
import { readMetrics } from "./run_dir.ts";
import { wireRun } from "./env.ts";

/** What one backend's run produced. */
export interface BackendRun {
  readonly backend: string;
  /** Training loss per step, in order. */
  readonly losses: number[];
  readonly finalValLoss: number;
  readonly mergedValLoss: number;
  readonly seconds: number;
}

/** Two backends' runs side by side. */
export interface BackendComparison {
  readonly runs: readonly [BackendRun, BackendRun];
  /** Largest |Δloss| / max(1, |loss|) over the training steps. */
  readonly worstStep: number;
  /** |Δ| of the final validation losses. */
  readonly valDiff: number;
  /** Steps compared (both runs must log the same number). */
  readonly steps: number;
  /** Every step, the final validation loss and the merge within `tolerance`. */
  readonly passed: boolean;
}

async function runOn(g: ValidGraph, backend: BackendName, dir: string): Promise<BackendRun> {
  const t0 = performance.now();
  const out = `${dir}/${backend}`;
  const wired = await wireRun(g, { out, mode: "fresh", backend, print: () => {} })();
  if (E.isLeft(wired)) throw new Error(renderError(wired.left));
  try {
    const r = await runPipeline(g, { resume: false })(wired.right.env)();
    if (E.isLeft(r)) throw new Error(`On "${backend}": ${renderError(r.left)}`);
    const metrics = await readMetrics(out);
    if (E.isLeft(metrics)) throw new Error(renderError(metrics.left));
    return {
      backend,
      // A skipped step's loss is not finite: NaN, as it was computed.
      losses: metrics.right.flatMap((m) => m.type === "train" ? [m.loss ?? NaN] : []),
      finalValLoss: r.right.finalValLoss,
      mergedValLoss: r.right.mergedValLoss,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await wired.right.release();
  }
}

/**
 * Runs `g` on `reference` then `candidate` (each in its own folder of a fresh temporary
 * directory) and compares their losses step by step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { compareBackends } from "./compare_backends.ts";
 * import { decodePipeline, validateGraph } from "../pipeline/mod.ts";
 * const graph = E.flatMap(decodePipeline({
 *   version: 1,
 *   model: { hidden: 16, intermediate: 32, heads: 2, layers: 1, vocab: 257, maxSeqLen: 16 },
 *   training: { seqLen: 16, microBatch: 2, batchTokens: 32, evalBatches: 1 },
 *   data: { source: "builtin", builtinBytes: 5000 },
 *   nodes: [{ op: "train", id: "t", layers: 1, steps: 2 }],
 * }, "example"), validateGraph);
 * if (E.isRight(graph)) {
 *   const c = await compareBackends(graph.right, { reference: "cpu", candidate: "wasm" });
 *   assert(c.steps === 2, `${c.worstStep}`);
 * }
 * ```
 */
export async function compareBackends(
  g: ValidGraph,
  backends: {
    readonly reference: BackendName;
    readonly candidate: BackendName;
    /** Largest relative difference allowed per step (default 1e-4). */
    readonly tolerance?: number;
  },
): Promise<BackendComparison> {
  const tolerance = backends.tolerance ?? 1e-4;
  const dir = await Deno.makeTempDir({ prefix: "step-backends-" });
  try {
    const a = await runOn(g, backends.reference, dir);
    const b = await runOn(g, backends.candidate, dir);
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
      passed: steps > 0 && worstStep <= tolerance && valDiff <= tolerance &&
        mergeDiff <= tolerance,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
