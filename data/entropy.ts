/**
 * Reference entropies for judging a language model's loss.
 *
 * @module
 */

/**
 * Entropy in nats of the empirical unigram distribution of a token stream:
 * the loss of the best model that ignores context. A trained model's loss
 * should fall well below it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unigramEntropy } from "./entropy.ts";
 * assert(Math.abs(unigramEntropy([0, 1, 0, 1]) - Math.log(2)) < 1e-12);
 * ```
 */
export function unigramEntropy(tokens: ArrayLike<number>): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  const n = tokens.length;
  let h = 0;
  for (const c of counts.values()) h -= (c / n) * Math.log(c / n);
  return h;
}
