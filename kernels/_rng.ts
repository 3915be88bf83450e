/**
 * Seeded normal samples in plain JavaScript, so initial weights are the same
 * on every backend and do not depend on how many tensors were drawn before.
 *
 * @module
 */

/** FNV-1a of a string, for deriving one stream per parameter name. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32: a small generator whose streams from nearby seeds are independent. */
function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return function next(): number {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/**
 * `n` samples of N(0, std²) from the stream named by (`seed`, `name`).
 *
 * @example
 * ```ts
 * import { normalSamples } from "./_rng.ts";
 * const w = normalSamples(4, { seed: 1, name: "model.norm.weight", std: 0.02 });
 * ```
 */
export function normalSamples(
  n: number,
  options: { readonly seed: number; readonly name: string; readonly std: number },
): Float32Array {
  const next = splitmix32(Math.imul(options.seed >>> 0, 0x9e3779b1) ^ hashString(options.name));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - next())) * options.std;
    const theta = 2 * Math.PI * next();
    out[i] = r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}
