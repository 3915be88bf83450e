/**
 * The matmul FLOPs one training token costs as the engine (`kernels/`) actually executes a step,
 * beside the paper's 6·N + 2·N rule (spec §4, `compute_budget.ts`).
 *
 * The paper charges 6 FLOPs per token for a trained non-embedding weight and 2 for a frozen one.
 * The engine differs in four ways, all counted here:
 *
 * - a frozen weight whose input depends on something trainable (an adapter, a norm or a layer
 *   below it) still gets its input gradient dX = dY·Wᵀ: 4 FLOPs per weight per token, not 2;
 * - attention's QKᵀ and P·V products (composite attention: full seq × seq squares, forward and
 *   backward) and the LM head cost FLOPs too;
 * - `recompute: layers` runs the forward of every layer the backward pass reaches a second time;
 * - a chunked loss (`lossChunk`) computes the head's logits a second time in the backward pass.
 *
 * What the backward pass computes follows tfjs's tape as `kernels/_backprop.ts` walks it: a node
 * is visited only when one of its inputs depends on a trainable parameter, and a registered
 * kernel's gradient (matmul, gather: `kernels/_gradients.ts`) is asked for each such input
 * separately, so a frozen weight never gets a weight gradient and a tensor that depends on
 * nothing trainable never gets an input gradient. A `tf.customGrad` block, however, computes all
 * of its gradients at once: composite attention (`kernels/ops/attention.ts`) runs dV, dP, dQ and
 * dK whenever any of q, k, v needs a gradient, and the chunked loss (`kernels/ops/chunked_loss.ts`)
 * always computes the hidden states' gradient. Those executed-but-unneeded FLOPs are part of
 * `total` and also reported on their own as `unneeded`.
 *
 * Counts are per position of a micro-batch (a position whose target is ignored costs the same),
 * 2·m·k·n per [m, k]×[k, n] matmul. Elementwise work (norms, RoPE, softmax, SwiGLU, the
 * optimizer) is not counted. Attention is counted as the composite path runs it (the `cpu`
 * backend, or any backend without `StepCausalAttention` kernels); fused kernels may skip the
 * masked half and recompute the probabilities instead.
 *
 * @module
 */
import {
  adapterParamsPerLayer,
  type LlamaShape,
  paramCounts,
  type Projection,
  projectionDims,
  PROJECTIONS,
  type StageRoles,
} from "../base/mod.ts";

/** What one training step runs: the model, who trains, and how the step is executed. */
export interface ExecutedFlopsInput {
  /** The model's dimensions (widths, heads, vocabulary). */
  readonly shape: LlamaShape;
  /** Which layers train, which are frozen, what carries adapters (`base/stage_roles.ts`). */
  readonly roles: StageRoles;
  /** LoRA rank of the adapters on `roles.targets` of the frozen layers; 0: no adapters. */
  readonly adapterRank: number;
  /** Positions per sequence (attention's square is seqLen × seqLen). */
  readonly seqLen: number;
  /** `layers`: each layer's forward runs again in the backward pass (`training.recompute`). */
  readonly recompute: "none" | "layers";
  /** Rows per chunk of the LM head and cross-entropy (`training.lossChunk`); unset: whole. */
  readonly lossChunk?: number;
  /**
   * Sequences per micro-batch: a `lossChunk` of at least microBatch·seqLen rows is one chunk, and
   * the engine then takes the unchunked path. Unset: any `lossChunk` counts as chunking.
   */
  readonly microBatch?: number;
}

/**
 * Matmul FLOPs per token of one step, in disjoint terms that add up to `total`. Layer terms
 * (`forward`, `inputGrad`, `weightGrad`) cover the seven projections and their adapter branches.
 */
