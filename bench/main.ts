/**
 * `deno task bench [--json] [--only solver,train,memory,generate,tokenize,torch] [--backend auto,wasm,…]
 * [--shapes "d,L,V,T,B;…"] [--steps N] [--warmup N] [--rounds N] [--no-peer] [--peer-env stock]`
 *
 * Benchmarks, each measured side by side in one run (these machines are
 * shared and noisy: compare ratios, not absolute figures across runs).
 *
 * Training: tokens/s and GFLOP/s of full steps (forward, backward, AdamW) per
 * shape and backend, and, when python3 with torch is installed, the same step
 * in PyTorch (bench/peer_torch.py, a peer, not part of the product) run in
 * this invocation, shape by shape, with the ratio ours / PyTorch. Each side
 * runs `--rounds` times (default 3; a round = `--warmup` untimed steps, default 3, and
 * `--steps` timed steps, default 3), alternating, and reports its median round.
 * `--json` prints one object: `results` (each with `shape` [d, L, V, T, B],
 * `backend`, `description`, `tokensPerSec`, `gflops`, and when the peer ran
 * `peerTokensPerSec` and `ratio`), `peer`, `skipped`, `solver`, and `memory`.
 *
 * Generation (`bench/generate_bench.ts`, `--only generate`): tokens/s of greedy decoding with
 * and without the key/value cache, side by side, and their ratio.
 *
 * The torch engine (`bench/torch_engine_bench.ts`, `--only torch`, `--torch-steps N`, default
 * 20, `--torch-shapes`, default the two reference shapes): `--engine torch` against a bare
 * PyTorch loop on the same model and batches, 1 and 2 processes, tokens/s each and their ratio.
 *
 * Generation also runs the PyTorch loop with its own key/value cache (bench/peer_generate_torch.py)
 * in the same rounds, and training prints the machine's sgemm ceiling measured in the same run.
 *
 * Tokenisation (`bench/tokenize_bench.ts`, `bench/prepare_bench.ts`, `--only tokenize`): single-thread
 * MB/s of the GPT-2 BPE (built-in, through its tokenizer.json, npm tiktoken), and corpus
 * preparation (`prepareShards`, 1 worker and one per core) beside tiktoken on the same text.
 *
 * Memory (`bench/memory_bench.ts`): per backend, grid point and recompute mode, the measured
 * peak of a standard, a STEP stage-1 and a STEP stage-2 step against the buffer replay and the
 * planner, and tokens/s with and without recomputation.
 *
 * @module
 */
import { median } from "../base/mod.ts";
import { parseArgs } from "node:util";
import * as E from "fp-ts/lib/Either.js";
import { openHeapSgemm } from "../kernels/blas/mod.ts";
import { peerEnv, type PeerResult, runPeer } from "./peer.ts";
import { benchSolver, type SolverBenchResult } from "./solver_bench.ts";
import { benchMatmul } from "./matmul_bench.ts";
import {
  benchTraining,
  CPU_BENCH_SHAPES,
  DEFAULT_SHAPES,
  type TrainBenchRow,
} from "./train_bench.ts";
import { benchGpu, type GpuBenchRow, gpuBenchTable } from "./gpu_bench.ts";
import { benchGeneration, GENERATE_TABLE_HEADER, generateBenchLine } from "./generate_bench.ts";
import { benchTokenize, tokenizeBenchTable } from "./tokenize_bench.ts";
import { benchPrepare, prepareBenchTable } from "./prepare_bench.ts";
import {
  benchTorchEngine,
  TORCH_ENGINE_TABLE_HEADER,
  torchEngineBenchLine,
} from "./torch_engine_bench.ts";
import {
  benchMemory,
  MEMORY_GRID,
  MEMORY_TABLE_HEADER,
  memoryRow,
  QUICK_GRID,
  recomputeTable,
  worstErrors,
} from "./memory_bench.ts";

/**
 * Backends run by default. `blas` and `cpu` (tfjs's JavaScript kernels) take
 * minutes per step on the second shape, and `webgpu` on Mesa's software
 * Vulkan driver as long; name them with --backend to include them.
 */
const DEFAULT_BACKENDS = ["auto", "wasm"];
const NOT_BY_DEFAULT = ["blas", "webgpu", "cpu"];

/** One row of the training table. */
interface TrainRow extends TrainBenchRow {
  readonly description: string;
  readonly peerTokensPerSec?: number;
  /** The environment PyTorch was fastest in at this shape. */
  readonly peerEnv?: Record<string, string>;
  readonly ratio?: number;
}

