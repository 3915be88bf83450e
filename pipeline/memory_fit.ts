/**
 * Whether a graph's stages fit the memory their backend has on this machine, and the largest
 * model that does: each stage's predicted step peak (`predictRun`, the buffer replay) against
 * the backend's limit, which `effects/` reads from the OS and the wasm binary and passes in as
 * plain data. `plan`, `run --dry-run` and `run` print it; a stage past the limit is refused
 * before any tensor is allocated.
 *
 * @module
 */
import { formatBytes, type PlanInfeasible, planInfeasible } from "../base/mod.ts";
import { type FusibleOp, type Largest, largestWithin, type MemoryLimit } from "../solvers/mod.ts";
import { BACKEND_FUSED, type BackendName } from "./config.ts";
import { predictRun, predictStandardRun } from "./predict.ts";
import type { ValidGraph } from "./validate_graph.ts";

/**
 * Where emscripten stops growing a wasm32 heap: its `getHeapMax` in tfjs-backend-wasm 4.22's
 * glue is 2³² − 64 KiB, one page short of the 65,536 pages the module declares (the heap was
 * measured to stop there: 4,294,901,760 bytes).
 */
export const EMSCRIPTEN_HEAP_CEILING = 2 ** 32 - 2 ** 16;

/**
 * What tfjs-backend-wasm's allocator loses to fragmentation near the heap's ceiling, measured
 * here: a standard step of width 512 and 82 layers held 4.21 GB of tensors when a 2.9 MB one
 * found no room in the full 4.29 GB heap (84 MB free, in pieces), while 81 layers (a 4.17 GB
 * peak) trained.
 */
export const WASM_HEAP_FRAGMENTATION = 96 * 2 ** 20;

/**
 * Depths the largest-model search looks at: the replay's cost grows with the square of the
 * depth (256 layers: a few ms at width 1024; 1024 layers: 60 ms, 2048: 650 ms), and a deeper
 * model is far past what these backends train in useful time.
 */
export const LARGEST_DEPTH_SEARCHED = 256;

/** What `effects/` read about this machine's memory. */
export interface MachineMemory {
  /** Bytes the OS can give a process now: MemAvailable, or a cgroup's room when smaller. */
  readonly availableBytes: number;
  /** Where `availableBytes` comes from, e.g. `MemAvailable in /proc/meminfo`. */
  readonly availableFrom: string;
  /**
   * The wasm backend's linear memory as its binary declares it: the maximum and the initial
   * size (static data and the stack live in the initial pages). Undefined when it could not be
   * read; the wasm backends then get the OS figure only.
   */
  readonly wasmHeap?: { readonly maxBytes: number; readonly initialBytes: number };
}

/** Where a graph trains: the tfjs backend, or the torch engine's device and ranks. */
export function engineOf(g: ValidGraph, backend: BackendName): string {
  const t = g.training;
  return t.engine === "torch" ? `torch on ${t.torch.device}` : backend;
}

/** The ops the engine that trains `g` runs fused: the torch engine's prediction uses none. */
function fusedFor(g: ValidGraph, backend: BackendName): readonly FusibleOp[] {
  return g.training.engine === "torch" ? [] : BACKEND_FUSED[backend];
}

/**
 * The memory a graph's tensors can use on `backend`: the wasm backends hold every tensor in
 * the wasm32 heap (`auto` runs OpenBLAS in place on it), less the initial pages that hold the
 * module's static data and stack and what the allocator loses to fragmentation, and never more
 * than the OS gives; `cpu`, `blas` and
 * `tensorflow` hold them in the process's own memory; the torch engine on the CPU runs
 * `nproc` ranks on this node, each with the whole model (FSDP shards less: the figure is then
 * conservative). GPU memory is not known before the backend allocates.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { backendLimit } from "./memory_fit.ts";
 * const machine = {
 *   availableBytes: 24e9,
 *   availableFrom: "MemAvailable",
 *   wasmHeap: { maxBytes: 2 ** 32, initialBytes: 2 ** 24 },
 * };
 * const cpu = { engine: "tfjs", torch: { device: "cpu", nproc: 1 } } as const;
 * const wasm = backendLimit(cpu, "auto", machine);
 * assert(wasm.kind === "bytes" && wasm.bytes === 2 ** 32 - 2 ** 16 - 2 ** 24 - 96 * 2 ** 20);
 * const blas = backendLimit(cpu, "blas", machine);
 * assert(blas.kind === "bytes" && blas.bytes === 24e9);
 * assert(backendLimit(cpu, "webgpu", machine).kind === "unknown");
 * ```
 */
