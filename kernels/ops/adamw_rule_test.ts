/**
 * Every AdamW kernel against the float64 reference of ./adamw_rule.ts, on random inputs: on each
 * backend (cpu, wasm, webgpu) the fused kernel where the backend registers one and the composite
 * of ./adamw.ts, and GaLore's projected step (../galore.ts, composite everywhere).
 *
 * Tolerance: the largest difference of an output is at most 1e-6 × its largest reference value
 * (about 17 float32 ulps: each element goes through some eight float32 operations, with the
 * scalars rounded to float32); GaLore's 1e-5 also covers its two float32 matrix products.
 * Cases take eps up to 0.1 and steps from 1 to 1000, so a misplaced ε or bias correction is far
 * outside it.
 */
import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "../../tests/assert.ts";
import { galoreSide, galoreUpdate } from "../galore.ts";
import { assertClose, backendTest } from "../_test_util.ts";
import { type AdamWStepOptions, adamwUpdate } from "./adamw.ts";
import {
  adamReference,
  adamwReference,
  adamwScalars,
  type AdamWStep,
  adamwStep,
  adamwStepFrom,
} from "./adamw_rule.ts";
import { FUSED_ADAMW, hasFusedKernel } from "./fused_kernels.ts";

const CASES = 12;
const TOLERANCE = 1e-6;
const GALORE_TOLERANCE = 1e-5;
/** GaLore's targets are matrices, which decay. */
const DECAYS = true;

/** A deterministic generator of floats in [0, 1) (an LCG; test data only). */
function rng(seed: number): () => number {
  let s = (seed * 2654435761 + 12345) >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function pick<T>(next: () => number, xs: readonly T[]): T {
  return xs[Math.floor(next() * xs.length)]!;
}

/** float32 values in [lo, hi), a fifth of them exactly `zero` when given. */
function values(next: () => number, n: number, lo: number, hi: number, zero?: number) {
  return Float32Array.from(
    { length: n },
    () => zero !== undefined && next() < 0.2 ? zero : lo + (hi - lo) * next(),
  );
}

interface Case {
  readonly shape: number[];
  readonly param: Float32Array;
  readonly grad: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly options: AdamWStepOptions;
}

function cases(seed: number): Case[] {
  const next = rng(seed);
  return Array.from({ length: CASES }, (_, i) => {
    const shape = i % 3 === 0
      ? [1 + Math.floor(next() * 37)]
      : [1 + Math.floor(next() * 9), 1 + Math.floor(next() * 11)];
    const n = shape.reduce((a, b) => a * b, 1);
    return {
      shape,
      param: values(next, n, -1, 1),
      grad: values(next, n, -2, 2, 0),
      m: values(next, n, -0.1, 0.1, 0),
      v: values(next, n, 0, 0.05, 0),
      options: {
        lr: 1e-4 + 5e-2 * next(),
        beta1: pick(next, [0.9, 0.8]),
        beta2: pick(next, [0.95, 0.999]),
        eps: pick(next, [1e-8, 1e-3, 0.1]),
        weightDecay: pick(next, [0, 0.1, 0.5]),
        step: [1, 2, 7, 1000][i % 4]!,
        gradScale: i % 2 === 0 ? 1 : 0.1 + 0.9 * next(),
        consumeInputs: i % 4 < 2,
      },
    };
  });
}

/** Runs `f` with the active backend's `StepAdamW` unregistered, so AdamW takes its composite. */
async function composite<A>(f: () => Promise<A>): Promise<A> {
  const kernel = tf.getKernel(FUSED_ADAMW, tf.getBackend());
  if (kernel !== undefined) tf.unregisterKernel(FUSED_ADAMW, tf.getBackend());
  try {
    assert(!hasFusedKernel(FUSED_ADAMW));
    return await f();
  } finally {
    if (kernel !== undefined) tf.registerKernel(kernel);
  }
}

async function checkAdamW(label: string, c: Case): Promise<void> {
  const want = adamwReference(c, adamwStep(c.options, c.shape.length >= 2));
  const [param, grad, m, v] = [c.param, c.grad, c.m, c.v].map((x) => tf.tensor(x, c.shape));
  const before = tf.memory().numTensors;
  const got = adamwUpdate({ param: param!, grad: grad!, m: m!, v: v! }, c.options);
  // With consumeInputs the inputs may now hold the results: they are only disposed.
  tf.dispose([param!, grad!, m!, v!]);
  const where = `${label} [${c.shape}] step ${c.options.step} eps ${c.options.eps}`;
  assertClose(await got.param.data(), want.param, TOLERANCE, `${where}: param`);
  assertClose(await got.m.data(), want.m, TOLERANCE, `${where}: m`);
  assertClose(await got.v.data(), want.v, TOLERANCE, `${where}: v`);
  tf.dispose([got.param, got.m, got.v]);
  assertEquals(tf.memory().numTensors, before - 4, `${where}: tensors left behind`);
}

backendTest(
  "every AdamW kernel matches the float64 reference on random inputs",
  async (backend) => {
    // cpu has no fused AdamW; wasm and webgpu must, or this would test the composite twice.
    assertEquals(hasFusedKernel(FUSED_ADAMW), backend !== "cpu");
    for (const c of cases(17)) {
      if (hasFusedKernel(FUSED_ADAMW)) await checkAdamW(`${backend} fused`, c);
      await composite(() => checkAdamW(`${backend} composite`, c));
    }
  },
);

function matmul(a: Float64Array, b: Float64Array, p: number, q: number, r: number): Float64Array {
  const out = new Float64Array(p * r);
  for (let i = 0; i < p; i++) {
    for (let k = 0; k < q; k++) {
      for (let j = 0; j < r; j++) out[i * r + j]! += a[i * q + k]! * b[k * r + j]!;
    }
  }
  return out;
}

function transpose(a: Float64Array, p: number, q: number): Float64Array {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) out[j * p + i] = a[i * q + j]!;
  return out;
}

