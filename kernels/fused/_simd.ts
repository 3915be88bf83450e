/**
 * The fused kernels' inner loops, hand-written in WebAssembly SIMD (f32x4)
 * and run on the wasm backend's own memory, so they read and write tensors in
 * place. Private to `kernels/fused/`.
 *
 * Why wasm and not JavaScript: measured here, a JavaScript loop over a
 * Float32Array costs ~2 ns per element and `Math.exp` ~20 ns, so the exp-heavy
 * kernels (softmax cross-entropy over the vocabulary, attention's softmax,
 * SwiGLU's sigmoid) would cost more than the composite kernels they replace.
 *
 * Every pointer is a byte offset into the memory; every count is in floats.
 * Loops run 4 lanes at a time, then a scalar tail that runs the same lane
 * code on one element (for any n, including odd n).
 *
 * @module
 */
import { WASM32_PAGES } from "../../base/mod.ts";
import { assembleWat } from "./_wat.ts";
import { layerFunctions } from "./_simd_layers.ts";
import { softmaxFunctions } from "./_simd_softmax.ts";

/** The exports of the module below. */
export interface SimdKernels {
  /** max of p[0..n) (−3.4e38 when n = 0). */
  max(p: number, n: number): number;
  /** Σ exp(src[i] − shift) over i < n; writes nothing. */
  sumExp(src: number, n: number, shift: number): number;
  /** dst[i] = a·exp(src[i] − shift) (dst may be src); returns Σ exp(src[i] − shift). */
  expScaled(src: number, dst: number, n: number, shift: number, a: number): number;
  /** dst[i] = a·src[i] (dst may be src). */
  scale(dst: number, src: number, n: number, a: number): void;
  /** dst[i] = value. */
  fill(dst: number, n: number, value: number): void;
  /** Σ p[i]² over i < n, in float32. */
  sumSquares(p: number, n: number): number;
  /** out[r] = Σ_i a[r·stride + i]·b[r·stride + i] for r < rows, i < n; stride in bytes. */
  stridedDots(a: number, b: number, rows: number, n: number, stride: number, out: number): void;
  /**
   * A block of `rows` rows of a causal score matrix (row stride `ld` floats), whose
   * first row is query `first`: row r keeps its first first+r+1 entries, as their
   * softmax in place, and gets zeros up to `width`; rowMax[r] and rowSum[r] receive the
   * max and Σ exp(x − max).
   */
  causalSoftmax(
    s: number,
    rows: number,
    first: number,
    width: number,
    ld: number,
    rowMax: number,
    rowSum: number,
  ): void;
  /** The same block: s = exp(s − lse[r]) on each row's causal part, zeros up to `width`. */
  causalExp(s: number, rows: number, first: number, width: number, ld: number, lse: number): void;
  /**
   * The same block: dp = a·p·(dp − rowDot[r]) on each row's causal part, zeros up to
   * `width` (p and dp share the stride `ld`).
   */
  causalSoftmaxGrad(
    dp: number,
    p: number,
    rows: number,
    first: number,
    width: number,
    ld: number,
    rowDot: number,
    a: number,
  ): void;
  /** y = g·σ(g)·u over n elements. */
  swigluForward(g: number, u: number, y: number, n: number): void;
  /** dg = dy·u·σ(g)·(1 + g·(1 − σ(g))), du = dy·g·σ(g). */
  swigluBackward(dy: number, g: number, u: number, dg: number, du: number, n: number): void;
  /** Rows of h: rstd[r] = 1/√(mean(x²) + eps); y = x·rstd·w. */
  rmsNormForward(
    x: number,
    w: number,
    y: number,
    rstd: number,
    rows: number,
    h: number,
    eps: number,
  ): void;
  /** dx = r·dy·w − x·r³·Σ(dy·w·x)/h per row; dw = Σ_rows dy·x·r (overwritten). */
  rmsNormBackward(
    dy: number,
    x: number,
    w: number,
    rstd: number,
    dx: number,
    dw: number,
    rows: number,
    h: number,
  ): void;
  /**
   * x [bt rows of heads·2·half], position of row i = i mod t:
   * y₁ = x₁·c − sign·x₂·s, y₂ = x₂·c + sign·x₁·s (sign −1: the inverse rotation).
   */
  rope(
    x: number,
    cos: number,
    sin: number,
    y: number,
    bt: number,
    t: number,
    heads: number,
    half: number,
    sign: number,
  ): void;
  /** One AdamW update of n elements (outputs may be the inputs), scalars from ../ops/adamw_rule.ts. */
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    outP: number,
    outM: number,
    outV: number,
    n: number,
    gradScale: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    decay: number,
    stepSize: number,
    vCorrection: number,
  ): void;
}

function source(shared: boolean): string {
  const memory = shared ? `(memory 1 ${WASM32_PAGES} shared)` : "(memory 1)";
  return `(module
  (import "env" "memory" ${memory})
  ${softmaxFunctions()}
  ${layerFunctions()}
)`;
}

const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();
const compiled = new Map<boolean, WebAssembly.Module>();

/** The kernels compiled for a plain or a shared memory (a shared one must be imported as such). */
export function simdModule(shared: boolean): WebAssembly.Module {
  let m = compiled.get(shared);
  if (m === undefined) {
    m = new WebAssembly.Module(assembleWat(source(shared)));
    compiled.set(shared, m);
  }
  return m;
}

/** The kernels above instantiated on `memory` (once per memory). */
export function simdKernels(memory: WebAssembly.Memory): SimdKernels {
  let k = instances.get(memory);
  if (k === undefined) {
    const shared = memory.buffer instanceof SharedArrayBuffer;
    const instance = new WebAssembly.Instance(simdModule(shared), { env: { memory } });
    k = instance.exports as unknown as SimdKernels;
    instances.set(memory, k);
  }
  return k;
}