export function backendLimit(
  training: {
    readonly engine: string;
    readonly torch: { readonly device: string; readonly nproc: number };
  },
  backend: BackendName,
  machine: MachineMemory,
): MemoryLimit {
  const os = machine.availableBytes;
  const osWhat = Number.isFinite(os)
    ? `${formatBytes(os)} available (${machine.availableFrom})`
    : machine.availableFrom;
  const osLimit = (bytes: number, what: string): MemoryLimit =>
    Number.isFinite(bytes)
      ? { kind: "bytes", bytes, what }
      : { kind: "unknown", what: `the OS's memory is ${machine.availableFrom}` };
  if (training.engine === "torch") {
    const { device, nproc } = training.torch;
    if (device === "cuda") {
      return {
        kind: "unknown",
        what: "GPU memory is not known before launch (the trainer measures the CUDA peak)",
      };
    }
    return nproc === 1 ? osLimit(os, `the OS's memory: ${osWhat}`) : osLimit(
      Math.floor(os / nproc),
      `the OS's memory over ${nproc} ranks on this node: ${osWhat}`,
    );
  }
  if (backend === "webgpu") {
    return {
      kind: "unknown",
      what: "GPU memory is not known through WebGPU before buffers are allocated",
    };
  }
  if (backend === "auto" || backend === "wasm") {
    const heap = machine.wasmHeap;
    if (heap === undefined) {
      return osLimit(os, `the OS's memory (the wasm heap's size could not be read): ${osWhat}`);
    }
    const ceiling = Math.min(heap.maxBytes, EMSCRIPTEN_HEAP_CEILING);
    const usable = ceiling - heap.initialBytes - WASM_HEAP_FRAGMENTATION;
    return usable <= os
      ? {
        kind: "bytes",
        bytes: usable,
        what: `the wasm32 heap: ${formatBytes(ceiling)} at most, less its initial ${
          formatBytes(heap.initialBytes)
        } (static data, stack) and ${
          formatBytes(WASM_HEAP_FRAGMENTATION)
        } lost to fragmentation; the OS has ${osWhat}`,
      }
      : osLimit(os, `the OS's memory, below the wasm32 heap's ${formatBytes(usable)}: ${osWhat}`);
  }
  return osLimit(os, `the OS's memory: ${osWhat}`);
}

/** One stage's predicted peak against the limit. */
export interface StageFit {
  /** The stage's number, from 1. */
  readonly stage: number;
  /** The stage's `train` node, which error messages name. */
  readonly node: string;
  /** The predicted peak of one of its training steps (state, activations, workspace). */
  readonly peakBytes: number;
  /** Whether the peak is within the limit; undefined when the limit is not known. */
  readonly fits?: boolean;
}

/** A graph's stages against a backend's memory, and the deepest standard model that fits. */
export interface MemoryFit {
  /** The engine and backend, e.g. `auto` or `torch on cpu`. */
  readonly on: string;
  /** The memory the backend has for tensors here, or why it is not known. */
  readonly limit: MemoryLimit;
  /** Every stage, in order. */
  readonly stages: readonly StageFit[];
  /**
   * The most layers standard pre-training at the graph's width, vocabulary and batch fits
   * (searched up to {@link LARGEST_DEPTH_SEARCHED}); undefined when the limit is not known.
   */
  readonly largestDepth?: Largest;
}

/**
 * The predicted step peak of standard pre-training of `g`'s model at `layers` layers, with the
 * graph's batches and training modes (what the largest-model search evaluates).
 */
export function standardPeakAtDepth(
  g: ValidGraph,
  fused: readonly FusibleOp[],
  layers: number,
): number {
  return predictStandardRun({ ...g, shape: { ...g.shape, layers } }, fused).peakBytes;
}

