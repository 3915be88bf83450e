/**
 * Peak memory of real training steps against its two predictions, on a grid of shapes.
 *
 * For each grid point [d, L, heads, kv-heads, V, T, B] and each recompute mode it builds the
 * three steps a STEP comparison needs: standard pre-training (all L layers train), STEP stage 1
 * (the bottom ⌈L/2⌉ layers train) and STEP stage 2 (grown to L layers on top, the old layers
 * frozen with ReLoRA rank 8 on all seven projections), runs one warm-up step, one measured
 * step and a few timed steps of each, and reports:
 *
 * - measured: the most bytes the step's distinct tensor buffers held at once (the buffer
 *   ledger of `kernels/peak_memory.ts`; on webgpu the GPU buffer high-water), read from the
 *   engine while it ran;
 * - replay: `solvers/engine_memory.ts`, the step's buffers walked one by one;
 * - planner: `solvers/memory_model.ts`, the few linear forms the integer program constrains
 *   (what `deno task plan` and `--budget` use);
 * - tokens/s over the timed steps, so the price of recomputation shows beside its saving;
 * - for stage 2, what its boundary costs: the stage-1 model copied to host memory
 *   (`snapshotState`), grown and adapted there (`checkpoint/surgery.ts`) and loaded back,
 *   in bytes of the host copy and milliseconds.
 *
 * Run: `deno run -A --unstable-webgpu bench/memory_bench.ts [backend ...] [--quick]
 * [--points "d,L,H,KV,V,T,B;…"]`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { parseArgs } from "node:util";
import {
  adaptedWeights,
  firstStageRoles,
  grownStageRoles,
  grownTrainable,
  type LlamaShape,
  PROJECTIONS,
  type StageRoles,
  stageTrainable,
} from "../base/mod.ts";
import {
  createTrainState,
  disposeState,
  fusedKernelThreads,
  fusedOps,
  initParams,
  loadTrainState,
  measurePeak,
  snapshotState,
  type TrainState,
  trainStep,
} from "../kernels/mod.ts";
import {
  attachedSnapshot,
  type EngineSnapshot,
  grownSnapshot,
  snapshotBytes,
} from "../checkpoint/mod.ts";
import {
  engineStepMemory,
  type FusibleOp,
  kernelTraits,
  type MemoryProblem,
  stageMemories,
} from "../solvers/mod.ts";
import { enginePeakBytes } from "../pipeline/mod.ts";
import { batchOf, benchShape, useBackend } from "./train_bench.ts";

/** [hidden, layers, heads, kvHeads, vocab, seqLen, microBatch]. */
export type GridPoint = readonly [number, number, number, number, number, number, number];

/**
 * The grid: widths 64–512, depths 2–8, multi-head and grouped-query attention, sequences
 * 64–512, micro-batches 1–16, vocabularies from bytes (257) to GPT-2's (50,257).
 */
export const MEMORY_GRID: readonly GridPoint[] = [
  [64, 4, 4, 4, 257, 64, 16],
  [128, 2, 4, 2, 257, 128, 4],
  [128, 4, 4, 4, 4096, 64, 4],
  [256, 2, 4, 4, 257, 256, 2],
  [256, 4, 8, 2, 32000, 128, 2],
  [64, 2, 2, 1, 50257, 64, 2],
  [512, 8, 8, 8, 50257, 256, 1],
  [512, 8, 8, 2, 50257, 128, 2],
];

/** Small points for slow backends (webgpu on a software driver). */
export const QUICK_GRID: readonly GridPoint[] = [
  [64, 4, 4, 4, 257, 64, 16],
  [128, 2, 4, 2, 257, 128, 4],
  [64, 2, 2, 1, 50257, 64, 2],
];

/** Which step of the comparison. */
export type MemoryStage = "standard" | "STEP stage 1" | "STEP stage 2";

