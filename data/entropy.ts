/**
 * Reference entropies for judging a language model's loss.
 *
 * @module
 */
import { forEachChunk, type TokenStream } from "./token_stream.ts";

function isStream(tokens: TokenStream | ArrayLike<number>): tokens is TokenStream {
  return typeof (tokens as TokenStream).read === "function";
}

/**
 * Entropy in nats of the empirical unigram distribution of a token stream:
 * the loss of the best model that ignores context. A trained model's loss
 * should fall well below it. A {@link TokenStream} is read in chunks, so a corpus of any size
 * costs one chunk and a count per id.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unigramEntropy } from "./entropy.ts";
 * assert(Math.abs(unigramEntropy([0, 1, 0, 1]) - Math.log(2)) < 1e-12);
 * ```
 */
export function unigramEntropy(tokens: TokenStream | ArrayLike<number>): number {
  let counts = new Float64Array(1024);
  // Ids in order of first appearance: the sum below runs in that order, as it always has.
  const seen: number[] = [];
  const count = (chunk: ArrayLike<number>) => {
    for (let i = 0; i < chunk.length; i++) {
      const t = chunk[i]!;
      if (!(Number.isInteger(t) && t >= 0)) throw new RangeError(`token ${t} is not an id`);
      if (t >= counts.length) {
        const grown = new Float64Array(Math.max(t + 1, counts.length * 2));
        grown.set(counts);
        counts = grown;
      }
      if (counts[t] === 0) seen.push(t);
      counts[t]!++;
    }
  };
  if (isStream(tokens)) forEachChunk(tokens, (chunk) => count(chunk));
  else count(tokens);
  const n = tokens.length;
  let h = 0;
  for (const t of seen) {
    const c = counts[t]!;
    h -= (c / n) * Math.log(c / n);
  }
  return h;
}
