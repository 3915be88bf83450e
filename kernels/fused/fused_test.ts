import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../../tests/assert.ts";
import { initBackend } from "../backend.ts";
import { adamwUpdate, globalNorm } from "../ops/adamw.ts";
import { assertClose, heapSgemmOrSkip } from "../_test_util.ts";
import {
  FUSED_ADAMW,
  FUSED_ATTENTION,
  FUSED_CROSS_ENTROPY,
  FUSED_RMS_NORM,
  FUSED_ROPE,
  FUSED_SUM_SQUARES,
  FUSED_SWIGLU,
  hasFusedKernel,
} from "../ops/fused_kernels.ts";
import { causalAttention, causalAttentionComposite } from "../ops/attention.ts";
import { crossEntropySum, crossEntropySumComposite } from "../ops/cross_entropy.ts";
import { embedding } from "../ops/embedding.ts";
import { rmsNorm, rmsNormComposite } from "../ops/rms_norm.ts";
import { rope, ropeComposite, ropeTables } from "../ops/rope.ts";
import { swiglu, swigluComposite } from "../ops/swiglu.ts";
import { FUSED_REGISTRIES } from "../../solvers/mod.ts";
import {
  fusedWasmOps,
  fusedWasmThreads,
  registerFusedWasmAttention,
  registerPooledWasmMatMul,
  startFusedWasmPool,
  unregisterFusedWasmAttention,
  unregisterPooledWasmMatMul,
} from "./mod.ts";

const CASES = 6;
const PRESENT = true;
const ABSENT = false;
const FORWARD_TOL = 1e-5;
const GRAD_TOL = 1e-4;
/**
 * Gradients that cancel to nearly 0 (RMSNorm over one element) keep the
 * float32 rounding of their O(1) terms: an absolute floor on top of GRAD_TOL.
 */
const GRAD_FLOOR = 1e-6;

/** max |a − e| ≤ rel·max|e| + floor. */
function assertNear(
  actual: Float32Array,
  expected: Float32Array,
  tol: { rel: number; floor: number },
  label: string,
): void {
  assertEquals(actual.length, expected.length, `${label}: length`);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  }
  if (!(worst <= tol.rel * scale + tol.floor)) {
    throw new Error(`${label}: max |actual − expected| = ${worst} over ${tol.rel} × ${scale}`);
  }
}

/** mulberry32, for shapes and values. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function int(next: () => number, lo: number, hi: number): number {
  return lo + Math.floor(next() * (hi - lo + 1));
}

function randomTensor(next: () => number, shape: number[], scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale), shape);
}

async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

/**
 * Runs `fused` and `composite` on the same inputs: forward values, gradients
 * of Σ c·y (c random) for the float inputs, and no tensor or heap buffer
 * left behind by a second fused gradient call.
 */
async function compare(
  label: string,
  inputs: tf.Tensor[],
  fused: (xs: tf.Tensor[]) => tf.Tensor,
  composite: (xs: tf.Tensor[]) => tf.Tensor,
  seed: number,
): Promise<void> {
  const floats = inputs.map((x, i) => [x, i] as const).filter(([x]) => x.dtype === "float32");
  const yf = fused(inputs);
  const yc = composite(inputs);
  assertEquals(yf.shape, yc.shape, `${label}: output shape`);
  assertClose(await values(yf), await values(yc), FORWARD_TOL, `${label} forward`);
  const c = randomTensor(rng(seed), yf.shape);
  tf.dispose([yf, yc]);
  const gradsOf = (op: (xs: tf.Tensor[]) => tf.Tensor): tf.Tensor[] =>
    tf.grads((...xs: tf.Tensor[]) => {
      const all = inputs.map((x, i) => {
        const at = floats.findIndex(([, j]) => j === i);
        return at < 0 ? x : xs[at]!;
      });
      return tf.sum(tf.mul(op(all), c));
    })(floats.map(([x]) => x));
  tf.dispose(gradsOf(fused)); // warm-up: caches and kernels allocate on first use
  const tensors = tf.memory().numTensors;
  const buffers = tf.engine().backend.numDataIds();
  const gf = gradsOf(fused);
  const gc = gradsOf(composite);
  for (let i = 0; i < gf.length; i++) {
    assertNear(await values(gf[i]!), await values(gc[i]!), {
      rel: GRAD_TOL,
      floor: GRAD_FLOOR,
    }, `${label} d/dx${i}`);
  }
  tf.dispose([...gf, ...gc]);
  assertEquals(tf.memory().numTensors, tensors, `${label}: tensors leaked`);
  assertEquals(tf.engine().backend.numDataIds(), buffers, `${label}: heap buffers leaked`);
  c.dispose();
}