/** One measured step. */
export interface MemoryBenchRow {
  readonly backend: string;
  readonly point: GridPoint;
  readonly recompute: "none" | "layers";
  readonly stage: MemoryStage;
  /** The engine's peak during the step (bytes). */
  readonly measuredBytes: number;
  /** The buffer replay's prediction. */
  readonly replayBytes: number;
  /** The planner's prediction. */
  readonly plannerBytes: number;
  /** The planner's peak moment, e.g. `backward start`. */
  readonly plannerPhase: string;
  readonly tokensPerSec: number;
  /** Stage 2: the boundary before it, through host memory. */
  readonly boundary?: BoundaryCost;
}

/** A stage boundary's copy through host memory: its bytes and the time of the whole boundary. */
export interface BoundaryCost {
  readonly bytes: number;
  readonly ms: number;
}

const RANK = 8;

function shapeOf(p: GridPoint): LlamaShape {
  const [hidden, layers, heads, kvHeads, vocab, seq] = p;
  return benchShape(hidden, layers, vocab, seq, heads, kvHeads);
}

function growthOf(layers: number): { readonly first: number; readonly added: number } {
  const first = Math.ceil(layers / 2);
  return { first, added: layers - first };
}

function rolesOf(stage: MemoryStage, layers: number): StageRoles {
  const { first, added } = growthOf(layers);
  if (stage === "standard") return firstStageRoles(layers);
  if (stage === "STEP stage 1") return firstStageRoles(first);
  return grownStageRoles(2, first, added, {
    placement: "upper",
    seed: 0,
    targets: PROJECTIONS,
    trainEmbeddings: false,
  });
}

/**
 * The state of a stage's step: fresh for standard and stage 1; for stage 2, a stage-1 model
 * carried across the boundary as a run carries it (snapshot → grow → attach → load), timed.
 */
async function stateOf(
  stage: MemoryStage,
  shape: LlamaShape,
): Promise<{ readonly state: TrainState; readonly boundary?: BoundaryCost }> {
  const roles = rolesOf(stage, shape.layers);
  if (roles.stage === 1) {
    return { state: createTrainState(shape, initParams(shape, roles.layers, 0)) };
  }
  const { first, added } = growthOf(shape.layers);
  const small = createTrainState(shape, initParams(shape, first, 0));
  const t0 = performance.now();
  const snap = await snapshotState(small);
  disposeState(small);
  const next = E.flatMap((g: EngineSnapshot) =>
    attachedSnapshot(g, {
      rank: RANK,
      alpha: 2 * RANK,
      seed: 1,
      adapted: adaptedWeights(roles),
      trainable: stageTrainable(roles, shape),
    })
  )(grownSnapshot(snap, {
    add: added,
    placement: "upper",
    seed: 0,
    trainable: grownTrainable(roles),
  }));
  if (E.isLeft(next)) throw new Error(next.left);
  const state = loadTrainState(shape, next.right);
  return { state, boundary: { bytes: snapshotBytes(snap), ms: performance.now() - t0 } };
}

function plannerOf(
  stage: MemoryStage,
  shape: LlamaShape,
  p: GridPoint,
  recompute: boolean,
  fused: readonly FusibleOp[],
): { readonly bytes: number; readonly phase: string } {
  const problem: MemoryProblem = {
    shape,
    adapter: { rank: RANK, targets: PROJECTIONS },
    assumptions: {
      precision: "fp32",
      embeddings: true,
      trainEmbeddingsAfterStage1: false,
      activations: {
        microBatch: p[6],
        seqLen: p[5],
        recompute,
        accumulation: 1,
        ...kernelTraits(fused),
      },
    },
  };
  const { first, added } = growthOf(shape.layers);
  const stages = stage === "standard"
    ? stageMemories(problem, [shape.layers])
    : stageMemories(problem, [first, added]);
  const s = stages[stage === "STEP stage 2" ? 1 : 0]!;
  return { bytes: s.bytes, phase: s.peakPhase };
}

