/**
 * Training throughput and GPU memory on the webgpu backend: tokens/s of full
 * steps (forward, backward, AdamW) after one warm-up step, GFLOP/s counted as
 * 6·N per token (as bench/train_bench.ts), the GPU bytes in use at the
 * step's peak against the planner's fp32 model-state prediction, and the
 * adapter that ran it.
 *
 * Shapes are [d, L, V, T, B] with the model of bench/train_bench.ts
 * (`benchShape`): the two reference shapes by default; the larger
 * {@link LARGE_SHAPE} is for a real GPU.
 *
 * Run: `deno run -A --unstable-webgpu bench/gpu_bench.ts [--json] [--composite] [d,L,V,T,B ...]`
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import {
  createTrainState,
  disposeState,
  fusedOps,
  initBackend,
  initParams,
  type TrainState,
  trainStep,
} from "../kernels/mod.ts";
import {
  registerWebGpuKernels,
  trackGpuPeak,
  unregisterWebGpuKernels,
} from "../kernels/webgpu/mod.ts";
import { standardModelState } from "../pipeline/mod.ts";
import { engineStepMemory } from "../solvers/mod.ts";
import { firstStageRoles } from "../base/mod.ts";
import { batchOf, benchShape, DEFAULT_SHAPES } from "./train_bench.ts";

/** [d, L, V, T, B]. */
export type GpuBenchShape = [number, number, number, number, number];

/** A GPT-2-vocabulary model for a real GPU: d 1024, 8 layers, T 1024, 4 sequences. */
export const LARGE_SHAPE: GpuBenchShape = [1024, 8, 50257, 1024, 4];

/** Which implementation the fused ops used. */
export type KernelPath = "fused" | "composite";

/** One measured shape; self-describing, so rows can be printed or merged as they are. */
export interface GpuBenchRow {
  /** [d, L, V, T, B]. */
  readonly shape: number[];
  readonly backend: "webgpu";
  /** `fused`: the WGSL kernels of kernels/webgpu; `composite`: plain tfjs ops. */
  readonly kernels: KernelPath;
  /** The adapter, e.g. `nvidia … NVIDIA H100 80GB HBM3`. */
  readonly adapter: string;
  readonly tokensPerSec: number;
  /** 6 · N · tokensPerSec / 1e9. */
  readonly gflops: number;
  readonly stepMs: number;
  /** N: every parameter, embedding and LM head included. */
  readonly params: number;
  /** Peak GPU bytes in use during the timed steps (tfjs's buffer manager). */
  readonly gpuBytes: number;
  /** GPU bytes tfjs holds at the end, its reuse pool included (never returned to the driver). */
  readonly gpuAllocatedBytes: number;
  /** Model state measured at the step's peak (weights, gradients, Adam m and v). */
  readonly modelStateBytes: number;
  /** The planner's fp32 model state: 16 B per trained parameter (pipeline/predict.ts). */
  readonly predictedModelStateBytes: number;
  /** The step's peak as the buffer replay predicts it with these kernels (solvers/engine_memory.ts). */
  readonly predictedPeakBytes: number;
  /** Loss of the last timed step. */
  readonly loss: number;
}

/** Options of {@link benchGpu}. */
export interface GpuBenchOptions {
  /** Shapes; default the two reference shapes of bench/train_bench.ts. */
  readonly shapes?: readonly GpuBenchShape[];
  /** Timed steps after the warm-up; default 3. */
  readonly steps?: number;
  /** Kernel paths to measure, in order; default `["fused"]`. */
  readonly kernels?: readonly KernelPath[];
  /** Called with each row as it is measured (a slow shape still shows the rows before it). */
  readonly onRow?: (row: GpuBenchRow) => void;
}

/** The adapter's vendor, architecture, device and description, as one string. */
export async function adapterName(): Promise<string> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === undefined || adapter === null) return "no adapter";
  const info = adapter.info;
  const parts = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s !== "" && s !== "0");
  return parts.length === 0 ? "unnamed adapter" : parts.join(" ");
}

/** Waits until the GPU has run everything queued (a one-float read queues behind it). */
async function drain(state: TrainState): Promise<void> {
  const [first] = state.params.values();
  if (first === undefined) return;
  const s = tf.sum(first);
  await s.data();
  s.dispose();
}