function solverTable(rows: readonly SolverBenchResult[]): string {
  const lines = ["L    K   compositions   HiGHS ms   exhaustive ms   split"];
  for (const r of rows) {
    lines.push(
      `${String(r.layers).padEnd(4)} ${String(r.stages).padEnd(3)} ${
        r.compositions.toExponential(2).padStart(12)
      }   ${r.highsMs.toFixed(1).padStart(8)}   ${
        (r.exhaustiveMs === undefined ? "skipped" : r.exhaustiveMs.toFixed(1)).padStart(13)
      }   [${r.split.join(", ")}]${r.agree === false ? "  (DISAGREE)" : ""}`,
    );
  }
  return lines.join("\n");
}

function parseShapes(text: string | undefined): [number, number, number, number, number][] {
  if (text === undefined) return CPU_BENCH_SHAPES;
  return text.split(";").filter((p) => p.trim() !== "").map((p) => {
    const dims = p.split(",").map(Number);
    if (dims.length !== 5 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new Error(`--shapes: "${p}" is not d,L,V,T,B`);
    }
    return dims as [number, number, number, number, number];
  });
}

/** The middle sample (the lower middle of an even count, so it is one of the samples). */

function fmt(x: number | undefined, digits: number, width: number): string {
  return (x === undefined ? "–" : x.toFixed(digits)).padStart(width);
}

/** The peers' environment for `--peer-env` (`tuned` or `stock`; see `peerEnv`). */
function peerEnvOf(mode: string | undefined): Record<string, string> {
  const blas = openHeapSgemm();
  return peerEnv(E.isRight(blas) ? blas.right.info.core : undefined, mode === "stock");
}

/** {@link peerEnvOf} without OMP_WAIT_POLICY, which slows PyTorch's one-token steps. */
function generationPeerEnv(mode: string | undefined): Record<string, string> {
  const { OMP_WAIT_POLICY: _, ...rest } = peerEnvOf(mode);
  return rest;
}

/**
 * The environments the training peer runs in, each shape keeping the faster: OpenMP's passive
 * waits helped torch 1.13 on OpenBLAS 3–5× here, and slow torch 2.13 (its own OpenMP, MKL) up to
 * 2× (small shape, 8 900 against 15 700–17 700 tokens/s), so neither is PyTorch at its best
 * everywhere. `stock`: the environment as it is, alone.
 */
function trainingPeerEnvs(mode: string | undefined): Record<string, string>[] {
  const tuned = peerEnvOf(mode);
  const without = generationPeerEnv(mode);
  return mode === "stock" || tuned.OMP_WAIT_POLICY === undefined ? [tuned] : [without, tuned];
}

function envText(env: Record<string, string>): string {
  const text = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ");
  return text === "" ? "(none)" : text;
}

