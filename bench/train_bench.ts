/**
 * Training throughput of the tensor engine: tokens/s of full steps (forward,
 * backward, AdamW) after one warm-up step, and GFLOP/s counted as 6·N per
 * token (N = all parameters, embedding and LM head included; attention's
 * T²-terms are not counted, as in the usual 6·N·T estimate).
 *
 * Model per shape [d, L, V, T, B]: hidden d, L layers, vocabulary V, sequence
 * T, batch B; LLaMA MLP width f = ⌈(8d/3) / 32⌉·32 (352 for d = 128, 704 for
 * d = 256), heads = d/64 with plain multi-head attention, untied LM head.
 *
 * Run: `deno run -A --unstable-webgpu bench/train_bench.ts [backend ...]`
 * (default `auto`; see `useBackend` for the names).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type Batch,
  createTrainState,
  disposeState,
  initBackend,
  initParams,
  isBackendName,
  trainStep,
} from "../kernels/mod.ts";
import { registerBlasWasmMatMul } from "../kernels/blas/mod.ts";
import { startBackend } from "../effects/mod.ts";
import { unregisterFusedWasmKernels } from "../kernels/fused/mod.ts";
import type { LlamaShape } from "../base/mod.ts";

/** One measured (shape, backend). */
export interface TrainBenchRow {
  /** [d, L, V, T, B]. */
  readonly shape: number[];
  readonly backend: string;
  /** The backend's one-line description (what runs the kernels). */
  readonly description: string;
  readonly tokensPerSec: number;
  /** 6 · N · tokensPerSec / 1e9. */
  readonly gflops: number;
}

/** Options of {@link benchTraining}. */
export interface TrainBenchOptions {
  /** Backend names: wasm, cpu, webgpu, tensorflow, or blas. */
  readonly backends: string[];
  /** [d, L, V, T, B] per case; default the two shapes in the module doc. */
  readonly shapes?: [number, number, number, number, number][];
  /** Timed steps after the warm-up; default 3. */
  readonly steps?: number;
  /**
   * Untimed steps first; default 3. V8 compiles the step's JavaScript (tfjs's engine, the tape,
   * our ops) over its first steps: in a fresh process the small bench step takes ~75 ms at steps
   * 2–4 and ~55 ms from step 10 on (bench/NOTES.md §11).
   */
  readonly warmup?: number;
}

/** The two reference shapes: stock tfjs-wasm did 281 and 38 tokens/s on them here. */
export const DEFAULT_SHAPES: [number, number, number, number, number][] = [
  [128, 4, 256, 128, 8],
  [256, 4, 4096, 256, 8],
];

/** GPT-2's vocabulary at d 512: the LM head (25.7M weights) is half of the step's products. */
export const GPT2_VOCAB_SHAPE: [number, number, number, number, number] = [512, 8, 50257, 512, 4];

/** What `deno task bench` trains by default on the CPU: the reference shapes and GPT-2's vocabulary. */
export const CPU_BENCH_SHAPES: [number, number, number, number, number][] = [
  ...DEFAULT_SHAPES,
  GPT2_VOCAB_SHAPE,
];

/** The bench model for hidden d, depth L, vocabulary V, context T (heads of 64 by default). */
export function benchShape(
  d: number,
  layers: number,
  vocab: number,
  seq: number,
  heads = Math.max(1, Math.round(d / 64)),
  kvHeads = heads,
): LlamaShape {
  return {
    hidden: d,
    intermediate: Math.ceil((8 * d) / 3 / 32) * 32,
    heads,
    kvHeads,
    layers,
    vocab,
    tiedEmbeddings: false,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxSeqLen: seq,
  };
}

/** Backend names {@link useBackend} accepts besides the engine's. */
export const BENCH_ONLY_BACKENDS = ["composite"] as const;

/**
 * Activates a backend by name and returns its one-line description: the
 * engine's names (`auto`, `wasm`, `blas`, `cpu`, `webgpu`, `tensorflow`; see
 * `startBackend` in effects/tfjs_engine.ts), or `composite`: wasm with OpenBLAS
 * matmuls and no fused kernels (the path before them, for comparison).
 */
export async function useBackend(name: string): Promise<string> {
  if (name === "composite") {
    const wasm = await initBackend("wasm");
    if (E.isLeft(wasm)) throw new Error(wasm.left.message);
    unregisterFusedWasmKernels();
    const blas = registerBlasWasmMatMul();
    if (E.isLeft(blas)) throw new Error(blas.left);
    return `composite: wasm with matmuls on ${blas.right.library}, no fused kernels`;
  }
  if (name !== "auto" && name !== "blas" && !isBackendName(name)) {
    throw new Error(`Unknown backend "${name}"`);
  }
  const got = await startBackend(name)();
  if (E.isLeft(got)) throw new Error(got.left.message);
  return got.right;
}

/** A deterministic batch: LCG tokens, targets the next token (wrapping). */
export function batchOf(vocab: number, seq: number, batch: number, seed: number): Batch {
  const tokens = new Int32Array(batch * seq);
  let s = seed >>> 0;
  for (let i = 0; i < tokens.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    tokens[i] = s % vocab;
  }
  const targets = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) targets[i] = tokens[(i + 1) % tokens.length]!;
  return { tokens, targets, batch, seq };
}

/**
 * Measures training tokens/s per backend and shape.
 *
 * @example
 * ```ts
 * import { benchTraining } from "./train_bench.ts";
 * const rows = await benchTraining({ backends: ["wasm"], shapes: [[64, 2, 128, 32, 2]], steps: 1, warmup: 1 });
 * console.log(rows[0]!.tokensPerSec);
 * ```
 */
export async function benchTraining(opts: TrainBenchOptions): Promise<TrainBenchRow[]> {
  const rows: TrainBenchRow[] = [];
  const steps = opts.steps ?? 3;
  const warmup = opts.warmup ?? 3;
  for (const backend of opts.backends) {
    const description = await useBackend(backend);
    for (const [d, layers, vocab, seq, batch] of opts.shapes ?? DEFAULT_SHAPES) {
      const shape = benchShape(d, layers, vocab, seq);
      let state = createTrainState(shape, initParams(shape, layers, 0));
      const n = [...state.params.values()].reduce((s, t) => s + t.size, 0);
      const mb = batchOf(vocab, seq, batch, d * layers);
      for (let i = 0; i < warmup; i++) state = (await trainStep(state, [mb], { lr: 1e-4 })).state;
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) state = (await trainStep(state, [mb], { lr: 1e-4 })).state;
      const seconds = (performance.now() - t0) / 1000;
      disposeState(state);
      const tokensPerSec = (steps * batch * seq) / seconds;
      rows.push({
        shape: [d, layers, vocab, seq, batch],
        backend,
        description,
        tokensPerSec,
        gflops: (6 * n * tokensPerSec) / 1e9,
      });
    }
  }
  return rows;
}

if (import.meta.main) {
  const backends = Deno.args.length > 0 ? Deno.args : ["auto"];
  console.log("| shape [d, L, V, T, B] | backend | tokens/s | GFLOP/s |");
  console.log("|---|---|---:|---:|");
  // One row at a time: a slow backend still shows the rows before it.
  for (const backend of backends) {
    for (const shape of DEFAULT_SHAPES) {
      for (const r of await benchTraining({ backends: [backend], shapes: [shape] })) {
        const rate = r.tokensPerSec.toFixed(0);
        console.log(
          `| [${r.shape.join(", ")}] | ${r.backend} | ${rate} | ${r.gflops.toFixed(2)} |`,
        );
      }
    }
  }
}