async function benchOne(
  dims: GpuBenchShape,
  kernels: KernelPath,
  steps: number,
  adapter: string,
): Promise<GpuBenchRow> {
  const [d, layers, vocab, seq, batch] = dims;
  const shape = benchShape(d, layers, vocab, seq);
  let state = createTrainState(shape, initParams(shape, layers, 0));
  const params = [...state.params.values()].reduce((s, t) => s + t.size, 0);
  const mb = batchOf(vocab, seq, batch, d * layers);
  state = (await trainStep(state, [mb], { lr: 1e-4 })).state; // warm-up: pipelines compile
  await drain(state);
  const tracker = trackGpuPeak();
  let loss = NaN;
  let modelState = 0;
  const t0 = performance.now();
  try {
    for (let i = 0; i < steps; i++) {
      const r = await trainStep(state, [mb], { lr: 1e-4 });
      state = r.state;
      loss = r.loss;
      modelState = r.accounted.modelState;
    }
    await drain(state);
  } finally {
    tracker.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  const gpuBytes = tracker.peak();
  const gpuAllocatedBytes = tracker.allocated();
  disposeState(state);
  const tokensPerSec = (steps * batch * seq) / seconds;
  return {
    shape: [...dims],
    backend: "webgpu",
    kernels,
    adapter,
    tokensPerSec,
    gflops: (6 * params * tokensPerSec) / 1e9,
    stepMs: (1000 * seconds) / steps,
    params,
    gpuBytes,
    gpuAllocatedBytes,
    modelStateBytes: modelState,
    predictedModelStateBytes: standardModelState(shape),
    predictedPeakBytes: engineStepMemory({
      shape,
      roles: firstStageRoles(layers),
      rank: 0,
      microBatch: batch,
      seqLen: seq,
      accumulation: 1,
      fused: fusedOps(),
      recompute: "none",
    }).peakBytes,
    loss,
  };
}

/**
 * Measures training on the webgpu backend, one row per (kernel path, shape).
 *
 * @throws {Error} when no WebGPU adapter is available.
 * @example
 * ```ts
 * import { benchGpu } from "./gpu_bench.ts";
 * const rows = await benchGpu({ shapes: [[64, 2, 128, 32, 2]], steps: 1 });
 * console.log(rows[0]!.tokensPerSec, rows[0]!.gpuBytes, rows[0]!.predictedModelStateBytes);
 * ```
 */
export async function benchGpu(opts: GpuBenchOptions = {}): Promise<GpuBenchRow[]> {
  const got = await initBackend("webgpu");
  if (E.isLeft(got)) throw new Error(got.left.message);
  const adapter = await adapterName();
  const rows: GpuBenchRow[] = [];
  try {
    for (const kernels of opts.kernels ?? ["fused"]) {
      if (kernels === "fused") registerWebGpuKernels();
      else unregisterWebGpuKernels();
      for (const dims of opts.shapes ?? DEFAULT_SHAPES) {
        const row = await benchOne(dims, kernels, opts.steps ?? 3, adapter);
        rows.push(row);
        opts.onRow?.(row);
      }
    }
  } finally {
    registerWebGpuKernels();
  }
  return rows;
}

/** Bytes as MiB with one decimal. */
function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

/** The header and one line per row, as the device script prints them. */
export function gpuBenchTable(rows: readonly GpuBenchRow[]): string {
  const lines = [
    "shape [d, L, V, T, B]        kernels     tokens/s   GFLOP/s   GPU peak MiB (predicted)   " +
    "model state MiB (predicted)",
  ];
  for (const r of rows) {
    lines.push(
      `[${r.shape.join(", ")}]`.padEnd(29) + r.kernels.padEnd(10) +
        r.tokensPerSec.toFixed(0).padStart(10) + r.gflops.toFixed(1).padStart(10) +
        `${mib(r.gpuBytes)} (${mib(r.predictedPeakBytes)})`.padStart(27) +
        `   ${mib(r.modelStateBytes)} (${mib(r.predictedModelStateBytes)})`,
    );
  }
  return lines.join("\n");
}

function parseShape(text: string): GpuBenchShape {
  const xs = text.split(",").map(Number);
  if (xs.length !== 5 || xs.some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new Error(`Cannot read shape "${text}": expected five positive integers d,L,V,T,B`);
  }
  return xs as GpuBenchShape;
}

if (import.meta.main) {
  const json = Deno.args.includes("--json");
  const kernels: KernelPath[] = Deno.args.includes("--composite")
    ? ["fused", "composite"]
    : ["fused"];
  const given = Deno.args.filter((a) => !a.startsWith("--")).map(parseShape);
  if (!json) console.log(gpuBenchTable([]));
  const rows = await benchGpu({
    shapes: given.length > 0 ? given : DEFAULT_SHAPES,
    kernels,
    onRow: (r) => {
      if (!json) console.log(gpuBenchTable([r]).split("\n")[1]);
    },
  });
  if (json) console.log(JSON.stringify(rows, null, 2));
  else console.log(`adapter: ${rows[0]?.adapter ?? "-"}`);
}
