/**
 * The STEP memory model: the paper's Eq. 1 and Eq. 2, term by term, plus the
 * terms the paper leaves out (embeddings with LM head, activations), each
 * switchable and labelled.
 *
 * All figures are bytes, as plain numbers. Every stage is also expressible as a
 * linear function of the split (n_1 … n_K), which is what the integer program
 * minimises; {@link stageLinearForms} gives a stage as the largest of a few such
 * forms (one per moment of a training step when activations count) and
 * {@link stageMemories} evaluates a concrete split, so tests can check one against
 * the other and against the engine's buffer replay (`engine_memory.ts`).
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
  /** Tokens per chunk of the LM head and cross-entropy (`training.lossChunk`); unset: whole. */
  readonly lossChunk?: number;
  /**
   * Micro-batches per optimizer step (default 1). From the second on, every gradient's running
   * sum is alive through the whole pass, and each new contribution briefly beside it.
   */
  readonly accumulation?: number;
  /** The optimizer update's parameter-sized copies (`KernelTraits` of `engine_memory.ts`); default 0. */
  readonly updateBuffers?: number;
  /** Attention as the backend runs it (`KernelTraits`); default `fused`. */
  readonly attention?: "fused" | "composite";
  /** The global gradient norm as the backend runs it (`KernelTraits`); default `composite`. */
  readonly gradientNorm?: "fused" | "composite";
  /** Products add into gradient sums (`KernelTraits`); default false. */
  readonly productSums?: boolean;
}

/** What the memory model counts. */
export interface MemoryAssumptions {
  /**
   * Weight, gradient and optimizer bytes per parameter: `mixed` (the paper: 16-bit weights and
   * gradients, fp32 master and moments) or `fp32` (what tfjs trains in).
   */
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
  /** Adapter rank r. */
  readonly rank: number;
  /** Projections of each frozen layer that carry an adapter. */
  readonly targets: readonly Projection[];
}

