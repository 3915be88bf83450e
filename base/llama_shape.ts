/**
 * The shape of a LLaMA-style decoder and its parameter counts.
 *
 * Everything that sizes memory or FLOPs starts here; the tensor engine builds
 * exactly these parameters, so the planner's counts and the engine's live
 * bytes can be compared one for one.
 *
 * @module
 */
import * as t from "io-ts";
import type * as ext from "./external_types.ts";
import { strict, type StrictC } from "./codec.ts";
import { PositiveInt, PositiveNumber } from "./brands.ts";

/** The fields a `model:` section must give, with their codecs (meanings: {@link LlamaShape}). */
export const LLAMA_SHAPE_REQUIRED = {
  hidden: PositiveInt,
  intermediate: PositiveInt,
  heads: PositiveInt,
  layers: PositiveInt,
  vocab: PositiveInt,
};

/** The fields a `model:` section may leave out, taking {@link completeShape}'s defaults. */
export const LLAMA_SHAPE_OPTIONAL = {
  kvHeads: PositiveInt,
  tiedEmbeddings: t.boolean,
  rmsNormEps: PositiveNumber,
  ropeTheta: PositiveNumber,
  maxSeqLen: PositiveInt,
};

/** Codec of a LLaMA shape as written in a config file (`model:` section). */
export const LlamaShapeCodec: StrictC<typeof LLAMA_SHAPE_REQUIRED, typeof LLAMA_SHAPE_OPTIONAL> =
  strict("model", LLAMA_SHAPE_REQUIRED, LLAMA_SHAPE_OPTIONAL);

/** A LLaMA shape as decoded, before defaults are applied. */
export type LlamaShapeInput = ext.TypeOf<typeof LlamaShapeCodec>;

/** A complete LLaMA shape: every field set. */
export interface LlamaShape {
  /** Model width h. */
  readonly hidden: number;
  /** MLP width f (SwiGLU gate/up output). */
  readonly intermediate: number;
  /** Attention heads; head dimension is hidden / heads. */
  readonly heads: number;
  /** Key/value heads (grouped-query attention when below `heads`). */
  readonly kvHeads: number;
  /** Target depth L (decoder layers). */
  readonly layers: number;
  /** Vocabulary size V. */
  readonly vocab: number;
  /** Whether the LM head shares the token embedding matrix. */
  readonly tiedEmbeddings: boolean;
  /** ε added to the mean square inside every RMSNorm (LLaMA: 1e-5). */
  readonly rmsNormEps: number;
  /** Base of the rotary position frequencies (LLaMA: 10 000). */
  readonly ropeTheta: number;
  /** Longest sequence the rotary tables are built for. */
  readonly maxSeqLen: number;
}

/** Fills LLaMA defaults (MHA, untied head, eps 1e-5, theta 1e4, 2048 positions). */
export function completeShape(input: LlamaShapeInput): LlamaShape {
  return {
    hidden: input.hidden,
    intermediate: input.intermediate,
    heads: input.heads,
    kvHeads: input.kvHeads ?? input.heads,
    layers: input.layers,
    vocab: input.vocab,
    tiedEmbeddings: input.tiedEmbeddings ?? false,
    rmsNormEps: input.rmsNormEps ?? 1e-5,
    ropeTheta: input.ropeTheta ?? 10000,
    maxSeqLen: input.maxSeqLen ?? 2048,
  };
}

