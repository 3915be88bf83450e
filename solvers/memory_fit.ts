/**
 * Whether a predicted peak fits a backend's memory, and the largest size that does: a search
 * over an integer size (layers, say) of a peak that never falls as the size grows.
 *
 * @module
 */

/**
 * What a backend can hold on this machine: a figure in bytes with where it comes from, or why
 * no figure is known before the backend runs.
 */
export type MemoryLimit =
  | {
    readonly kind: "bytes";
    readonly bytes: number;
    /** Where the figure comes from, e.g. `wasm32 heap: 4 GiB less its initial 16 MiB`. */
    readonly what: string;
  }
  | { readonly kind: "unknown"; readonly what: string };

/** The largest size found and its peak; `size` 0 when not even the smallest size fits. */
export interface Largest {
  /** The largest size that fits, from 1; 0 when none does. */
  readonly size: number;
  /** The peak at `size` (undefined when `size` is 0). */
  readonly peak?: number;
  /** True when `cap` itself fits: the largest size may be larger than the search looked. */
  readonly capped: boolean;
}

/**
 * The largest size n in [1, cap] with `peakOf(n) ≤ limit`, for a `peakOf` that never decreases
 * in n: doubling from 1 until a size does not fit (or `cap` is reached), then bisection. About
 * 2·log2(n) evaluations, the largest of them below 2n, which matters when `peakOf` costs more
 * the larger n is (the step replay is quadratic in the depth).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { largestWithin } from "./memory_fit.ts";
 * // 100 B per layer on top of 1000: 19 layers fit 3000 B, 20 need 3000, 21 do not.
 * assert.deepEqual(largestWithin((n) => 1000 + 100 * n, 3000, 64), {
 *   size: 20,
 *   peak: 3000,
 *   capped: false,
 * });
 * ```
 */
export function largestWithin(
  peakOf: (size: number) => number,
  limit: number,
  cap: number,
): Largest {
  if (!Number.isInteger(cap) || cap < 1) {
    throw new RangeError(`largestWithin: cap must be a positive integer, got ${cap}`);
  }
  const first = peakOf(1);
  if (first > limit) return { size: 0, capped: false };
  let fits = 1;
  let fitsPeak = first;
  let over: number | undefined;
  while (over === undefined && fits < cap) {
    const next = Math.min(cap, fits * 2);
    const peak = peakOf(next);
    if (peak <= limit) [fits, fitsPeak] = [next, peak];
    else over = next;
  }
  if (over === undefined) return { size: fits, peak: fitsPeak, capped: true };
  // Invariant: `fits` fits, `high` does not.
  let high: number = over;
  while (high - fits > 1) {
    const mid: number = fits + Math.floor((high - fits) / 2);
    const peak = peakOf(mid);
    if (peak <= limit) [fits, fitsPeak] = [mid, peak];
    else high = mid;
  }
  return { size: fits, peak: fitsPeak, capped: false };
}
