/**
 * STEP's freezing rules, the one place they are written (spec §1, §5, §6):
 *
 * - stage 1 trains every parameter of its n_1 layers, the embedding, the
 *   final norm and the LM head;
 * - a later stage inserts n_i layers where `growth_layout.ts` puts them and
 *   trains those at full rank; every older layer (its norms included) is
 *   frozen, and so are the embedding, final norm and LM head unless the
 *   stage asks to train them;
 * - when the stage attaches ReLoRA, every target projection of every frozen
 *   layer carries a trainable adapter (`<proj>.lora_A`, `<proj>.lora_B`).
 *
 * The surgery on snapshots (`checkpoint/surgery.ts`) applies these lists as
 * given, `deno task plan --modules` prints them in PyTorch's module names, and
 * every engine loads the result.
 *
 * @module
 */
import { grownLayout, insertionCounts, type Placement } from "./growth_layout.ts";
import { type LlamaShape, type Projection, PROJECTIONS } from "./llama_shape.ts";
import {
  layerNormNames,
  layerWeightNames,
  loraNames,
  modelWeightNames,
  outsideWeightNames,
  projectionWeight,
} from "./param_names.ts";

/** How a later stage grows and what it adapts. */
export interface GrowthRoleOptions {
  /** Where the new layers of the growth go (spec §6). */
  readonly placement: Placement;
  /** Seed of the `random` placement. */
  readonly seed: number;
  /** Projections of the frozen layers that carry adapters (empty: no adapters). */
  readonly targets: readonly Projection[];
  /** Whether the embedding, final norm and LM head train in this stage. */
  readonly trainEmbeddings: boolean;
  /** Whether the frozen layers' RMSNorm weights keep training (ReLoRA's baseline; STEP: no). */
  readonly trainNorms?: boolean;
}

/** Which layers of one stage train, which are frozen, and what carries adapters. */
export interface StageRoles {
  /** 1-based stage index. */
  readonly stage: number;
  /** Depth while the stage trains. */
  readonly layers: number;
  /** Indices (in this stage's numbering) of the layers trained at full rank. */
  readonly newLayers: readonly number[];
  /** Indices of the frozen layers (the ones adapters go on). */
  readonly frozenLayers: readonly number[];
  /** Whether the embedding, final norm and LM head train. */
  readonly embeddingsTrain: boolean;
  /** Whether the frozen layers' RMSNorm weights train (ReLoRA's baseline; never in STEP). */
  readonly frozenNormsTrain: boolean;
  /** Adapted projections of every frozen layer, in `PROJECTIONS` order. */
  readonly targets: readonly Projection[];
}

/** Stage 1: a fresh model of `layers` layers, everything trained. */
export function firstStageRoles(layers: number): StageRoles {
  return {
    stage: 1,
    layers,
    newLayers: Array.from({ length: layers }, (_, i) => i),
    frozenLayers: [],
    embeddingsTrain: true,
    frozenNormsTrain: false,
    targets: [],
  };
}

/**
 * Stage `stage`: `added` layers inserted into a model of `depthBefore` layers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { grownStageRoles } from "./stage_roles.ts";
 * const r = grownStageRoles(2, 2, 1, {
 *   placement: "upper", seed: 0, targets: ["q", "v"], trainEmbeddings: false,
 * });
 * assert(r.newLayers.join() === "2" && r.frozenLayers.join() === "0,1");
 * ```
 */
export function grownStageRoles(
  stage: number,
  depthBefore: number,
  added: number,
  options: GrowthRoleOptions,
): StageRoles {
  const layout = grownLayout(
    insertionCounts(depthBefore, added, options.placement, options.seed),
  );
  const newLayers: number[] = [];
  const frozenLayers: number[] = [];
  layout.forEach((origin, i) => (origin.kind === "new" ? newLayers : frozenLayers).push(i));
  return {
    stage,
    layers: depthBefore + added,
    newLayers,
    frozenLayers,
    embeddingsTrain: options.trainEmbeddings,
    frozenNormsTrain: options.trainNorms ?? false,
    targets: PROJECTIONS.filter((p) => options.targets.includes(p)),
  };
}

/** Roles of every stage of a split (layers added per stage, stage 1 first). */
export function splitRoles(
  split: readonly number[],
  options: (stage: number) => GrowthRoleOptions,
): StageRoles[] {
  let depth = 0;
  return split.map((added, idx) => {
    const roles = idx === 0
      ? firstStageRoles(added)
      : grownStageRoles(idx + 1, depth, added, options(idx + 1));
    depth += added;
    return roles;
  });
}

/** The projection weights that carry adapters, frozen layer by frozen layer. */
export function adaptedWeights(roles: StageRoles): string[] {
  return roles.frozenLayers.flatMap((l) => roles.targets.map((p) => projectionWeight(l, p)));
}

/** Weights trained at full rank right after growth: the new layers' (the rest comes with the adapters). */
export function grownTrainable(roles: StageRoles): string[] {
  return roles.newLayers.flatMap((l) => layerWeightNames(l));
}

/**
 * Everything that trains in the stage, in the engine's order: the new layers' weights, the
 * adapters (`lora_A`, `lora_B` per adapted weight), then the embedding, final norm and LM head
 * when they train. Stage 1 is every weight in state-dict order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { grownStageRoles, stageTrainable } from "./stage_roles.ts";
 * const r = grownStageRoles(2, 1, 1, {
 *   placement: "upper", seed: 0, targets: ["q"], trainEmbeddings: false,
 * });
 * const names = stageTrainable(r, { tiedEmbeddings: true });
 * assert(names.at(-1) === "model.layers.0.self_attn.q_proj.lora_B");
 * ```
 */
export function stageTrainable(
  roles: StageRoles,
  shape: Pick<LlamaShape, "tiedEmbeddings">,
): string[] {
  if (roles.stage === 1) return modelWeightNames(roles.layers, shape.tiedEmbeddings);
  const adapters = adaptedWeights(roles).flatMap((w) => {
    const { a, b } = loraNames(w);
    return [a, b];
  });
  const norms = roles.frozenNormsTrain
    ? roles.frozenLayers.flatMap((l) => Object.values(layerNormNames(l)))
    : [];
  return [
    ...grownTrainable(roles),
    ...adapters,
    ...norms,
    ...(roles.embeddingsTrain ? outsideWeightNames(shape.tiedEmbeddings) : []),
  ];
}