/** Runs the selected benchmarks; resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      json: { type: "boolean", default: false },
      only: { type: "string" },
      backend: { type: "string" },
      shapes: { type: "string" },
      steps: { type: "string", default: "3" },
      warmup: { type: "string", default: "3" },
      rounds: { type: "string", default: "3" },
      "no-peer": { type: "boolean", default: false },
      "peer-env": { type: "string", default: "tuned" },
      "torch-steps": { type: "string", default: "20" },
      "torch-shapes": { type: "string" },
    },
  });
  const only = new Set(
    (values.only ?? "solver,train,memory,generate,tokenize,torch").split(","),
  );
  const requested = (values.backend ?? DEFAULT_BACKENDS.join(",")).split(",");
  // WebGPU has its own bench (GPU memory, adapter); the CPU peer is no reference for it.
  const backends = requested.filter((b) => b !== "webgpu");
  const shapes = parseShapes(values.shapes);
  const steps = Number(values.steps);
  const warmup = Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new Error(`--warmup must be a whole number ≥ 0, got ${values.warmup}`);
  }
  const rounds = Math.max(1, Number(values.rounds));
  const log = (line: string): void => {
    if (!values.json) console.log(line);
  };
  const report: Record<string, unknown> = { results: [] };
  if (only.has("solver")) {
    const solver = await benchSolver();
    report.solver = solver;
    log(`Eq. 3 solve time (1.2B layer shape, r = 128)\n${solverTable(solver)}\n`);
  }
  if (only.has("train") && backends.length > 0) {
    const rows: TrainRow[] = [];
    const skipped: { backend: string; reason: string }[] = [];
    const descriptions = new Map<string, string>();
    const envs = trainingPeerEnvs(values["peer-env"]);
    const peers: PeerResult[] = [];
    log("Training step (forward, backward, AdamW), 2 CPU threads where a path can use them:");
    log(
      "tokens/s, GFLOP/s = 6·N·tokens/s, and PyTorch's tokens/s on the same step in this run " +
        `(median of ${rounds} alternating rounds of ${steps} steps after ${warmup} untimed ones)`,
    );
    if (values.backend === undefined) {
      log(
        `(${NOT_BY_DEFAULT.join(", ")} not run by default: minutes per step; --backend adds them)`,
      );
    }
    log("");
    log("shape [d, L, V, T, B]      backend     tokens/s   GFLOP/s   PyTorch tok/s   ratio");
    // Shape by shape, the peer right after our backends: each ratio compares runs made
    // minutes apart at most, under the same load.
    for (const shape of shapes) {
      // Rounds alternate our backends and the peer, so a load spike from other users of
      // the machine hits both sides; each side reports its median round.
      const ours = new Map<string, TrainBenchRow[]>();
      const peerRates: number[][] = envs.map(() => []);
      for (let round = 0; round < rounds; round++) {
        for (const backend of backends) {
          if (skipped.some((s) => s.backend === backend)) continue;
          try {
            const [r] = await benchTraining({
              backends: [backend],
              shapes: [shape],
              steps,
              warmup,
            });
            if (r === undefined) continue;
            if (!descriptions.has(backend)) descriptions.set(backend, r.description);
            ours.set(backend, [...(ours.get(backend) ?? []), r]);
          } catch (e: unknown) {
            const reason = e instanceof Error ? e.message.split("\n")[0]! : String(e);
            skipped.push({ backend, reason });
            log(`${backend}: skipped (${reason})`);
          }
        }
        for (const [i, env] of envs.entries()) {
          const peer = values["no-peer"]
            ? { ran: false as const, reason: "--no-peer" }
            : await runPeer([shape], { steps, warmup, threads: 2, env });
          peers.push(peer);
          const rate = peer.ran ? peer.rows[0]?.tokensPerSec : undefined;
          if (rate !== undefined) peerRates[i]!.push(rate);
        }
      }
      // PyTorch at its best: the environment whose median round is fastest.
      const medians = peerRates.map((r) => r.length > 0 ? median(r) : -1);
      const best = medians.indexOf(Math.max(...medians));
      const peerRate = medians[best]! >= 0 ? medians[best] : undefined;
      for (const samples of ours.values()) {
        // The median round itself (the lower middle one for an even count), so its GFLOP/s
        // and description are that round's.
        const sorted = [...samples].sort((a, b) => a.tokensPerSec - b.tokensPerSec);
        const r = sorted[Math.floor((sorted.length - 1) / 2)]!;
        const row: TrainRow = peerRate === undefined ? r : {
          ...r,
          peerTokensPerSec: peerRate,
          peerEnv: envs[best]!,
          ratio: r.tokensPerSec / peerRate,
        };
        rows.push(row);
        log(
          `[${r.shape.join(", ")}]`.padEnd(27) + r.backend.padEnd(10) +
            fmt(r.tokensPerSec, 0, 10) + fmt(r.gflops, 2, 10) + fmt(peerRate, 0, 16) +
            fmt(row.ratio, 2, 8),
        );
      }
    }

    log("");
    for (const [name, d] of descriptions) log(d.startsWith(`${name}:`) ? d : `${name}: ${d}`);
    // The machine's ceiling for these figures, measured now: a step is mostly sgemm.
    const limit = await benchMatmul({
      sizes: [1024, 2048],
      transposes: [[false, false]],
      impls: ["sgemm"],
      rounds: 3,
    });
    report.sgemmLimit = limit.map((r) => ({ size: r.size, gflops: r.gflops }));
    log(
      `sgemm limit (raw cblas_sgemm through FFI, A·B, median of 3): ${
        limit.map((r) => `${r.size}² ${r.gflops.toFixed(0)} GFLOP/s`).join(", ")
      }`,
    );
    const first = peers.find((p) => p.ran);
    if (first !== undefined && first.ran) {
      log(
        `PyTorch peer: torch ${first.torch}, ${first.threads} threads, bench/peer_torch.py, ` +
          `each shape's faster of env ${envs.map(envText).join(" | ")}: ` +
          rows.filter((r) => r.peerEnv !== undefined).map((r) =>
            `[${r.shape.join(", ")}] ${envText(r.peerEnv!)}`
          ).join("; "),
      );
    } else {
      log(`PyTorch peer skipped: ${peers[0]?.ran === false ? peers[0].reason : "no shapes"}`);
    }
    report.results = rows;
    report.rounds = rounds;
    report.skipped = skipped;
    report.peer = first !== undefined && first.ran
      ? { torch: first.torch, threads: first.threads, envs }
      : { skipped: peers[0]?.ran === false ? peers[0].reason : "no shapes" };
  }
  if (only.has("train") && requested.includes("webgpu")) {
    const rows: GpuBenchRow[] = await benchGpu({ shapes, steps });
    log("");
    log(
      "WebGPU training step: tokens/s, GFLOP/s, peak GPU bytes and model state against the planner",
    );
    log(gpuBenchTable(rows));
    report.results = [...(report.results as unknown[]), ...rows];
  }
  if (only.has("memory")) {
    log("");
    log(
      "Peak memory of one training step, measured (the engine's buffers; webgpu: GPU buffers) " +
        "against the buffer replay and the planner, with and without recomputation:",
    );
    log(MEMORY_TABLE_HEADER);
    const rows = [];
    for (const backend of requested) {
      try {
        rows.push(
          ...await benchMemory({
            backends: [backend],
            // A software GPU driver takes minutes per large step: the small points there.
            grid: backend === "webgpu" ? QUICK_GRID : MEMORY_GRID,
            onRow: (r) => log(memoryRow(r)),
          }),
        );
      } catch (e: unknown) {
        log(`${backend}: skipped (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`);
      }
    }
    const worst = worstErrors(rows);
    log(
      `max |error|: replay ${(worst.replay * 100).toFixed(1)}%, planner ${
        (worst.planner * 100).toFixed(1)
      }%`,
    );
    log("");
    log(recomputeTable(rows));
    report.memory = rows;
  }
  if (only.has("generate") && backends.length > 0) {
    log("");
    log(
      "Generation (greedy, batch 1): new tokens/s with the key/value cache and recomputing the " +
        `whole context every token, median of ${rounds} alternating rounds; H = heads`,
    );
    log(GENERATE_TABLE_HEADER);
    let peerLine = "";
    report.generate = await benchGeneration({
      backends,
      rounds,
      onRow: (r) => log(generateBenchLine(r)),
      // PyTorch at its best here: OMP_WAIT_POLICY=PASSIVE, which helps its training 3–5×, made its
      // decoding 5× slower (2 threads: 116 against 615 tokens/s at the small shape).
      ...(values["no-peer"]
        ? {}
        : { peer: { env: generationPeerEnv(values["peer-env"]), threads: 2 } }),
      onPeer: (p) => {
        peerLine = "torch" in p
          ? `PyTorch peer: torch ${p.torch}, 2 threads, bench/peer_generate_torch.py, its own OpenMP wait policy`
          : `PyTorch peer skipped: ${p.reason}`;
      },
    });
    if (peerLine !== "") log(peerLine);
  }
  if (only.has("tokenize")) {
    log("");
    log(
      "Tokenisation, one thread: GPT-2's BPE three ways on the same text, ids checked equal; " +
        "cold = first pass (word caches empty), MB/s = median of later rounds on the same text",
    );
    const single = await benchTokenize({ rounds });
    log(tokenizeBenchTable(single));
    log("");
    const prepare = await benchPrepare({ rounds: Math.min(rounds, 2) });
    log(prepareBenchTable(prepare));
    report.tokenize = { single, prepare };
  }
  if (only.has("torch")) {
    const torchSteps = Number(values["torch-steps"]);
    if (!Number.isInteger(torchSteps) || torchSteps < 1) {
      throw new Error(`--torch-steps must be a positive integer, got ${values["torch-steps"]}`);
    }
    log("");
    log(
      "--engine torch against a bare PyTorch loop (bench/bare_loop_torch.py) on the same model, " +
        `weights and batches: tokens/s, median of ${rounds} alternating rounds of ${torchSteps} steps; ` +
        "the loop takes torch's default AdamW (on a CPU its per-tensor loop, as nanoGPT does), the " +
        "engine the fused one where torch has it (bench/torch_engine_bench.ts --bare-fused-adamw " +
        "gives the loop the fused one too); the engine binds each rank to its own core where the " +
        "ranks fill the cores (training.torch.pinCores), the loop leaves them to the OS",
    );
    try {
      // The two reference shapes unless named: GPT-2's vocabulary takes ~7 s a step on each side,
      // half an hour for its rows here.
      const torchShapes = values["torch-shapes"] === undefined
        ? DEFAULT_SHAPES
        : parseShapes(values["torch-shapes"]);
      const { python, rows } = await benchTorchEngine({
        shapes: torchShapes,
        steps: torchSteps,
        rounds,
      });
      log(`torch ${python.version} (${python.python})`);
      log(TORCH_ENGINE_TABLE_HEADER);
      for (const r of rows) log(torchEngineBenchLine(r));
      report.torch = { torch: python.version, rows };
    } catch (e: unknown) {
      const reason = e instanceof Error ? e.message.split("\n")[0]! : String(e);
      log(`skipped (${reason})`);
      report.torch = { skipped: reason };
    }
  }
  if (values.json) console.log(JSON.stringify(report, null, 2));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