export interface ExecutedFlops {
  /** First forward of every layer's projections, frozen and trained, and adapter branches. */
  readonly forward: number;
  /** Activation gradients through projections and adapters: dX = dY·Wᵀ, d(xA) = dY·Bᵀ, dX = d(xA)·Aᵀ. */
  readonly inputGrad: number;
  /** Gradients of the trained projections and adapters: dW = Xᵀ·dY, dA, dB. */
  readonly weightGrad: number;
  /** Attention's products: QKᵀ and P·V forward (first pass); dV, dP, dQ, dK backward. */
  readonly attention: number;
  /** LM head: logits forward (first pass), the hidden states' and the head's gradients. */
  readonly head: number;
  /**
   * Second forwards: recomputed layers (projections, adapters, attention) under
   * `recompute: layers`, and the chunked loss's recomputed logits.
   */
  readonly recompute: number;
  /** Sum of the terms above: matmul FLOPs per token of the whole step. */
  readonly total: number;
  /**
   * Part of `total` that no trainable parameter needs but the engine computes anyway: composite
   * attention's gradients for q, k or v when only some need one (its custom gradient computes all
   * three), the chunked loss's hidden-state gradient when nothing below the head trains.
   */
  readonly unneeded: number;
}

/** What the backward pass does in one decoder layer (derived, exported for tests and reports). */
export interface LayerBackward {
  /** The layer's input depends on a trainable parameter (something trains below it). */
  readonly inputDepends: boolean;
  /** Something in this layer trains (weights, adapters or norms). */
  readonly trains: boolean;
  /** The backward pass visits this layer (it trains, or something below it does). */
  readonly visited: boolean;
}

const ZERO: ExecutedFlops = {
  forward: 0,
  inputGrad: 0,
  weightGrad: 0,
  attention: 0,
  head: 0,
  recompute: 0,
  total: 0,
  unneeded: 0,
};

function hasAdapters(roles: StageRoles, rank: number): boolean {
  return rank > 0 && roles.targets.length > 0;
}

function layerTrains(roles: StageRoles, layer: number, rank: number): boolean {
  if (roles.newLayers.includes(layer)) return true;
  if (!roles.frozenLayers.includes(layer)) {
    throw new Error(`Layer ${layer} of stage ${roles.stage} is neither new nor frozen`);
  }
  return hasAdapters(roles, rank) || roles.frozenNormsTrain;
}

/**
 * Which layers the backward pass reaches and whether their inputs need a gradient: layer l's
 * input depends on a trainable parameter exactly when the embedding trains or some layer below l
 * trains. Layers below the lowest trainable one are never visited (and never recomputed).
 */
export function layerBackward(roles: StageRoles, adapterRank: number): LayerBackward[] {
  let below = roles.embeddingsTrain;
  return Array.from({ length: roles.layers }, (_, l) => {
    const trains = layerTrains(roles, l, adapterRank);
    const out = { inputDepends: below, trains, visited: below || trains };
    below = below || trains;
    return out;
  });
}

interface LayerCount {
  readonly forward: number;
  readonly inputGrad: number;
  readonly weightGrad: number;
  readonly attentionForward: number;
  readonly attentionBackward: number;
  readonly unneeded: number;
}