/** Options of {@link benchMemory}. */
export interface MemoryBenchOptions {
  readonly backends: readonly string[];
  readonly grid?: readonly GridPoint[];
  /** Steps timed for tokens/s after the measured one (default 3). */
  readonly timedSteps?: number;
  /** Called with each row as it is measured (progress). */
  readonly onRow?: (row: MemoryBenchRow) => void;
}

/**
 * Measures every grid point on every backend, with and without recomputation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { benchMemory } from "./memory_bench.ts";
 * const rows = await benchMemory({ backends: ["cpu"], grid: [[32, 2, 2, 2, 64, 16, 2]] });
 * assert(rows.every((r) => Math.abs(r.measuredBytes / r.replayBytes - 1) < 0.1));
 * ```
 */
export async function benchMemory(opts: MemoryBenchOptions): Promise<MemoryBenchRow[]> {
  const rows: MemoryBenchRow[] = [];
  const timedSteps = opts.timedSteps ?? 3;
  for (const backend of opts.backends) {
    await useBackend(backend);
    const fused: readonly FusibleOp[] = fusedOps();
    const kernelThreads = fusedKernelThreads();
    for (const point of opts.grid ?? MEMORY_GRID) {
      const shape = shapeOf(point);
      const [, , , , vocab, seq, batch] = point;
      const mb = batchOf(vocab, seq, batch, point[0] * point[1]);
      for (const recompute of ["none", "layers"] as const) {
        for (const stage of ["standard", "STEP stage 1", "STEP stage 2"] as const) {
          const roles = rolesOf(stage, shape.layers);
          const built = await stateOf(stage, shape);
          let state = built.state;
          const options = { lr: 1e-4, recompute };
          state = (await trainStep(state, [mb], options)).state; // warm-up
          const { value, peak } = await measurePeak(() => trainStep(state, [mb], options));
          state = value.state;
          // Timed apart from the measured step, over a few steps: one step is too noisy.
          const t0 = performance.now();
          for (let i = 0; i < timedSteps; i++) {
            state = (await trainStep(state, [mb], options)).state;
          }
          const seconds = (performance.now() - t0) / 1000 / timedSteps;
          disposeState(state);
          const replay = engineStepMemory({
            shape,
            roles,
            rank: roles.stage === 1 ? 0 : RANK,
            microBatch: batch,
            seqLen: seq,
            accumulation: 1,
            fused,
            recompute,
            kernelThreads,
          });
          const planner = plannerOf(stage, shape, point, recompute === "layers", fused);
          const row: MemoryBenchRow = {
            backend,
            point,
            recompute,
            stage,
            measuredBytes: enginePeakBytes(peak),
            replayBytes: replay.peakBytes,
            plannerBytes: planner.bytes,
            plannerPhase: planner.phase,
            tokensPerSec: (batch * seq) / seconds,
            ...(built.boundary === undefined ? {} : { boundary: built.boundary }),
          };
          rows.push(row);
          opts.onRow?.(row);
        }
      }
    }
  }
  return rows;
}

function pct(predicted: number, measured: number): string {
  const e = (predicted / measured - 1) * 100;
  return `${e >= 0 ? "+" : ""}${e.toFixed(1)}%`;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(2);
}

/** The header of {@link memoryRow} lines. */
export const MEMORY_TABLE_HEADER =
  "backend  [d, L, H, KV, V, T, B]            recompute  stage          measured MB  replay   planner  tokens/s";

/** One row of the error table: measured peak, and each prediction's error against it. */
export function memoryRow(r: MemoryBenchRow): string {
  return `${r.backend.padEnd(8)} ${`[${r.point.join(", ")}]`.padEnd(33)} ${
    r.recompute.padEnd(10)
  } ${r.stage.padEnd(14)} ${mb(r.measuredBytes).padStart(11)}  ${
    pct(r.replayBytes, r.measuredBytes).padStart(6)
  }  ${pct(r.plannerBytes, r.measuredBytes).padStart(7)}  ${r.tokensPerSec.toFixed(0).padStart(8)}`;
}

