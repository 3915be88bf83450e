/**
 * The one way the checkpoint formats differ in layout: our linear weights (the
 * seven projections and the LM head) are [in, out] (y = x·W), Hugging Face's
 * are [out, in] (y = x·Wᵀ, torch's `nn.Linear`). Names are the same in every
 * format (`base/param_names.ts`). The embedding is [vocab, hidden] and the
 * RMSNorm weights are [hidden] in both.
 *
 * @module
 */
import { LM_HEAD, parseProjectionName } from "../base/mod.ts";

/** Whether Hugging Face stores this weight transposed relative to us (the linear maps). */
export function isLinearWeight(name: string): boolean {
  return name === LM_HEAD || parseProjectionName(name)?.rest === "weight";
}

/** A weight's shape in Hugging Face's layout, from its shape in ours. */
export function hfShape(name: string, ours: readonly number[]): number[] {
  return isLinearWeight(name) ? [...ours].reverse() : [...ours];
}

// Tiles keep both the reads and the writes of a large transpose within the cache.
const TILE = 64;

/**
 * The transpose of a row-major [rows, cols] matrix, moved as 32-bit patterns so
 * every value (NaN payloads included) keeps its exact bits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transpose } from "./layout.ts";
 * const t = transpose(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3);
 * assert(t.join() === "1,4,2,5,3,6");
 * ```
 */
export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  if (values.length !== rows * cols) {
    throw new Error(`transpose: ${values.length} values for [${rows}, ${cols}]`);
  }
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const dst = new Uint32Array(values.length);
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c]!;
      }
    }
  }
  return new Float32Array(dst.buffer);
}