/** One decoder layer's matmuls, following `decoderLayer` (kernels/model.ts) op by op. */
function layerCount(
  input: ExecutedFlopsInput,
  layer: number,
  inputDepends: boolean,
): LayerCount {
  const { shape, roles, adapterRank, seqLen } = input;
  const isNew = roles.newLayers.includes(layer);
  const adapted = (p: Projection): boolean =>
    !isNew && hasAdapters(roles, adapterRank) && roles.targets.includes(p);
  const normsTrain = isNew || roles.frozenNormsTrain;
  let forward = 0;
  let inputGrad = 0;
  let weightGrad = 0;
  /** One `linear` (kernels/ops/linear.ts); returns whether its output depends on a trainable. */
  const linear = (p: Projection, xDepends: boolean): boolean => {
    const { in: k, out: n } = projectionDims(shape, p);
    forward += 2 * k * n;
    if (isNew) weightGrad += 2 * k * n;
    if (xDepends) inputGrad += 2 * k * n;
    if (adapted(p)) {
      const r = adapterRank;
      // x·A then (x·A)·B: A and B always get their gradients, x·A always its own (A trains).
      forward += 2 * k * r + 2 * r * n;
      weightGrad += 2 * k * r + 2 * r * n;
      inputGrad += 2 * r * n + (xDepends ? 2 * k * r : 0);
    }
    return xDepends || isNew || adapted(p);
  };
  // a = rmsNorm(h, input norm): depends when h does or the norm weight trains.
  const a = inputDepends || normsTrain;
  const q = linear("q", a);
  const k = linear("k", a);
  const v = linear("v", a);
  // Composite attention: QKᵀ [G·s, d]×[d, s] and P·V [G·s, s]×[s, d] per (batch, kv head), i.e.
  // 2·s·h each per token whatever the grouping; its custom gradient runs dV, dP, dQ, dK (2·s·h
  // each) as soon as any of q, k, v needs a gradient.
  const product = 2 * seqLen * shape.hidden;
  const attends = q || k || v;
  const attentionBackward = attends ? 4 * product : 0;
  const needed = (v ? product : 0) + (q || k ? product : 0) + (q ? product : 0) +
    (k ? product : 0);
  const o = linear("o", attends);
  // h1 = h + o(·); m = rmsNorm(h1, post norm).
  const m = inputDepends || o || normsTrain;
  const gate = linear("gate", m);
  const up = linear("up", m);
  linear("down", gate || up);
  return {
    forward,
    inputGrad,
    weightGrad,
    attentionForward: 2 * product,
    attentionBackward,
    unneeded: attentionBackward - needed,
  };
}

/**
 * Matmul FLOPs per training token of one optimizer step as the engine executes it: forward,
 * backward and recomputation (module doc for what is counted).
 *
 * @throws {Error} when a layer index of `roles` is neither new nor frozen.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { executedFlopsPerToken } from "./executed_flops.ts";
 * import { completeShape, firstStageRoles, paramCounts } from "../base/mod.ts";
 * const shape = completeShape({ hidden: 64, intermediate: 176, heads: 4, layers: 2, vocab: 257 } as never);
 * const f = executedFlopsPerToken({
 *   shape, roles: firstStageRoles(2), adapterRank: 0, seqLen: 32, recompute: "none",
 * });
 * // Everything trains: forward, input and weight gradients are 2 FLOPs per weight each.
 * const weights = 2 * (paramCounts(shape).perLayer - 2 * 64);
 * assert(f.forward === weights * 2 && f.inputGrad === f.forward && f.weightGrad === f.forward);
 * ```
 */
export function executedFlopsPerToken(input: ExecutedFlopsInput): ExecutedFlops {
  const { shape, roles } = input;
  const plan = layerBackward(roles, input.adapterRank);
  let forward = 0;
  let inputGrad = 0;
  let weightGrad = 0;
  let attention = 0;
  let recompute = 0;
  let unneeded = 0;
  plan.forEach((l, layer) => {
    const c = layerCount(input, layer, l.inputDepends);
    forward += c.forward;
    attention += c.attentionForward;
    if (!l.visited) return;
    inputGrad += c.inputGrad;
    weightGrad += c.weightGrad;
    attention += c.attentionBackward;
    unneeded += c.unneeded;
    // recomputedMicroBatch reruns every layer from the lowest trainable one up.
    if (input.recompute === "layers") recompute += c.forward + c.attentionForward;
  });
  // Head: logits = final-norm(h)·W_head ([n, h]×[h, V]). The final norm and the head train with
  // the embedding (stage 1, or `embeddingsTrain`).
  const logits = 2 * shape.hidden * shape.vocab;
  const headTrains = roles.embeddingsTrain;
  const hiddenDepends = plan.some((l) => l.trains) || roles.embeddingsTrain;
  const rows = input.microBatch === undefined ? Infinity : input.microBatch * input.seqLen;
  const chunked = input.lossChunk !== undefined && input.lossChunk < rows;
  let head = logits;
  if (chunked && (hiddenDepends || headTrains)) {
    // The chunked loss's gradient recomputes each chunk's logits and always forms dH.
    recompute += logits;
    head += logits + (headTrains ? logits : 0);
    if (!hiddenDepends) unneeded += logits;
  } else if (!chunked) {
    head += (hiddenDepends ? logits : 0) + (headTrains ? logits : 0);
  }
  const total = forward + inputGrad + weightGrad + attention + head + recompute;
  return { forward, inputGrad, weightGrad, attention, head, recompute, total, unneeded };
}

