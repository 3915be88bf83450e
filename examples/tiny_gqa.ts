/**
 * A tiny two-stage STEP graph that exercises every part of a run in seconds:
 * grouped-query attention (2 heads, 1 KV head), training, growth, ReLoRA
 * attach and a merge every 4 steps, evaluation and the final export. The
 * WebGPU test and the GPU device program run it on two backends and compare.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { decodePipeline, type Pipeline, type PipelineError } from "../mod.ts";

/** The graph, its tokens cached under `cacheDir` (the backend is `training.backend`'s default). */
export function tinyGqaPipeline(cacheDir = ".cache/tokens"): E.Either<PipelineError, Pipeline> {
  return decodePipeline({
    version: 1,
    name: "tiny-gqa",
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
  }, "examples/tiny_gqa.ts");
}
