/**
 * Test helpers shared by the blas kernel tests: deterministic inputs, running one function
 * on two backends, and registering some gradient set.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";

/**
 * tfjs-core registers no gradients: the @tensorflow/tfjs bundle does (its ESM
 * `dist/register_all_gradients.js` cannot load under Deno: extensionless imports), and so
 * does this project's engine (kernels/_gradients.ts, through `initBackend`). Either one's
 * BatchMatMul gradient calls matMul with transposes, which lands on the blas kernel. The
 * bundle's specifier is a variable so that type checking passes while deno.json lacks it.
 */
export async function registerSomeGradients(): Promise<string | undefined> {
  const bundle = "@tensorflow/tfjs";
  try {
    await import(bundle);
    return "@tensorflow/tfjs";
  } catch {
    // not in the import map: use the project's own gradients
  }
  try {
    const engine = await import("../mod.ts");
    const r = await engine.initBackend("cpu");
    return E.isRight(r) ? "kernels/_gradients.ts" : undefined;
  } catch {
    return undefined;
  }
}

/** mulberry32: deterministic inputs without Math.random. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return function next(): number {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 * 2 - 1;
  };
}

export function randomArray(size: number, seed: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: size }, next);
}

export interface Input {
  readonly shape: number[];
  readonly values: Float32Array;
}

export function input(shape: number[], seed: number): Input {
  return { shape, values: randomArray(shape.reduce((p, d) => p * d, 1), seed) };
}

/** Runs `f` on `backend` with fresh tensors made from `inputs`; returns shapes and values. */
export async function on(
  backend: string,
  inputs: readonly Input[],
  f: (...ts: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ shape: number[]; values: Float32Array }[]> {
  await tf.setBackend(backend);
  const outs = tf.tidy(() => {
    const r = f(...inputs.map((i) => tf.tensor(i.values, i.shape)));
    return Array.isArray(r) ? r : [r];
  });
  const res = outs.map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  tf.dispose(outs);
  return res;
}

export function assertClose(
  actual: { shape: number[]; values: Float32Array }[],
  expected: { shape: number[]; values: Float32Array }[],
  what: string,
): void {
  assertEquals(actual.length, expected.length, what);
  for (let o = 0; o < actual.length; o++) {
    const a = actual[o]!;
    const e = expected[o]!;
    assertEquals(a.shape, e.shape, `${what}: output ${o} shape`);
    for (let i = 0; i < e.values.length; i++) {
      const x = a.values[i]!;
      const y = e.values[i]!;
      // Summation order differs from the CPU kernel's blocked loop: float32 rounding only.
      assert(
        Math.abs(x - y) <= 1e-4 * (1 + Math.abs(y)),
        `${what}: output ${o} value ${i} is ${x}, cpu gives ${y}`,
      );
    }
  }
}

/** Runs `f` on "cpu" and on `backend` (default "blas") and asserts the results agree. */
export async function compare(
  what: string,
  inputs: readonly Input[],
  f: (...ts: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  backend = "blas",
): Promise<void> {
  const expected = await on("cpu", inputs, f);
  const actual = await on(backend, inputs, f);
  assertClose(actual, expected, what);
}

export const SIZES: [number, number, number][] = [
  [1, 1, 1],
  [1, 3, 17],
  [3, 17, 1],
  [17, 65, 3],
  [65, 17, 65],
  [64, 64, 64],
  [33, 1, 7],
  [2, 130, 5],
  // One row or one column large enough for OpenBLAS to thread its sgemv (decoding's products).
  [1, 300, 700],
  [700, 300, 1],
];
export const TRANSPOSES: [boolean, boolean][] = [[false, false], [true, false], [false, true], [
  true,
  true,
]];

export function operandShape(rows: number, cols: number, transposed: boolean): number[] {
  return transposed ? [cols, rows] : [rows, cols];
}
