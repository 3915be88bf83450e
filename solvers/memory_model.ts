/**
 * The STEP memory model: the paper's Eq. 1 and Eq. 2, term by term, plus the
 * terms the paper leaves out (embeddings with LM head, activations), each
 * switchable and labelled.
 *
 * All figures are bytes, as plain numbers. Every stage is also expressible as a
 * linear function of the split (n_1 … n_K), which is what the integer program
 * minimises; {@link stageLinearForm} gives that form and
 * {@link stageMemory} evaluates a concrete split directly, so tests can check
 * one against the other.
 *
 * @module
 */
import {
  adapterParamsPerLayer,
  type LlamaShape,
  paramCounts,
  type Projection,
  projectionDims,
} from "../base/mod.ts";

/** Training precision regime. */
export type Precision = "mixed" | "fp32";

/** Bytes per parameter for each piece of model state. */
export interface BytesPerParam {
  /** The weight as used in the forward pass. */
  readonly weight: number;
  /** Its gradient. */
  readonly grad: number;
  /** Optimizer state (and fp32 master weight under mixed precision). */
  readonly optimizer: number;
}

/**
 * Mixed precision (the paper): 16-bit weight and gradient, fp32 master + m + v.
 * fp32 (what tfjs does): fp32 weight and gradient, fp32 m + v, no master copy.
 */
export function bytesPerParam(precision: Precision): BytesPerParam {
  return precision === "mixed"
    ? { weight: 2, grad: 2, optimizer: 12 }
    : { weight: 4, grad: 4, optimizer: 8 };
}

/** Bytes of one trained parameter (weight + grad + optimizer). */
export function trainedBytes(precision: Precision): number {
  const b = bytesPerParam(precision);
  return b.weight + b.grad + b.optimizer;
}

/** Activation estimate settings (outside the paper's formula). */
export interface ActivationAssumptions {
  /** Sequences per micro-batch. */
  readonly microBatch: number;
  /** Tokens per sequence. */
  readonly seqLen: number;
  /** Full activation checkpointing: keep only each layer's input. */
  readonly recompute: boolean;
}

/** What the memory model counts. */
export interface MemoryAssumptions {
  readonly precision: Precision;
  /** Count token embedding, final norm and LM head (outside Eq. 1–2). */
  readonly embeddings: boolean;
  /** Keep embeddings, final norm and LM head trainable after stage 1. */
  readonly trainEmbeddingsAfterStage1: boolean;
  /** Activation estimate (outside Eq. 1–2), or undefined to leave it out. */
  readonly activations: ActivationAssumptions | undefined;
}

/** The paper's assumptions: model state only, mixed precision, no embeddings. */
export const PAPER_ASSUMPTIONS: MemoryAssumptions = {
  precision: "mixed",
  embeddings: false,
  trainEmbeddingsAfterStage1: false,
  activations: undefined,
};

/** ReLoRA adapter settings as the memory model needs them. */
export interface AdapterSpec {
  readonly rank: number;
  readonly targets: readonly Projection[];
}

/** The problem the planner solves: a model, its adapters, what to count. */
export interface MemoryProblem {
  readonly shape: LlamaShape;
  readonly adapter: AdapterSpec;
  readonly assumptions: MemoryAssumptions;
}

/** Per-stage memory, each term separately. Paper terms first. */
export interface StageTerms {
  /** Eq. 2, first term: n_i new layers fully trained. */
  readonly newLayers: number;
  /** Eq. 2, second term: N_{i−1} frozen layers, weights only. */
  readonly frozenLayers: number;
  /** Eq. 2, third term: adapters on the frozen layers, fully trained. */
  readonly adapters: number;
  /** Outside the paper: token embedding + final norm + LM head. */
  readonly embeddings: number;
  /** Outside the paper: activation estimate. */
  readonly activations: number;
}

/** Parameter counts of one stage, by role. */
export interface StageParams {
  /** Parameters trained at full rank (new layers, plus embeddings when trained). */
  readonly trainable: number;
  /** Frozen parameters (old layers, plus embeddings when frozen and counted). */
  readonly frozen: number;
  /** Adapter parameters on the frozen layers. */
  readonly adapters: number;
}

/** Memory of one stage. */
export interface StageMemory {
  /** 1-based stage index i. */
  readonly stage: number;
  /** N_i: model depth during this stage. */
  readonly layers: number;
  /** n_i: layers added by this stage. */
  readonly added: number;
  readonly params: StageParams;
  readonly terms: StageTerms;
  /** Sum of the terms. */
  readonly bytes: number;
}

/** Sum of all terms of a stage. */
export function sumTerms(t: StageTerms): number {
  return t.newLayers + t.frozenLayers + t.adapters + t.embeddings + t.activations;
}

/** Parameters of embedding, final norm and LM head together. */
export function embeddingParams(shape: LlamaShape): number {
  const c = paramCounts(shape);
  return c.embedding + c.lmHead + c.finalNorm;
}

/**
 * Activation bytes per layer per token (estimate, outside the paper).
 * Without recomputation a layer keeps: its input and normed input (2h), q, k, v
 * (h + 2·kv), softmax probabilities (heads·s), the attention output (h), the MLP
 * input and normed input (2h), gate, up and their SwiGLU product (3f). With
 * recomputation only the layer input (h) stays; one layer is re-materialised at
 * a time (counted once in {@link activationConstantBytes}).
 */