/** Each stage of `g` on `backend` against `limit`. */
export function memoryFit(g: ValidGraph, backend: BackendName, limit: MemoryLimit): MemoryFit {
  const fused = fusedFor(g, backend);
  const peaks = predictRun(g, fused);
  const stages = g.stages.map((s, i) => {
    const peakBytes = peaks[i]?.peakBytes ?? 0;
    return {
      stage: s.index,
      node: s.trainNodeId,
      peakBytes,
      ...(limit.kind === "bytes" ? { fits: peakBytes <= limit.bytes } : {}),
    };
  });
  if (limit.kind === "unknown") return { on: engineOf(g, backend), limit, stages };
  const largestDepth = largestWithin(
    (layers) => standardPeakAtDepth(g, fused, layers),
    limit.bytes,
    LARGEST_DEPTH_SEARCHED,
  );
  return { on: engineOf(g, backend), limit, stages, largestDepth };
}

/** The deepest standard model that fits, in words. */
function largestText(g: ValidGraph, fit: MemoryFit): string | undefined {
  const l = fit.largestDepth;
  if (l === undefined) return undefined;
  const T = g.training;
  const at =
    `hidden ${g.shape.hidden}, vocabulary ${g.shape.vocab}, micro-batch ${T.microBatch} × ${T.seqLen} tokens${
      T.recompute === "layers" ? ", layers recomputed" : ""
    }`;
  if (l.size === 0) return `no standard pre-training at ${at} fits, not even 1 layer`;
  return `the largest standard pre-training that fits at ${at}: ${
    l.capped ? `at least ${l.size}` : l.size
  } layers (peak ${formatBytes(l.peak ?? 0)})`;
}

/**
 * The fit as `plan` and `run --dry-run` print it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodePipeline, validateGraph } from "./mod.ts";
 * import { fitText, memoryFit } from "./memory_fit.ts";
 * const g = E.flatMap(decodePipeline({
 *   version: 1,
 *   model: { hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 16 },
 *   training: { seqLen: 16, microBatch: 2, batchTokens: 32 },
 *   data: { source: "builtin" },
 *   nodes: [{ op: "train", id: "t", layers: 2, steps: 1 }],
 * }, "example"), validateGraph);
 * assert(E.isRight(g));
 * const fit = memoryFit(g.right, "blas", { kind: "bytes", bytes: 1e6, what: "1 MB" });
 * assert(fitText(g.right, fit).includes("stage 1 (t): peak"));
 * ```
 */
export function fitText(g: ValidGraph, fit: MemoryFit): string {
  const limit = fit.limit;
  const lines = [
    limit.kind === "bytes"
      ? `Memory on ${fit.on} here: ${formatBytes(limit.bytes)} for tensors (${limit.what})`
      : `Memory on ${fit.on} here: not checked before the run (${limit.what})`,
  ];
  for (const s of fit.stages) {
    const verdict = s.fits === undefined
      ? ""
      : s.fits
      ? " fits"
      : ` does not fit (${
        formatBytes(s.peakBytes - (limit.kind === "bytes" ? limit.bytes : 0))
      } over)`;
    lines.push(`  stage ${s.stage} (${s.node}): peak ${formatBytes(s.peakBytes)}${verdict}`);
  }
  const largest = largestText(g, fit);
  if (largest !== undefined) lines.push(`  ${largest}`);
  return lines.join("\n");
}

/**
 * The refusal of a graph whose stage does not fit (exit 3, before any tensor is allocated),
 * naming the stage's node, its predicted peak and the limit; undefined when every stage fits or
 * the limit is not known.
 */
export function fitProblem(g: ValidGraph, fit: MemoryFit): PlanInfeasible | undefined {
  const over = fit.stages.find((s) => s.fits === false);
  if (over === undefined || fit.limit.kind !== "bytes") return undefined;
  const largest = largestText(g, fit);
  return planInfeasible(
    `stage ${over.stage} (node ${over.node}) is predicted to peak at ${
      formatBytes(over.peakBytes)
    } (${over.peakBytes} bytes) on ${fit.on}, past the ${
      formatBytes(fit.limit.bytes)
    } (${fit.limit.bytes} bytes) this machine has for it: ${fit.limit.what}. ${
      largest === undefined ? "" : `${largest[0]?.toUpperCase()}${largest.slice(1)}. `
    }Train fewer layers per stage, a smaller micro-batch, recompute layers ` +
      "(training.recompute: layers), or choose a backend with more memory",
  );
}