/** Every term of `f` multiplied by `tokens`: the FLOPs of a whole stage. */
export function scaleFlops(f: ExecutedFlops, tokens: number): ExecutedFlops {
  const out: Record<keyof ExecutedFlops, number> = { ...ZERO };
  for (const key of Object.keys(ZERO) as (keyof ExecutedFlops)[]) out[key] = f[key] * tokens;
  return out;
}

/**
 * Executed FLOPs of a whole stage: `steps` optimizer steps of `batchTokens` positions each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { executedFlopsPerToken, executedStageFlops } from "./executed_flops.ts";
 * import { completeShape, firstStageRoles } from "../base/mod.ts";
 * const shape = completeShape({ hidden: 64, intermediate: 176, heads: 4, layers: 2, vocab: 257 } as never);
 * const input = { shape, roles: firstStageRoles(2), adapterRank: 0, seqLen: 32, recompute: "none" } as const;
 * const stage = executedStageFlops(input, { steps: 10, batchTokens: 64 });
 * assert(stage.total === executedFlopsPerToken(input).total * 640);
 * ```
 */
export function executedStageFlops(
  input: ExecutedFlopsInput,
  run: { readonly steps: number; readonly batchTokens: number },
): ExecutedFlops {
  return scaleFlops(executedFlopsPerToken(input), run.steps * run.batchTokens);
}

/**
 * The paper's count for the same stage (spec §4): 6 per trained and 2 per frozen non-embedding
 * parameter, adapters counted as trained, frozen norms as trained when `frozenNormsTrain`.
 * Embedding, final norm, LM head and attention products are left out, as the paper does; for a
 * STEP stage without trained norms this is `stageFlopsPerToken` of `compute_budget.ts`.
 */
export function paperFlopsPerToken(
  shape: LlamaShape,
  roles: StageRoles,
  adapterRank: number,
): number {
  const P = paramCounts(shape).perLayer;
  const E = adapterRank > 0 ? adapterParamsPerLayer(shape, adapterRank, roles.targets) : 0;
  const norms = roles.frozenNormsTrain ? 2 * shape.hidden : 0;
  const frozen = roles.frozenLayers.length;
  return 6 * (roles.newLayers.length * P + frozen * (E + norms)) + 2 * frozen * (P - norms);
}

/** GaLore settings that size its projections. */
export interface GaloreFlopsSpec {
  /** Rank r of the projections (capped at each matrix's shorter side). */
  readonly rank: number;
  /** Projections of every layer whose gradients are projected. */
  readonly targets: readonly Projection[];
}

/**
 * Extra matmul FLOPs GaLore adds to one optimizer step, on top of a standard step: for each
 * targeted m×n weight of each of `layers` layers, projecting its gradient to rank r (2·m·n·r)
 * and projecting the update back (2·m·n·r), with r capped at min(m, n). Not per token: the
 * projections run once per step whatever the batch. The SVD that refreshes each projector every
 * `updateEvery` steps is not a matmul and is excluded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { galoreStepExtraFlops } from "./executed_flops.ts";
 * import { completeShape } from "../base/mod.ts";
 * const shape = completeShape({ hidden: 64, intermediate: 176, heads: 4, layers: 2, vocab: 257 } as never);
 * assert(galoreStepExtraFlops(shape, 2, { rank: 8, targets: ["q"] }) === 2 * 4 * 64 * 64 * 8);
 * ```
 */
export function galoreStepExtraFlops(
  shape: LlamaShape,
  layers: number,
  spec: GaloreFlopsSpec,
): number {
  const perLayer = PROJECTIONS.filter((p) => spec.targets.includes(p)).reduce((sum, p) => {
    const d = projectionDims(shape, p);
    const r = Math.min(spec.rank, d.in, d.out);
    return sum + 4 * d.in * d.out * r;
  }, 0);
  return layers * perLayer;
}
