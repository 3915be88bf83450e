/**
 * A small seeded pseudo-random generator, so shuffles and the built-in corpus
 * are reproducible from a number (no `Math.random`).
 *
 * The generator is splitmix32: a 32-bit counter advanced by the golden-ratio
 * constant, passed through a 32-bit finaliser (the `murmur3`-style
 * xor-shift-multiply mix). It passes the usual statistical batteries for this
 * kind of use (shuffling, sampling a grammar) and its whole state is one
 * integer. It is not cryptographic.
 *
 * @module
 */

/** A stream of pseudo-random numbers; each call advances its state. */
export interface Rng {
  /** A uniform integer in [0, 2^32). */
  nextU32(): number;
  /** A uniform float in [0, 1) with 32 bits of resolution. */
  nextFloat(): number;
  /** A uniform integer in [0, n), exactly uniform (rejection sampling); `n` in [1, 2^32]. */
  below(n: number): number;
}

/** FNV-1a of a string's UTF-16 code units: a stable uint32 name for a parameter, graph or stream. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The 32-bit finaliser: a bijection on uint32 that spreads every input bit. */
export function mix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Combines a seed with further integers (epoch, stream id) into a new seed, so
 * that (seed, epoch) pairs give unrelated streams.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveSeed } from "./prng.ts";
 * assert(deriveSeed(1, 0) !== deriveSeed(1, 1));
 * ```
 */
export function deriveSeed(seed: number, ...parts: readonly number[]): number {
  let h = mix32(seed ^ 0x9e3779b9);
  for (const p of parts) h = mix32((h + 0x9e3779b9 + mix32(p >>> 0)) >>> 0);
  return h;
}

/**
 * A splitmix32 generator started from `seed` (any number; only its low 32 bits count).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRng } from "./prng.ts";
 * const a = createRng(7), b = createRng(7);
 * assert(a.nextU32() === b.nextU32());
 * ```
 */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const nextU32 = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    return mix32(state);
  };
  return {
    nextU32,
    nextFloat: () => nextU32() / 4294967296,
    below: (n) => {
      // Reject the top sliver so every residue is equally likely.
      const limit = 4294967296 - (4294967296 % n);
      let x = nextU32();
      while (x >= limit) x = nextU32();
      return x % n;
    },
  };
}

/**
 * A uniformly random permutation of 0..n-1 (Fisher–Yates), fixed by `seed`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { permutation } from "./prng.ts";
 * assert(Array.from(permutation(5, 1)).sort().join() === "0,1,2,3,4");
 * ```
 */
export function permutation(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rng = createRng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