export function activationBytesPerLayerToken(
  shape: LlamaShape,
  act: ActivationAssumptions,
  precision: Precision,
): number {
  const b = bytesPerParam(precision).weight;
  if (act.recompute) return b * shape.hidden;
  return b * fullLayerActivations(shape, act.seqLen);
}

function fullLayerActivations(shape: LlamaShape, seqLen: number): number {
  const kv = projectionDims(shape, "k").out;
  return 6 * shape.hidden + 2 * kv + 3 * shape.intermediate + shape.heads * seqLen;
}

/**
 * Activation bytes that do not scale with depth: the final norm's input and
 * output, fp32 logits for the loss, and under recomputation one layer's full
 * activations while it is re-materialised.
 */
export function activationConstantBytes(
  shape: LlamaShape,
  act: ActivationAssumptions,
  precision: Precision,
): number {
  const b = bytesPerParam(precision).weight;
  const tokens = act.microBatch * act.seqLen;
  const head = 2 * b * shape.hidden + 4 * shape.vocab;
  const recomputed = act.recompute ? b * fullLayerActivations(shape, act.seqLen) : 0;
  return tokens * (head + recomputed);
}

/**
 * Stage i's memory as a linear function of the split:
 * bytes_i(n) = perNew·n_i + perOld·(n_1 + … + n_{i−1}) + constant_i.
 */
export interface StageLinearForm {
  /** Bytes per layer added in this stage. */
  readonly perNew: number;
  /** Bytes per layer added in earlier stages. */
  readonly perOld: number;
  /** Bytes independent of the split. */
  readonly constant: number;
}

/** The linear form of stage i (1-based) of a problem. */
export function stageLinearForm(problem: MemoryProblem, stage: number): StageLinearForm {
  const { shape, adapter, assumptions: a } = problem;
  const P = paramCounts(shape).perLayer;
  const E = adapterParamsPerLayer(shape, adapter.rank, adapter.targets);
  const trained = trainedBytes(a.precision);
  const frozen = bytesPerParam(a.precision).weight;
  const act = a.activations;
  const actPerLayer = act === undefined
    ? 0
    : act.microBatch * act.seqLen * activationBytesPerLayerToken(shape, act, a.precision);
  return {
    perNew: trained * P + actPerLayer,
    perOld: stage === 1 ? 0 : frozen * P + trained * E + actPerLayer,
    constant: embeddingTermBytes(problem, stage) +
      (act === undefined ? 0 : activationConstantBytes(shape, act, a.precision)),
  };
}

function embeddingTermBytes(problem: MemoryProblem, stage: number): number {
  const a = problem.assumptions;
  if (!a.embeddings) return 0;
  const trained = stage === 1 || a.trainEmbeddingsAfterStage1;
  return embeddingParams(problem.shape) *
    (trained ? trainedBytes(a.precision) : bytesPerParam(a.precision).weight);
}

/**
 * Eq. 2 (and its extra terms) for every stage of a split, evaluated directly
 * from N_i rather than through the linear form.
 */
export function stageMemories(problem: MemoryProblem, split: readonly number[]): StageMemory[] {
  const { shape, adapter, assumptions: a } = problem;
  const P = paramCounts(shape).perLayer;
  const E = adapterParamsPerLayer(shape, adapter.rank, adapter.targets);
  const trained = trainedBytes(a.precision);
  const frozenB = bytesPerParam(a.precision).weight;
  const emb = a.embeddings ? embeddingParams(shape) : 0;
  const result: StageMemory[] = [];
  let before = 0; // N_{i−1}
  split.forEach((added, idx) => {
    const stage = idx + 1;
    const layers = before + added;
    const embTrained = stage === 1 || a.trainEmbeddingsAfterStage1;
    const act = a.activations;
    const terms: StageTerms = {
      newLayers: trained * added * P,
      frozenLayers: frozenB * before * P,
      adapters: trained * before * E,
      embeddings: emb * (embTrained ? trained : frozenB),
      activations: act === undefined ? 0 : act.microBatch * act.seqLen *
          activationBytesPerLayerToken(shape, act, a.precision) * layers +
        activationConstantBytes(shape, act, a.precision),
    };
    result.push({
      stage,
      layers,
      added,
      params: {
        trainable: added * P + (embTrained ? emb : 0),
        frozen: before * P + (embTrained ? 0 : emb),
        adapters: before * E,
      },
      terms,
      bytes: sumTerms(terms),
    });
    before = layers;
  });
  return result;
}

/** Largest stage memory of a split (the quantity Eq. 3 minimises). */
export function peakBytes(problem: MemoryProblem, split: readonly number[]): number {
  return Math.max(...stageMemories(problem, split).map((s) => s.bytes));
}

/** Eq. 1 (with the same extra terms): all L layers trained at once. */
export function standardBytes(problem: MemoryProblem): number {
  const [stage] = stageMemories(problem, [problem.shape.layers]);
  return stage === undefined ? 0 : stage.bytes;
}
