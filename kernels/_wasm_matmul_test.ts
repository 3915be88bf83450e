import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assertEquals } from "../tests/assert.ts";
import { initBackend } from "./backend.ts";
import { uniformArr } from "./_reference.ts";
import { assertClose } from "./_test_util.ts";

/** Batched matmul in float64 with tfjs's transpose and broadcast semantics. */
function reference(
  a: { shape: number[]; data: Float64Array },
  b: { shape: number[]; data: Float64Array },
  tA: boolean,
  tB: boolean,
): Float64Array {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, k] = tA ? [a.shape[ra - 1]!, a.shape[ra - 2]!] : [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const n = tB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const batchA = a.data.length / (m * k);
  const batchB = b.data.length / (k * n);
  const batch = Math.max(batchA, batchB);
  const out = new Float64Array(batch * m * n);
  for (let s = 0; s < batch; s++) {
    const ao = (batchA === 1 ? 0 : s) * m * k;
    const bo = (batchB === 1 ? 0 : s) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let l = 0; l < k; l++) {
          const av = a.data[ao + (tA ? l * m + i : i * k + l)]!;
          const bv = b.data[bo + (tB ? j * k + l : l * n + j)]!;
          sum += av * bv;
        }
        out[s * m * n + i * n + j] = sum;
      }
    }
  }
  return out;
}

Deno.test({
  name: "wasm BatchMatMul handles transposes, batches and a shared operand",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const got = await initBackend("wasm");
    if (E.isLeft(got)) throw new Error(got.left.message);
    const cases: [number[], number[], boolean, boolean][] = [
      [[5, 3], [3, 4], false, false],
      [[3, 5], [3, 4], true, false],
      [[5, 3], [4, 3], false, true],
      [[3, 5], [4, 3], true, true],
      [[2, 5, 3], [3, 4], false, false],
      [[2, 3, 5], [2, 4, 3], true, true],
      [[5, 3], [2, 3, 4], false, false],
      [[2, 2, 5, 3], [2, 2, 4, 3], false, true],
      [[3, 33, 17], [3, 33, 9], true, false],
    ];
    let seed = 1;
    for (const [sa, sb, tA, tB] of cases) {
      const a = uniformArr(sa, seed++);
      const b = uniformArr(sb, seed++);
      const ta = tf.tensor(Float32Array.from(a.data), sa);
      const tb = tf.tensor(Float32Array.from(b.data), sb);
      tf.matMul(ta, tb, tA, tB).dispose(); // warm-up: XNNPACK operators are created lazily
      const before = tf.memory().numTensors;
      const c = tf.matMul(ta, tb, tA, tB);
      const expected = reference({ shape: sa, data: a.data }, { shape: sb, data: b.data }, tA, tB);
      assertClose((await c.data()) as Float32Array, expected, 1e-6, `[${sa}]·[${sb}] ${tA} ${tB}`);
      c.dispose();
      assertEquals(tf.memory().numTensors, before);
      tf.dispose([ta, tb]);
    }
  },
});

Deno.test({
  name: "wasm Identity shares memory instead of copying, and the clone outlives its source",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const got = await initBackend("wasm");
    if (E.isLeft(got)) throw new Error(got.left.message);
    const x = tf.tensor1d([1, 2, 3]);
    const buffers = tf.memory().numDataBuffers;
    const y = tf.clone(x);
    assertEquals(tf.memory().numDataBuffers, buffers);
    x.dispose();
    assertEquals([...(await y.data())], [1, 2, 3]);
    y.dispose();
  },
});
