/**
 * Seeded normal samples in plain JavaScript, so initial weights are the same
 * on every backend and do not depend on how many tensors were drawn before.
 *
 * @module
 */
import { createRng, hashString } from "../base/mod.ts";

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
  const rng = createRng(Math.imul(options.seed >>> 0, 0x9e3779b1) ^ hashString(options.name));
  const next = (): number => rng.nextFloat();
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
