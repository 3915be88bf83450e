/**
 * The backward pass sums a product's contribution to a gradient already begun inside the product
 * (the pooled products' sgemm with beta = 1) instead of by an Add: the gradients must be tfjs's
 * own (`tf.grads`, which sums with Add) and the Adds must be gone, counted from the kernels run.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import { startBackend } from "../effects/tfjs_engine.ts";
import { gradientsReleasing } from "./_backprop.ts";

const PLAIN = false;
const TRANSPOSED = true;

function random(seed: number, shape: number[]): tf.Tensor2D {
  let s = seed >>> 0;
  const n = shape[0]! * shape[1]!;
  const v = Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
  return tf.tensor2d(v, shape as [number, number]);
}

Deno.test("gradients summed inside products equal tfjs's, with the Adds gone", async (t) => {
  const started = await startBackend("auto")();
  if (E.isLeft(started) || !started.right.startsWith("wasm + BLAS")) {
    await t.step({ name: "needs OpenBLAS", ignore: true, fn: () => {} });
    return;
  }
  const [n, d, f] = [96, 40, 56];
  const x = random(1, [n, d]);
  const xt = random(2, [d, n]);
  const w = [random(3, [d, f]), random(4, [f, d]), random(5, [d, f]), random(6, [f, d])];
  const before = tf.memory().numTensors;
  // x and xᵀ each feed products in all four transpositions; x also an Add, whose gradient
  // function hands the same dy to both inputs (that sum must not be written in place).
  const loss = (x: tf.Tensor, xt: tf.Tensor, w0: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor) =>
    tf.tidy(() => {
      const parts = [
        tf.matMul(x, w0),
        tf.matMul(x, w1, PLAIN, TRANSPOSED),
        tf.matMul(xt, w2, TRANSPOSED, PLAIN),
        tf.matMul(xt, w[3]!, TRANSPOSED, TRANSPOSED),
        tf.matMul(tf.matMul(x, xt), x),
      ];
      const y = parts.slice(0, 4).reduce((a, b) => tf.add(a, b));
      const z = tf.add(tf.matMul(parts[4]!, w0), tf.matMul(tf.add(x, x), w2));
      return tf.sum(tf.mul(tf.add(y, z), y));
    }) as tf.Scalar;
  const xs = [x, xt, w[0]!, w[1]!, w[2]!];
  const reference = tf.grads((a, b, c, dd, e) => loss(a!, b!, c!, dd!, e!))(xs);
  // Adds run, counted at the kernel.
  const add = tf.getKernel("Add", "wasm")!;
  let adds = 0;
  tf.unregisterKernel("Add", "wasm");
  tf.registerKernel({ ...add, kernelFunc: (args) => (adds++, add.kernelFunc(args)) });
  let ours: (tf.Tensor | null)[];
  let oursAdds: number;
  let theirAdds: number;
  try {
    const r = gradientsReleasing(() => loss(x, xt, w[0]!, w[1]!, w[2]!), xs);
    r.value.dispose();
    ours = r.grads;
    oursAdds = adds;
    adds = 0;
    tf.dispose(tf.grads((a, b, c, dd, e) => loss(a!, b!, c!, dd!, e!))(xs));
    theirAdds = adds;
  } finally {
    tf.unregisterKernel("Add", "wasm");
    tf.registerKernel(add);
  }
  for (const [i, g] of ours.entries()) {
    const [got, want] = [await g!.data(), await reference[i]!.data()];
    let scale = 0;
    let worst = 0;
    for (let j = 0; j < want.length; j++) {
      scale = Math.max(scale, Math.abs(want[j]!));
      worst = Math.max(worst, Math.abs(got[j]! - want[j]!));
    }
    assert(worst <= 1e-5 * scale, `gradient ${i}: max error ${worst} of ${scale}`);
  }
  // 6 Adds in the forward pass either way. Backward, tf.grads sums every gradient with an Add (10);
  // here 2 are left, whose summands are not both products: y's (read by an Add and a Mul) and
  // x's through Add(x, x), which hands one gradient to both its inputs.
  assertEquals([oursAdds, theirAdds], [8, 16], "Adds run here and in tf.grads");
  tf.dispose([...ours as tf.Tensor[], ...reference]);
  assertEquals(tf.memory().numTensors, before, "no tensor left");
  tf.dispose([x, xt, ...w]);
});