/** Largest |error| of each prediction over some rows. */
export function worstErrors(
  rows: readonly MemoryBenchRow[],
): { readonly replay: number; readonly planner: number } {
  const err = (p: number, m: number) => Math.abs(p / m - 1);
  return {
    replay: Math.max(0, ...rows.map((r) => err(r.replayBytes, r.measuredBytes))),
    planner: Math.max(0, ...rows.map((r) => err(r.plannerBytes, r.measuredBytes))),
  };
}

/**
 * Measured peak with and without recomputation, per backend, point and stage: the bytes saved
 * and the tokens/s paid for them.
 */
export function recomputeTable(rows: readonly MemoryBenchRow[]): string {
  const lines = [
    "backend  [d, L, H, KV, V, T, B]            stage          peak MB (none → layers)   saved   tokens/s (none → layers)",
  ];
  for (const r of rows) {
    if (r.recompute !== "none") continue;
    const other = rows.find((x) =>
      x.recompute === "layers" && x.backend === r.backend && x.stage === r.stage &&
      x.point === r.point
    );
    if (other === undefined) continue;
    lines.push(
      `${r.backend.padEnd(8)} ${`[${r.point.join(", ")}]`.padEnd(33)} ${r.stage.padEnd(14)} ${
        `${mb(r.measuredBytes)} → ${mb(other.measuredBytes)}`.padStart(23)
      }  ${pct(other.measuredBytes, r.measuredBytes).padStart(6)}   ${
        `${r.tokensPerSec.toFixed(0)} → ${other.tokensPerSec.toFixed(0)}`.padStart(24)
      }`,
    );
  }
  return lines.join("\n");
}

/** Each stage-2 boundary's host copy: bytes and time, per backend, point and recompute mode. */
export function boundaryTable(rows: readonly MemoryBenchRow[]): string {
  const lines = [
    "backend  [d, L, H, KV, V, T, B]            recompute  host copy MB  boundary ms  step peak MB",
  ];
  for (const r of rows) {
    if (r.boundary === undefined) continue;
    lines.push(
      `${r.backend.padEnd(8)} ${`[${r.point.join(", ")}]`.padEnd(33)} ${r.recompute.padEnd(10)} ${
        mb(r.boundary.bytes).padStart(12)
      }  ${r.boundary.ms.toFixed(1).padStart(11)}  ${mb(r.measuredBytes).padStart(12)}`,
    );
  }
  return lines.join("\n");
}

/** Parses `d,L,H,KV,V,T,B;…` (the `--points` option). */
export function parsePoints(text: string): GridPoint[] {
  return text.split(";").filter((p) => p.trim() !== "").map((p) => {
    const dims = p.split(",").map(Number);
    if (dims.length !== 7 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new Error(`--points: "${p}" is not d,L,H,KV,V,T,B`);
    }
    return dims as unknown as GridPoint;
  });
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { quick: { type: "boolean", default: false }, points: { type: "string" } },
    allowPositionals: true,
  });
  console.log(MEMORY_TABLE_HEADER);
  const rows = await benchMemory({
    backends: positionals.length > 0 ? positionals : ["auto"],
    grid: values.points !== undefined
      ? parsePoints(values.points)
      : values.quick
      ? QUICK_GRID
      : MEMORY_GRID,
    onRow: (r) => console.log(memoryRow(r)),
  });
  const worst = worstErrors(rows);
  console.log(
    `\nmax |error|: replay ${(worst.replay * 100).toFixed(1)}%, planner ${
      (worst.planner * 100).toFixed(1)
    }%\n`,
  );
  console.log(recomputeTable(rows));
  console.log(`\n${boundaryTable(rows)}`);
}
