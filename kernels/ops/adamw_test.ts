import * as tf from "@tensorflow/tfjs-core";
import { assert, assertAlmostEquals, assertEquals } from "../../tests/assert.ts";
import { adamwUpdate, clipFactor, decays, globalNorm } from "./adamw.ts";
import { assertClose, backendTest } from "../_test_util.ts";

backendTest("adamwUpdate() reproduces two AdamW steps computed by hand", async () => {
  const lr = 0.01;
  const wd = 0.1;
  const p0 = [1, -2, 0.5, 3];
  const g1 = [0.2, -0.1, 0, 4];
  const g2 = [-0.3, 0.1, 0.05, 2];
  // Step 1: m = 0.1·g1, v = 0.05·g1²; bias-corrected m̂ = g1, v̂ = g1²,
  // so the step is lr·g1/(|g1| + 1e-8) after decaying p by (1 − lr·wd).
  const p1 = p0.map((p, i) => p * (1 - lr * wd) - lr * g1[i]! / (Math.abs(g1[i]!) + 1e-8));
  const m1 = g1.map((g) => 0.1 * g);
  const v1 = g1.map((g) => 0.05 * g * g);
  // Step 2: m = 0.9·m1 + 0.1·g2, v = 0.95·v1 + 0.05·g2²; corrections 1 − 0.9² and 1 − 0.95².
  const m2 = m1.map((m, i) => 0.9 * m + 0.1 * g2[i]!);
  const v2 = v1.map((v, i) => 0.95 * v + 0.05 * g2[i]! ** 2);
  const p2 = p1.map((p, i) =>
    p * (1 - lr * wd) - lr * (m2[i]! / 0.19) / (Math.sqrt(v2[i]! / 0.0975) + 1e-8)
  );

  const shape = [2, 2];
  const init = {
    param: tf.tensor(p0, shape),
    m: tf.zeros(shape),
    v: tf.zeros(shape),
  };
  const grad1 = tf.tensor(g1, shape);
  const s1 = adamwUpdate({ ...init, grad: grad1 }, { lr, step: 1, gradScale: 1 });
  const grad2 = tf.tensor(g2, shape);
  const s2 = adamwUpdate({ ...s1, grad: grad2 }, { lr, step: 2, gradScale: 1 });
  assertClose((await s1.param.data()) as Float32Array, p1, 1e-6, "p1");
  assertClose((await s2.m.data()) as Float32Array, m2, 1e-6, "m2");
  assertClose((await s2.v.data()) as Float32Array, v2, 1e-6, "v2");
  assertClose((await s2.param.data()) as Float32Array, p2, 1e-6, "p2");
  tf.dispose([
    init.param,
    init.m,
    init.v,
    grad1,
    grad2,
    s1.param,
    s1.m,
    s1.v,
    s2.param,
    s2.m,
    s2.v,
  ]);
});

backendTest(
  "adamwUpdate() never decays 1-D parameters and scales the gradient by gradScale",
  async () => {
    const param = tf.tensor1d([1, 1]);
    const grad = tf.tensor1d([2, -2]);
    const zeros = tf.zeros([2]);
    const r = adamwUpdate({ param, grad, m: zeros, v: zeros }, {
      lr: 0.5,
      weightDecay: 10,
      step: 1,
      gradScale: 0.25,
    });
    // No decay despite wd = 10; Adam's first step moves by lr·sign(g).
    assertClose((await r.param.data()) as Float32Array, [0.5, 1.5], 1e-6, "param");
    assertClose((await r.m.data()) as Float32Array, [0.05, -0.05], 1e-6, "m uses g·gradScale");
    assert(!decays(param));
    const matrix = tf.zeros([2, 1]);
    assert(decays(matrix));
    tf.dispose([param, grad, zeros, matrix, r.param, r.m, r.v]);
  },
);

backendTest("globalNorm() sums over many tensors", async () => {
  // More inputs than a WebGPU shader may bind storage buffers (8 on Mesa).
  const gs = Array.from({ length: 21 }, (_, i) => tf.fill([3, 4], i + 1));
  const n = globalNorm(gs);
  const expected = Math.sqrt(gs.reduce((s, _, i) => s + 12 * (i + 1) ** 2, 0));
  assertAlmostEquals((await n.data())[0]!, expected, 1e-5 * expected);
  tf.dispose([...gs, n]);
});

backendTest("globalNorm() and clipFactor() follow clip_grad_norm_", async () => {
  const gs = [tf.tensor1d([3]), tf.tensor2d([[4, 0]])];
  const n = globalNorm(gs);
  assertAlmostEquals((await n.data())[0]!, 5, 1e-6);
  assertAlmostEquals(clipFactor(5, 1), 1 / (5 + 1e-6), 1e-12);
  assertEquals(clipFactor(0.5, 1), 1);
  assertEquals(clipFactor(100, Infinity), 1);
  tf.dispose([...gs, n]);
});