async function onWasm(): Promise<void> {
  const got = await initBackend("wasm");
  if (E.isLeft(got)) throw new Error(got.left.message);
}

Deno.test('initBackend("wasm") registers the fused kernels that need no matrix product', async () => {
  await onWasm();
  for (const name of [FUSED_RMS_NORM, FUSED_ROPE, FUSED_SWIGLU, FUSED_CROSS_ENTROPY]) {
    assertEquals([hasFusedKernel(name.forward), hasFusedKernel(name.gradient)], [PRESENT, PRESENT]);
  }
  assertEquals(hasFusedKernel(FUSED_ADAMW), PRESENT);
  unregisterFusedWasmAttention();
  assertEquals(fusedWasmOps(), [...FUSED_REGISTRIES.wasm], "the attention pair needs OpenBLAS");
});

Deno.test("rmsNorm() fused on wasm matches the composite on random shapes", async () => {
  await onWasm();
  const next = rng(1);
  for (let i = 0; i < CASES; i++) {
    const [n, h] = [int(next, 1, 9), int(next, 1, 37)];
    const eps = [1e-5, 1e-6, 0.1][i % 3]!;
    const xs = [randomTensor(next, [n, h], 3), randomTensor(next, [h], 2)];
    await compare(
      `rmsNorm [${n}, ${h}]`,
      xs,
      ([x, w]) => rmsNorm(x as tf.Tensor2D, w as tf.Tensor1D, { eps }),
      ([x, w]) => rmsNormComposite(x as tf.Tensor2D, w as tf.Tensor1D, { eps }),
      100 + i,
    );
    tf.dispose(xs);
  }
});

Deno.test("rope() fused on wasm matches the composite on random shapes", async () => {
  await onWasm();
  const next = rng(2);
  for (let i = 0; i < CASES; i++) {
    const [b, t, heads, d] = [
      int(next, 1, 3),
      int(next, 1, 9),
      int(next, 1, 4),
      2 * int(next, 1, 9),
    ];
    const tables = ropeTables(t, { headDim: d, theta: [10000, 7][i % 2]! });
    const xs = [randomTensor(next, [b, t, heads, d], 2)];
    await compare(
      `rope [${b}, ${t}, ${heads}, ${d}]`,
      xs,
      ([x]) => rope(x as tf.Tensor4D, tables),
      ([x]) => ropeComposite(x as tf.Tensor4D, tables),
      200 + i,
    );
    tf.dispose([...xs, tables.cos, tables.sin]);
  }
});

Deno.test("swiglu() fused on wasm matches the composite on random shapes", async () => {
  await onWasm();
  const next = rng(3);
  for (let i = 0; i < CASES; i++) {
    const [n, f] = [int(next, 1, 9), int(next, 1, 41)];
    // wide enough that σ saturates at both ends
    const xs = [randomTensor(next, [n, f], 12), randomTensor(next, [n, f], 2)];
    await compare(
      `swiglu [${n}, ${f}]`,
      xs,
      ([g, u]) => swiglu(g as tf.Tensor2D, u as tf.Tensor2D),
      ([g, u]) => swigluComposite(g as tf.Tensor2D, u as tf.Tensor2D),
      300 + i,
    );
    tf.dispose(xs);
  }
});

Deno.test("crossEntropySum() fused on wasm matches the composite, ignored rows included", async () => {
  await onWasm();
  const next = rng(4);
  for (let i = 0; i < CASES; i++) {
    const [n, vocab] = [int(next, 1, 9), int(next, 1, 67)];
    const targets = Int32Array.from({ length: n }, () => int(next, -1, vocab - 1));
    const xs = [randomTensor(next, [n, vocab], [1, 8, 40][i % 3]!), tf.tensor1d(targets, "int32")];
    await compare(
      `crossEntropy [${n}, ${vocab}]`,
      xs,
      ([x, t]) => crossEntropySum(x as tf.Tensor2D, t as tf.Tensor1D),
      ([x, t]) => crossEntropySumComposite(x as tf.Tensor2D, t as tf.Tensor1D),
      400 + i,
    );
    tf.dispose(xs);
  }
});