/** Why a shape is unusable (heads must divide hidden, and so on), or undefined. */
export function shapeProblem(shape: LlamaShape): string | undefined {
  if (shape.layers > MAX_LAYERS) {
    return `"layers" is ${shape.layers}, more than the ${MAX_LAYERS} layers this tool handles`;
  }
  for (const field of ["hidden", "intermediate", "vocab", "heads"] as const) {
    if (shape[field] > MAX_WIDTH) {
      return `"${field}" is ${shape[field]}, more than the ${MAX_WIDTH} this tool handles`;
    }
  }
  if (shape.hidden % shape.heads !== 0) {
    return `"hidden" (${shape.hidden}) must be a multiple of "heads" (${shape.heads})`;
  }
  if (shape.kvHeads > shape.heads || shape.heads % shape.kvHeads !== 0) {
    return `"kvHeads" (${shape.kvHeads}) must divide "heads" (${shape.heads})`;
  }
  if ((shape.hidden / shape.heads) % 2 !== 0) {
    return `head dimension hidden/heads = ${
      shape.hidden / shape.heads
    } must be even for rotary embeddings`;
  }
  return undefined;
}

/**
 * Ceilings far above any real model (published LLaMA-style models have a few hundred layers and
 * widths below 2^18), so a mistyped size is refused at once instead of exhausting memory while
 * per-layer lists are built.
 */
export const MAX_LAYERS = 65_536;
/** Ceiling of `hidden`, `intermediate`, `vocab` and `heads` (2^24). */
export const MAX_WIDTH = 16_777_216;

/** The seven linear maps of a LLaMA layer that adapters and GaLore may target. */
export const PROJECTIONS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
/** One of the seven projections. */
export type Projection = typeof PROJECTIONS[number];

/** Codec of a projection name. */
export const ProjectionCodec: ext.Type<Projection> = t.keyof({
  q: null,
  k: null,
  v: null,
  o: null,
  gate: null,
  up: null,
  down: null,
});

/** Input and output width of one projection: the matrix is `in × out`. */
export interface ProjectionDims {
  /** Width of the projection's input (rows of the `[in, out]` weight). */
  readonly in: number;
  /** Width of the projection's output (columns of the `[in, out]` weight). */
  readonly out: number;
}

/** Dimensions of a projection (k and v shrink under grouped-query attention). */
export function projectionDims(shape: LlamaShape, p: Projection): ProjectionDims {
  const h = shape.hidden;
  const kv = shape.kvHeads * (shape.hidden / shape.heads);
  switch (p) {
    case "q":
    case "o":
      return { in: h, out: h };
    case "k":
    case "v":
      return { in: h, out: kv };
    case "gate":
    case "up":
      return { in: h, out: shape.intermediate };
    case "down":
      return { in: shape.intermediate, out: h };
  }
}

/** Parameter counts of one model, split the way the memory model needs them. */
export interface ParamCounts {
  /** P_layer: four attention maps, three MLP maps, two RMSNorm weights. */
  readonly perLayer: number;
  /** Token embedding V·h. */
  readonly embedding: number;
  /** LM head h·V, zero when tied to the embedding. */
  readonly lmHead: number;
  /** Final RMSNorm h. */
  readonly finalNorm: number;
  /** All parameters of the full-depth model. */
  readonly total: number;
}

/** Counts parameters; for MHA, P_layer = 4h² + 3hf + 2h (spec §2). */
export function paramCounts(shape: LlamaShape): ParamCounts {
  const matrices = PROJECTIONS.reduce((sum, p) => {
    const d = projectionDims(shape, p);
    return sum + d.in * d.out;
  }, 0);
  const perLayer = matrices + 2 * shape.hidden;
  const embedding = shape.vocab * shape.hidden;
  const lmHead = shape.tiedEmbeddings ? 0 : shape.hidden * shape.vocab;
  const finalNorm = shape.hidden;
  return {
    perLayer,
    embedding,
    lmHead,
    finalNorm,
    total: perLayer * shape.layers + embedding + lmHead + finalNorm,
  };
}

/** E(P_layer): LoRA of rank r adds r·(in + out) per targeted projection. */
export function adapterParamsPerLayer(
  shape: LlamaShape,
  rank: number,
  targets: readonly Projection[],
): number {
  return targets.reduce((sum, p) => {
    const d = projectionDims(shape, p);
    return sum + rank * (d.in + d.out);
  }, 0);
}