/** The problem the planner solves: a model, its adapters, what to count. */
export interface MemoryProblem {
  /** The model at its target depth L. */
  readonly shape: LlamaShape;
  /** The adapters the frozen layers carry in later stages. */
  readonly adapter: AdapterSpec;
  /** Which terms are counted, and at what precision. */
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
  /** Parameter counts by role. */
  readonly params: StageParams;
  /** Bytes by term; `bytes` is their sum. */
  readonly terms: StageTerms;
  /** Sum of the terms: the stage's largest moment. */
  readonly bytes: number;
  /** Which moment that is (`model state` when activations are not counted). */
  readonly peakPhase: string;
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
 * Activation bytes per layer per token that stay until the backward pass, as this project's
 * engine keeps them (`solvers/engine_memory.ts` replays them one by one); with fused attention:
 * the normed input, q and o (rotated q), the residual sum, the MLP's normed input and the
 * layer's output (6h), k and v (2·kv), gate, up and their SwiGLU product (3f), one log-sum-exp
 * per head and two RMS factors. With recomputation only the layer input (h) stays.
 */
export function activationBytesPerLayerToken(
  shape: LlamaShape,
  act: ActivationAssumptions,
  precision: Precision,
): number {
  const b = bytesPerParam(precision).weight;
  return b * (act.recompute ? shape.hidden : layerActivations(shape) + compositeExtra(shape, act));
}

/** What composite attention keeps per token beyond the fused kernel: probabilities and copies. */
function compositeExtra(shape: LlamaShape, act: ActivationAssumptions): number {
  return act.attention === "composite" ? shape.hidden + shape.heads * (act.seqLen - 1) : 0;
}

function kvDims(shape: LlamaShape): number {
  return projectionDims(shape, "k").out;
}

function layerActivations(shape: LlamaShape): number {
  return 6 * shape.hidden + 2 * kvDims(shape) + 3 * shape.intermediate + shape.heads + 2;
}

/**
 * Activation bytes that do not scale with depth, at the start of the backward pass: the
 * embedding output and the final norm's output, the logits and their gradient, and a few values
 * per token (tokens, targets, log-sum-exps). With the loss in chunks the logits exist one chunk
 * at a time, while the hidden states' gradient gathers row by row and a trained head's gradient
 * is summed chunk by chunk.
 */
export function activationConstantBytes(
  shape: LlamaShape,
  act: ActivationAssumptions,
  precision: Precision,
  headTrains = false,
): number {
  const b = bytesPerParam(precision);
  const n = act.microBatch * act.seqLen;
  const { hidden: h, vocab: V } = shape;
  const c = act.lossChunk;
  if (c === undefined || c >= n) return n * b.weight * (2 * h + 2 * V + 5);
  const chunkWork = c * b.weight * (h + 2 * V + 2);
  const headGrad = b.grad * V * h;
  // A trained head: the running sum, then either a chunk's work with its part of the gradient,
  // or the part and the new sum.
  return n * b.weight * (3 * h + 5) +
    (headTrains ? headGrad + Math.max(chunkWork + headGrad, 2 * headGrad) : chunkWork);
}

/**
 * Stage i's memory at one moment of a training step, as a linear function of the split:
 * bytes_i(n) = perNew·n_i + perOld·(n_1 + … + n_{i−1}) + constant_i.
 */
export interface StageLinearForm {
  /** Bytes per layer added in this stage. */
  readonly perNew: number;
  /** Bytes per layer added in earlier stages. */
  readonly perOld: number;
  /** Bytes independent of the split. */
  readonly constant: number;
  /** The moment, e.g. `model state` (Eq. 2) or `backward start`. */
  readonly phase: string;
}

/**
 * Stage i's memory as the largest of a few linear forms (the integer program keeps one row per
 * form). Model state alone (the paper's Eq. 2, and embeddings when counted) is one form. With
 * activations counted each form is a moment of the engine's step: the start of the backward pass
 * (every activation, the logits and their gradient, no weight gradient yet), the top layer's
 * backward (the head's gradient made, a layer's temporaries), the end of the backward pass and
 * the global norm (every gradient), and where they apply the bottom layer rebuilt
 * (recomputation), composite attention's backward, the optimizer update's copies and the head's
 * contribution beside its sum (summed micro-batches).
 */
export function stageLinearForms(problem: MemoryProblem, stage: number): StageLinearForm[] {
  const { shape, adapter, assumptions: a } = problem;
  const P = paramCounts(shape).perLayer;
  const E = adapterParamsPerLayer(shape, adapter.rank, adapter.targets);
  const bytes = bytesPerParam(a.precision);
  const trained = trainedBytes(a.precision);
  const embParams = a.embeddings ? embeddingParams(shape) : 0;
  const embTrained = stage === 1 || a.trainEmbeddingsAfterStage1;
  // Model state with every gradient alive, or before any gradient exists.
  const state = (grads: "with gradients" | "before gradients") => {
    const t = grads === "with gradients" ? trained : trained - bytes.grad;
    return {
      perNew: t * P,
      perOld: stage === 1 ? 0 : bytes.weight * P + t * E,
      constant: embParams * (embTrained ? t : bytes.weight),
    };
  };
  const act = a.activations;
  const full = state("with gradients");
  if (act === undefined) return [{ ...full, phase: "model state" }];
  const b = bytes.weight;
  const n = act.microBatch * act.seqLen;
  const h = shape.hidden;
  const perLayer = n * activationBytesPerLayerToken(shape, act, a.precision);
  const adapterTok = adapter.rank * adapter.targets.length;
  const perOldAct = act.recompute ? perLayer : perLayer + n * b * adapterTok;
  // Summing micro-batches: from the second on, every gradient sum exists from the start.
  const summing = (act.accumulation ?? 1) > 1;
  const early = summing ? full : state("before gradients");
  const f = shape.intermediate;
  const kv = kvDims(shape);
  // A layer's backward at its SwiGLU, the step's busiest moment inside a layer: the down
  // projection's weight gradient just made, the gradients of the layer's output, of the SwiGLU
  // product, gate and up (h + 3f per token), the tokens and targets (2); the layer's product
  // and output already freed (f + h of its kept activations). Under recomputation the layer is
  // rebuilt first: its output (h) and its kept activations but the product
  // (5h + 2kv + 2f + heads + 2) come back.
  const downGrad = bytes.grad * f * h;
  const inLayer = act.recompute
    ? n * b * (7 * h + 2 * kv + 5 * f + shape.heads + 4 + compositeExtra(shape, act))
    : n * b * (h + 2 * f + 2);
  const headGrad = embTrained && a.embeddings ? bytes.grad * shape.vocab * h : 0;
  const largestTrained = Math.max(headGrad / bytes.grad, f * h);
  // The token embedding's gradient comes after the bottom layer's backward (one pass, untied).
  const embeddingGradLater = !summing && headGrad > 0 && !shape.tiedEmbeddings ? headGrad : 0;
  // A weight gradient just made: a new buffer, or (summing) a contribution and the new sum, or
  // nothing where the product adds into the sum.
  const inSums = act.productSums ?? false;
  const contribution = (grad: number) => inSums ? 0 : 2 * grad;
  const madeGrads = summing ? contribution(downGrad) : headGrad + downGrad;
  const normCopy = act.gradientNorm === "fused" ? 0 : bytes.grad * largestTrained;
  const forms: StageLinearForm[] = [
    {
      phase: "backward start",
      perNew: early.perNew + perLayer,
      perOld: stage === 1 ? 0 : early.perOld + perOldAct,
      constant: early.constant +
        activationConstantBytes(shape, act, a.precision, embTrained && a.embeddings),
    },
    {
      phase: "top layer backward",
      perNew: early.perNew + perLayer,
      perOld: stage === 1 ? 0 : early.perOld + perOldAct,
      constant: early.constant + madeGrads + inLayer,
    },
    {
      // Every gradient made, the last beside the embedding output's gradient, then the global
      // norm squaring the largest gradient (a composite norm).
      phase: "end of backward",
      perNew: full.perNew,
      perOld: full.perOld,
      constant: full.constant + Math.max(n * b * h, normCopy),
    },
  ];
  if (act.attention === "composite") {
    // A layer's attention backward: its MLP's and output projection's gradients made, its MLP's
    // activations freed; per token the normed input, q, k, v regrouped, the probabilities, the
    // output per group and regrouped, the gradients of the residual and of the output, and four
    // probability-sized temporaries with the gradients of q, k, v (8h + 4kv + 5·heads·T + 3).
    // Under recomputation the rebuilt layer's output (h) too; without, the layer's kept
    // activations (7h + 2kv + 3f + heads·T + 2) are already in perLayer.
    const scores = shape.heads * act.seqLen;
    const inAttention = act.recompute
      ? n * b * (9 * h + 4 * kv + 5 * scores + 3)
      : n * b * (h + 2 * kv + 4 * scores - 3 * f + 1);
    const attentionGrads = 3 * downGrad + bytes.grad * h * h;
    forms.push({
      phase: "top layer attention backward",
      perNew: early.perNew + perLayer,
      perOld: stage === 1 ? 0 : early.perOld + perOldAct,
      constant: early.constant + madeGrads - downGrad + attentionGrads + inAttention,
    });
    if (act.recompute) {
      // The bottom layer's, every gradient above made: in stage 1 its attention's are not yet,
      // nor the embedding's.
      const pending = stage === 1 ? bytes.grad * P - attentionGrads : 0;
      forms.push({
        phase: "bottom layer attention backward",
        perNew: full.perNew,
        perOld: full.perOld,
        constant: full.constant + n * b * (h + (stage === 1 ? 0 : adapterTok)) + inAttention -
          pending - embeddingGradLater,
      });
    }
  }
  const updateBuffers = act.updateBuffers ?? 0;
  if (updateBuffers > 0) {
    forms.push({
      phase: "optimizer update",
      perNew: full.perNew,
      perOld: full.perOld,
      constant: full.constant + updateBuffers * b * largestTrained,
    });
  }
  const chunked = act.lossChunk !== undefined && act.lossChunk < n;
  if (summing && headGrad > 0 && !chunked) {
    // The head's contribution made beside its sum, with the logits' gradient still alive.
    forms.push({
      phase: "head backward",
      perNew: full.perNew + perLayer,
      perOld: stage === 1 ? 0 : full.perOld + perOldAct,
      constant: full.constant + n * b * (3 * h + shape.vocab + 5) + contribution(headGrad),
    });
  }
  if (!act.recompute) return forms;
  // The bottom layer rebuilt, every gradient above it made, only its input still kept. In
  // stage 1 the bottom layer trains (its busiest moment is the one above, with only the down
  // projection's gradient made). Later it is frozen and adapted, and its busiest moment is
  // either the down projection's backward, where the LoRA branch adds its own copy of the
  // input's gradient and a temporary (f + f on top of the trained layer's), or the rebuild at
  // the up projection, where q, k and the output projection's result are not yet freed at the
  // layer's end (2h + kv) and the up projection's temporaries (3f) stand in for the backward's
  // gradients, with no output yet (h). Where products add into gradient sums, the branch's copy
  // and its sum never exist and the rebuild is the busier.
  const bottom = stage === 1
    ? inLayer - (summing ? downGrad - contribution(downGrad) : bytes.grad * P - downGrad)
    : n * b * (7 * h + 2 * kv + 5 * f + shape.heads + 4 + adapterTok +
      (inSums ? h + kv : Math.max(f, h + kv)));
  return [...forms, {
    phase: "bottom layer backward",
    perNew: full.perNew,
    perOld: full.perOld,
    constant: full.constant + n * b * h + bottom - embeddingGradLater,
  }];
}

/** The largest of stage i's forms at a split (n_i added, `before` layers earlier). */
function largestForm(
  forms: readonly StageLinearForm[],
  added: number,
  before: number,
): { readonly bytes: number; readonly phase: string } {
  let best = { bytes: -Infinity, phase: "" };
  for (const f of forms) {
    const v = f.perNew * added + f.perOld * before + f.constant;
    if (v > best.bytes) best = { bytes: v, phase: f.phase };
  }
  return best;
}

/**
 * Eq. 2 (and its extra terms) for every stage of a split: model state term by term from N_i,
 * activations as what the stage's largest moment ({@link stageLinearForms}) holds beyond it.
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
    const state = {
      newLayers: trained * added * P,
      frozenLayers: frozenB * before * P,
      adapters: trained * before * E,
      embeddings: emb * (embTrained ? trained : frozenB),
    };
    // The step's peak is its largest moment; what exceeds model state is activations.
    const peak = largestForm(stageLinearForms(problem, stage), added, before);
    const stateBytes = state.newLayers + state.frozenLayers + state.adapters + state.embeddings;
    const terms: StageTerms = { ...state, activations: peak.bytes - stateBytes };
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
      peakPhase: peak.phase,
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