Deno.test("causalAttention() fused with OpenBLAS on wasm matches the composite (GQA, odd sizes)", async (t) => {
  const sgemm = await heapSgemmOrSkip(t);
  if (sgemm === undefined) return;
  await onWasm();
  registerFusedWasmAttention(sgemm);
  try {
    assertEquals(hasFusedKernel(FUSED_ATTENTION.forward), PRESENT);
    // The products' sums come with the pooled products (registerPooledWasmMatMul), not here.
    assertEquals(fusedWasmOps(), [...FUSED_REGISTRIES.wasm, "attention"]);
    const next = rng(5);
    // Random small cases, then sequences around the kernel's 64-row query blocks.
    const cases = [
      ...Array.from({ length: CASES + 2 }, () => [
        int(next, 1, 2),
        int(next, 1, 13),
        int(next, 1, 3),
        int(next, 1, 3),
        int(next, 1, 9),
      ]),
      [1, 64, 2, 1, 4],
      [1, 65, 1, 3, 5],
      [2, 131, 2, 2, 7],
    ];
    for (const [i, [b, seq, kvHeads, group, d]] of cases.entries()) {
      const heads = kvHeads! * group!;
      const xs = [
        randomTensor(next, [b!, seq!, heads, d!], 1.5),
        randomTensor(next, [b!, seq!, kvHeads!, d!], 1.5),
        randomTensor(next, [b!, seq!, kvHeads!, d!]),
      ];
      await compare(
        `attention [${b}, ${seq}, ${heads}/${kvHeads}, ${d}]`,
        xs,
        ([q, k, v]) => causalAttention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D),
        ([q, k, v]) =>
          causalAttentionComposite(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D),
        500 + i,
      );
      tf.dispose(xs);
    }
  } finally {
    unregisterFusedWasmAttention();
  }
  assertEquals(hasFusedKernel(FUSED_ATTENTION.forward), ABSENT);
  assertEquals(fusedWasmOps(), [...FUSED_REGISTRIES.wasm]);
});

Deno.test("adamwUpdate() fused on wasm matches the composite and updates in place only when it may", async () => {
  const next = rng(6);
  const shape = [int(next, 1, 7), int(next, 1, 13)];
  const make = (): Record<"param" | "grad" | "m" | "v", tf.Tensor> => ({
    param: randomTensor(rng(60), shape),
    grad: randomTensor(rng(61), shape, 3),
    m: randomTensor(rng(62), shape, 0.1),
    v: tf.abs(randomTensor(rng(63), shape, 0.1)),
  });
  const options = { lr: 0.01, step: 3, gradScale: 0.7, weightDecay: 0.1 };
  // Reference: the composite path, on cpu.
  await initBackend("cpu");
  const ref = make();
  const expected = adamwUpdate(ref, options);
  const want = await Promise.all([expected.param, expected.m, expected.v].map(values));
  tf.dispose([...Object.values(ref), expected.param, expected.m, expected.v]);

  await onWasm();
  const offset = (x: tf.Tensor): number =>
    (tf.backend() as unknown as { getMemoryOffset(id: tf.DataId): number }).getMemoryOffset(
      x.dataId,
    );
  for (const consumeInputs of [false, true]) {
    const inputs = make();
    const before = offset(inputs.param);
    const got = adamwUpdate(inputs, { ...options, consumeInputs });
    const outs = [got.param, got.m, got.v];
    for (let i = 0; i < 3; i++) {
      assertClose(await values(outs[i]!), want[i]!, 1e-6, `adamw ${consumeInputs} output ${i}`);
    }
    assertEquals(offset(got.param) === before, consumeInputs, "in place exactly when consumed");
    tf.dispose([...Object.values(inputs), ...outs]);
  }
  // A second tensor on the param's buffer (a reshape) keeps the update out of place.
  const inputs = make();
  const view = tf.reshape(inputs.param, [shape[0]! * shape[1]!]);
  const viewBefore = await values(view);
  const tensors = tf.memory().numTensors;
  const got = adamwUpdate(inputs, { ...options, consumeInputs: true });
  assertEquals(Array.from(await values(view)), Array.from(viewBefore), "shared buffer untouched");
  assertClose(await values(got.param), want[0]!, 1e-6, "adamw shared param");
  assertEquals(tf.memory().numTensors, tensors + 3);
  tf.dispose([...Object.values(inputs), view, got.param, got.m, got.v]);
});