backendTest(
  "GaLore's step matches the float64 reference through any projector",
  async (backend) => {
    const next = rng(29);
    for (const c of cases(23).filter((c) => c.shape.length === 2)) {
      const [rows, cols] = c.shape as [number, number];
      const side = galoreSide(c.shape);
      const n = Math.min(rows, cols);
      const rank = 1 + Math.floor(next() * n);
      const q = Float64Array.from(values(next, n * rank, -1, 1));
      const [mRows, mCols] = side === "right" ? [rows, rank] : [rank, cols];
      const old = {
        m: Float64Array.from(values(next, mRows * mCols, -0.1, 0.1)),
        v: Float64Array.from(values(next, mRows * mCols, 0, 0.05)),
      };
      const scale = 0.25 + next();
      const h = adamwStep(c.options, DECAYS);
      const g = Float64Array.from(c.grad);
      const r = side === "right"
        ? matmul(g, q, rows, cols, rank)
        : matmul(transpose(q, n, rank), g, rank, rows, cols);
      const want = adamReference(r, old, h);
      const back = side === "right"
        ? matmul(want.direction, transpose(q, n, rank), rows, rank, cols)
        : matmul(q, want.direction, rows, rank, cols);
      // GaLore's reference decays the stepped weight (after the update), not the old one.
      const w = Float64Array.from(
        c.param,
        (p, i) => (p - h.lr * scale * back[i]!) * (1 - h.lr * h.weightDecay),
      );

      const ts = {
        param: tf.tensor2d(c.param, [rows, cols]),
        grad: tf.tensor2d(c.grad, [rows, cols]),
        m: tf.tensor2d(Float32Array.from(old.m), [mRows, mCols]),
        v: tf.tensor2d(Float32Array.from(old.v), [mRows, mCols]),
        projector: tf.tensor2d(Float32Array.from(q), [n, rank]),
      };
      const got = galoreUpdate(ts, side, { ...c.options, scale });
      const where = `${backend} galore ${side} [${c.shape}] r ${rank} step ${c.options.step}`;
      assertClose(await got.param.data(), w, GALORE_TOLERANCE, `${where}: param`);
      assertClose(await got.m.data(), want.m, GALORE_TOLERANCE, `${where}: m`);
      assertClose(await got.v.data(), want.v, GALORE_TOLERANCE, `${where}: v`);
      tf.dispose([...Object.values(ts), got.param, got.m, got.v]);
    }
  },
);

Deno.test("adamwScalars() folds the bias corrections, step and decay as the reference applies them", () => {
  const h: AdamWStep = {
    lr: 0.02,
    beta1: 0.9,
    beta2: 0.99,
    eps: 0.1,
    weightDecay: 0.5,
    step: 3,
    gradScale: 0.5,
  };
  const s = adamwScalars(h, 0.25);
  // One element through the module's formula with these scalars, against the reference.
  const [p, g, m, v] = [0.7, -1.3, 0.05, 0.02];
  const gs = s.gradScale * g;
  const m1 = s.beta1 * m + s.oneMinusBeta1 * gs;
  const v1 = s.beta2 * v + s.oneMinusBeta2 * gs * gs;
  const formula = p * s.decay - s.stepSize * m1 / (Math.sqrt(v1 * s.vCorrection) + s.eps);
  const ref = adamReference([g], { m: [m], v: [v] }, h);
  assertEquals([m1, v1], [ref.m[0], ref.v[0]]);
  const want = p - h.lr * h.weightDecay * p - 0.25 * h.lr * ref.direction[0]!;
  assert(Math.abs(formula - want) < 1e-15, `${formula} vs ${want}`);
  assertEquals(adamwStep({ lr: 1, step: 1, gradScale: 1 }, !DECAYS).weightDecay, 0);
  assertEquals(adamwStepFrom((f) => h[f]), h);
});
