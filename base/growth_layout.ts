/**
 * Where growth puts new layers (spec §6), as pure functions of the depth: the
 * surgery every engine's model goes through (`checkpoint/surgery.ts`), the
 * checkpoint tools and the stage roles use the same layout.
 *
 * @module
 */
import type * as ext from "./external_types.ts";
import { oneOf } from "./codec.ts";
import { permutation } from "./prng.ts";

/** Where new layers go when a model grows (spec §6). */
export const PLACEMENTS = ["upper", "uniform", "lower", "random"] as const;
/** A growth placement. */
export type Placement = typeof PLACEMENTS[number];
/** The paper's placement: new layers above the top ones (spec §6). */
export const DEFAULT_PLACEMENT: Placement = "upper";
/** Codec of a placement. */
export const PlacementCodec: ext.Type<Placement> = oneOf("placement", PLACEMENTS);

/**
 * How many new layers go after each existing layer (index = existing layer).
 * `upper`: after each of the top `add` layers; `lower`: after each of the
 * bottom ones; `uniform`: spread evenly; `random`: a seeded random choice.
 * When `add` exceeds the depth, layers receive more than one, top first.
 */
export function insertionCounts(
  depth: number,
  add: number,
  placement: Placement,
  seed: number,
): number[] {
  const counts = new Array<number>(depth).fill(0);
  const rounds = Math.floor(add / depth);
  for (let j = 0; j < depth; j++) counts[j] = rounds;
  const rest = add - rounds * depth;
  let chosen: number[];
  switch (placement) {
    case "upper":
      chosen = Array.from({ length: rest }, (_, k) => depth - 1 - k);
      break;
    case "lower":
      chosen = Array.from({ length: rest }, (_, k) => k);
      break;
    case "uniform":
      chosen = Array.from({ length: rest }, (_, k) => Math.floor(((k + 0.5) * depth) / rest));
      break;
    case "random":
      chosen = Array.from(permutation(depth, seed).subarray(0, rest));
      break;
  }
  for (const j of chosen) counts[j] = (counts[j] ?? 0) + 1;
  return counts;
}

/** Where each layer of the grown model comes from. */
export type LayerOrigin =
  | { readonly kind: "old"; readonly from: number }
  | { readonly kind: "new"; readonly below: number; readonly above: number | undefined };

/** The grown model's layer list, bottom to top. */
export function grownLayout(counts: readonly number[]): LayerOrigin[] {
  const out: LayerOrigin[] = [];
  counts.forEach((k, j) => {
    out.push({ kind: "old", from: j });
    const above = j + 1 < counts.length ? j + 1 : undefined;
    for (let i = 0; i < k; i++) out.push({ kind: "new", below: j, above });
  });
  return out;
}