Deno.test("embedding() on wasm's row-copy gather matches cpu, repeated ids and gradient included", async () => {
  const next = rng(7);
  const table = Array.from({ length: 11 * 5 }, () => next() * 2 - 1);
  const ids = Int32Array.from({ length: 9 }, () => int(next, 0, 10));
  const run = async (): Promise<[Float32Array, Float32Array]> => {
    const t = tf.tensor2d(table, [11, 5]);
    const i = tf.tensor1d(ids, "int32");
    const y = embedding(t as tf.Tensor2D, i);
    const c = tf.reshape(tf.range(0, 45), [9, 5]);
    const [g] = tf.grads((x: tf.Tensor) => tf.sum(tf.mul(embedding(x as tf.Tensor2D, i), c)))([t]);
    const out: [Float32Array, Float32Array] = [await values(y), await values(g!)];
    tf.dispose([t, i, y, g!, c]);
    return out;
  };
  await initBackend("cpu");
  const [y0, g0] = await run();
  await onWasm();
  const [y1, g1] = await run();
  assertEquals(Array.from(y1), Array.from(y0));
  assertClose(g1, g0, 1e-6, "embedding gradient");
});

Deno.test("globalNorm() fused on wasm is the float64 norm of every gradient, read in place", async () => {
  await onWasm();
  assertEquals(hasFusedKernel(FUSED_SUM_SQUARES), PRESENT);
  const next = rng(7);
  // Odd sizes, an empty tensor, and one past the size the kernel pool cuts into parts.
  const shapes = [[3], [0], [int(next, 1, 9), int(next, 1, 13)], [5, 7, 3], [300, 301], [1]];
  const grads = shapes.map((s, i) => randomTensor(next, s, [1, 30, 0.01][i % 3]!));
  let want = 0;
  for (const g of grads) for (const x of await values(g)) want += x * x;
  want = Math.sqrt(want);
  const before = tf.memory().numTensors;
  const norm = globalNorm(grads);
  const got = (await values(norm))[0]!;
  assert(Math.abs(got / want - 1) < 1e-6, `fused ${got}, float64 ${want}`);
  norm.dispose();
  assertEquals(tf.memory().numTensors, before, "no tensor left");
  assertEquals(
    (await values(globalNorm([grads[1]!])))[0],
    0,
    "an empty gradient has norm 0",
  );
  tf.dispose(grads);
});

Deno.test("BatchMatMul cut over the kernel pool is the float64 product in all four transpositions", async (t) => {
  const sgemm = await heapSgemmOrSkip(t);
  if (sgemm === undefined) return;
  await onWasm();
  for (let i = 0; i < 300 && fusedWasmThreads() < startFusedWasmPool(); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  if (fusedWasmThreads() < 2) {
    await t.step({ name: "needs two threads for the kernel pool", ignore: true, fn: () => {} });
    return;
  }
  const mm = tf.getKernel("BatchMatMul", "wasm")!;
  let cut = 0;
  const counting: tf.KernelFunc = (args) => {
    cut++;
    return mm.kernelFunc(args);
  };
  registerPooledWasmMatMul(sgemm);
  const pooled = tf.getKernel("BatchMatMul", "wasm")!;
  assert(pooled.kernelFunc !== mm.kernelFunc, "the pooled kernel is in place");
  assert(fusedWasmOps().includes("productSums"), "it adds products into gradient sums");
  // Count what falls through to the kernel underneath: products too small to cut.
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({ ...mm, kernelFunc: counting });
  unregisterPooledWasmMatMul();
  registerPooledWasmMatMul(sgemm);
  try {
    const next = rng(8);
    const [m, n, k] = [301, 67, 129]; // 2.6M multiply-adds: cut; 301 rows: a tail block
    for (const [ta, tb] of [[false, false], [false, true], [true, false], [true, true]]) {
      const a = randomTensor(next, ta ? [k, m] : [m, k]);
      const b = randomTensor(next, tb ? [n, k] : [k, n]);
      const [av, bv] = [await values(a), await values(b)];
      const got = await values(tf.matMul(a, b, ta, tb));
      for (let r = 0; r < m; r++) {
        for (let c = 0; c < n; c++) {
          let want = 0;
          for (let j = 0; j < k; j++) {
            want += av[ta ? j * m + r : r * k + j]! * bv[tb ? c * k + j : j * n + c]!;
          }
          const e = got[r * n + c]! - want;
          assert(Math.abs(e) <= 1e-5 * (1 + Math.abs(want)), `${ta}/${tb} [${r}, ${c}]: ${e}`);
        }
      }
      tf.dispose([a, b]);
    }
    assertEquals(cut, 0, "every product here was cut over the pool");
    const small = tf.matMul(tf.ones([4, 4]), tf.ones([4, 4]));
    assertEquals(cut, 1, "a small product goes to the kernel underneath");
    small.dispose();
  } finally {
    unregisterPooledWasmMatMul();
    tf.unregisterKernel("BatchMatMul", "wasm");
    tf.registerKernel(mm);
  }
});
