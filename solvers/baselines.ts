/**
 * Peak memory of the methods STEP is compared with, for the same model and
 * the same counting assumptions: standard pre-training (Eq. 1), ReLoRA and
 * GaLore (spec §5).
 *
 * @module
 */
import {
  type LlamaShape,
  paramCounts,
  type Projection,
  projectionDims,
  PROJECTIONS,
} from "../base/mod.ts";
import {
  bytesPerParam,
  embeddingParams,
  type MemoryProblem,
  stageMemories,
  standardBytes,
  trainedBytes,
} from "./memory_model.ts";

/** GaLore settings (spec §5: rank 128 on every attention and MLP matrix). */
export interface GaloreSpec {
  /** Rank r of each projected gradient (capped at the matrix's shorter side). */
  readonly rank: number;
  /** Projections of every layer whose gradients GaLore projects. */
  readonly targets: readonly Projection[];
}

/** GaLore memory, term by term. */
export interface GaloreMemory {
  /** Weights, gradients (and fp32 master weights under mixed precision) of projected matrices. */
  readonly projectedWeights: number;
  /** Adam state in the projected space plus the projector: 4·(m·r + 2·n·r) per matrix, m ≤ n. */
  readonly projectedOptimizer: number;
  /** Layer parameters GaLore does not project (norms, untargeted maps), trained as usual. */
  readonly otherLayerParams: number;
  /** Embeddings + final norm + LM head when counted (never projected). */
  readonly embeddings: number;
  /** Activations when counted: the same as standard pre-training. */
  readonly activations: number;
  /** Sum of the terms above: GaLore's model state in bytes. */
  readonly bytes: number;
}

/** ReLoRA memory: its peak is the full-rank warm start; the LoRA phase is lower. */
export interface ReloraMemory {
  /** Peak: the full-rank warm start costs what standard pre-training costs. */
  readonly bytes: number;
  /** After the warm start: all layers frozen, adapters on every layer. */
  readonly loraPhaseBytes: number;
}

/** The three baselines for one problem. */
export interface Baselines {
  /** Bytes of standard pre-training: every parameter trained at full rank (Eq. 1). */
  readonly standard: number;
  /** ReLoRA's peak (its full-rank warm start) and its LoRA phase. */
  readonly relora: ReloraMemory;
  /** GaLore's model state, term by term. */
  readonly galore: GaloreMemory;
}

/** Optimizer-state elements GaLore keeps for one m×n matrix at rank r. */
export function galoreStateElements(rows: number, cols: number, rank: number): number {
  const m = Math.min(rows, cols);
  const n = Math.max(rows, cols);
  // At rank ≥ m the projection saves nothing: GaLore degenerates to plain Adam (2mn).
  return rank >= m ? 2 * m * n : m * rank + 2 * n * rank;
}

/** GaLore's peak memory for a problem's model (all L layers). */
export function galoreMemory(problem: MemoryProblem, galore: GaloreSpec): GaloreMemory {
  const { shape, assumptions: a } = problem;
  const b = bytesPerParam(a.precision);
  // Under mixed precision the fp32 master copy (4 of the 12 optimizer bytes) stays.
  const masterBytes = a.precision === "mixed" ? 4 : 0;
  const targeted = new Set(galore.targets);
  let projectedParams = 0;
  let stateElements = 0;
  for (const p of PROJECTIONS) {
    if (!targeted.has(p)) continue;
    const d = projectionDims(shape, p);
    projectedParams += d.in * d.out;
    stateElements += galoreStateElements(d.in, d.out, galore.rank);
  }
  const L = shape.layers;
  const other = paramCounts(shape).perLayer - projectedParams;
  const [standardStage] = stageMemories(problem, [L]);
  const terms = {
    projectedWeights: L * projectedParams * (b.weight + b.grad + masterBytes),
    projectedOptimizer: L * stateElements * 4,
    otherLayerParams: L * other * trainedBytes(a.precision),
    embeddings: a.embeddings ? embeddingParams(shape) * trainedBytes(a.precision) : 0,
    activations: standardStage?.terms.activations ?? 0,
  };
  return {
    ...terms,
    bytes: terms.projectedWeights + terms.projectedOptimizer + terms.otherLayerParams +
      terms.embeddings + terms.activations,
  };
}

/** ReLoRA's memory: peak equals standard; the LoRA phase freezes every layer. */
export function reloraMemory(problem: MemoryProblem): ReloraMemory {
  const L = problem.shape.layers;
  // The LoRA phase is Eq. 2's stage 2 of the split [L, 0]: every layer frozen and adapted.
  const [, lora] = stageMemories(problem, [L, 0]);
  return { bytes: standardBytes(problem), loraPhaseBytes: lora?.bytes ?? 0 };
}

/** All baselines for a problem. */
export function baselines(problem: MemoryProblem, galore: GaloreSpec): Baselines {
  return {
    standard: standardBytes(problem),
    relora: reloraMemory(problem),
    galore: galoreMemory(problem, galore),
  };
}

/**
 * GaLore's rank as it applies to `shape`: the rank, or where it reaches a targeted matrix's
 * smaller side, the clamp (such a matrix is projected onto its whole space: plain Adam).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { galoreRankText } from "./baselines.ts";
 * import { completeShape } from "../base/mod.ts";
 * const shape = completeShape({ hidden: 128, intermediate: 344, heads: 4, layers: 2, vocab: 257 } as never);
 * assert(galoreRankText(shape, { rank: 128, targets: ["q", "up"] }).includes("clamped to 128"));
 * ```
 */
export function galoreRankText(shape: LlamaShape, galore: GaloreSpec): string {
  const sides = galore.targets.map((p) => {
    const d = projectionDims(shape, p);
    return Math.min(d.in, d.out);
  });
  const clamped = sides.filter((side) => side <= galore.rank);
  if (clamped.length === 0) return `rank ${galore.rank}`;
  return `rank ${galore.rank}, clamped to ${
    Math.min(...clamped)
  } on ${clamped.length} of ${sides.length} ` +
    "targeted matrices per layer (whole space: no saving there)";
}
