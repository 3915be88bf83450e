import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { createRequire } from "node:module";
import * as E from "fp-ts/lib/Either.js";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { registerBlasWasmMatMul, unregisterBlasWasmMatMul } from "./mod.ts";
import {
  compare,
  input,
  on,
  operandShape,
  randomArray,
  registerSomeGradients,
  SIZES,
  TRANSPOSES,
} from "./_test_util.ts";

// Gradients first: the project's set comes with initBackend, which also installs kernels/'
// own wasm BatchMatMul; ours must be registered after it, as the engine would.
const gradients = await registerSomeGradients();
const main = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm");
if (tf.findBackend("wasm") === null) setWasmPaths(new URL("./", `file://${main}`).href);
const wasmReady = await tf.setBackend("wasm");
const reg = wasmReady ? registerBlasWasmMatMul() : E.left("tfjs wasm did not start");
const skip = E.isLeft(reg);
if (E.isLeft(reg)) console.warn(`Skipping blas wasm matmul tests: ${reg.left}`);
const noGradients = gradients === undefined;

const PLAIN = false;
const TRANSPOSED = true;

function kernelIsOurs(): boolean {
  return tf.getKernel("BatchMatMul", "wasm")?.kernelFunc.name === "blasWasmBatchMatMul";
}

Deno.test({
  name: "registerBlasWasmMatMul() matches cpu on odd sizes and all four transposes",
  ignore: skip,
  async fn() {
    assert(kernelIsOurs());
    let seed = 1;
    for (const [m, k, n] of SIZES) {
      for (const [ta, tb] of TRANSPOSES) {
        const a = input(operandShape(m, k, ta), seed++);
        const b = input(operandShape(k, n, tb), seed++);
        await compare(
          `${m}x${k}x${n} ta=${ta} tb=${tb}`,
          [a, b],
          (x, y) => tf.matMul(x!, y!, ta, tb),
          "wasm",
        );
      }
    }
  },
});

Deno.test({
  name: "registerBlasWasmMatMul() matches cpu on batched, broadcast and empty products",
  ignore: skip,
  async fn() {
    const cases: [number[], number[]][] = [
      [[4, 5, 7], [4, 7, 3]],
      [[4, 5, 7], [7, 3]],
      [[5, 7], [4, 7, 3]],
      [[2, 3, 5, 7], [3, 7, 3]],
      [[2, 3, 17, 65], [2, 3, 65, 1]],
      [[6, 1, 32], [6, 32, 40]],
      [[3, 1, 64], [64, 200]],
      [[3, 0], [0, 4]],
      [[0, 5], [5, 4]],
    ];
    let seed = 100;
    for (const [as, bs] of cases) {
      for (const [ta, tb] of TRANSPOSES) {
        const swap = (s: number[], t: boolean): number[] =>
          t ? [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!] : s;
        await compare(
          `${as}·${bs} ta=${ta} tb=${tb}`,
          [input(swap(as, ta), seed++), input(swap(bs, tb), seed++)],
          (x, y) => tf.matMul(x!, y!, ta, tb),
          "wasm",
        );
      }
    }
  },
});

Deno.test({
  name: "registerBlasWasmMatMul() reads the heap after an output that grows wasm memory",
  ignore: skip,
  async fn() {
    // A 64 MiB output: makeOutput has to grow the heap, which replaces its ArrayBuffer.
    const a = input([4096, 1], 1);
    const b = input([1, 4096], 2);
    const [got] = await on("wasm", [a, b], (x, y) => tf.matMul(x!, y!));
    for (const [i, j] of [[0, 0], [4095, 4095], [1234, 3210]] as const) {
      const want = a.values[i]! * b.values[j]!;
      const v = got!.values[i * 4096 + j]!;
      assert(Math.abs(v - want) <= 1e-6 * (1 + Math.abs(want)), `(${i}, ${j}): ${v} vs ${want}`);
    }
  },
});

Deno.test({
  name: "registerBlasWasmMatMul() gradients match cpu for all transposes, batched",
  ignore: skip || noGradients,
  async fn() {
    let seed = 500;
    for (const batch of [[], [3]]) {
      for (const [ta, tb] of TRANSPOSES) {
        const [m, k, n] = [5, 17, 3];
        await compare(
          `grad batch=${batch} ta=${ta} tb=${tb}`,
          [
            input([...batch, ...operandShape(m, k, ta)], seed++),
            input([...batch, ...operandShape(k, n, tb)], seed++),
            input([...batch, m, n], seed++),
          ],
          (x, y, d) =>
            tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, ta, tb))([x!, y!], d!),
          "wasm",
        );
      }
    }
  },
});

Deno.test({
  name: "registerBlasWasmMatMul() leaves no tensors or heap blocks behind",
  ignore: skip,
  async fn() {
    await tf.setBackend("wasm");
    const a = tf.tensor(randomArray(6 * 8, 1), [2, 3, 8]);
    const b = tf.tensor(randomArray(8 * 4, 2), [8, 4]);
    const step = (): void => {
      tf.tidy(() => {
        tf.matMul(a, b).dataSync();
        tf.matMul(a, tf.transpose(b), PLAIN, TRANSPOSED).dataSync();
        if (!noGradients) tf.grads((p: tf.Tensor) => tf.matMul(p, b))([a], tf.ones([2, 3, 4]));
      });
    };
    step();
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    step();
    assertEquals(tf.memory().numTensors, tensors);
    assertEquals(tf.engine().backend.numDataIds(), dataIds);
    tf.dispose([a, b]);
  },
});

Deno.test({
  name: "unregisterBlasWasmMatMul() restores the previous kernel; registering is idempotent",
  ignore: skip,
  async fn() {
    assertEquals(registerBlasWasmMatMul(), reg);
    assert(kernelIsOurs());
    unregisterBlasWasmMatMul();
    assert(!kernelIsOurs());
    const [before] = await on(
      "wasm",
      [input([9, 5], 1), input([5, 4], 2)],
      (x, y) => tf.matMul(x!, y!),
    );
    assertEquals(before!.shape, [9, 4]);
    assert(E.isRight(registerBlasWasmMatMul()));
    assert(kernelIsOurs());
  },
});

Deno.test({
  name: "registerBlasWasmMatMul() beats the wasm kernel it replaces on a transposed product",
  ignore: skip,
  async fn() {
    // Stock tfjs wasm runs Aᵀ·B in a scalar loop (~1 GFLOP/s here), kernels/' XNNPACK route
    // at 10-20; OpenBLAS at 60+ even on a busy 2-core machine, so 2× is a safe margin.
    const a = input([384, 384], 1);
    const b = input([384, 384], 2);
    const time = async (): Promise<number> => {
      await on("wasm", [a, b], (x, y) => tf.matMul(x!, y!, TRANSPOSED, PLAIN));
      const t0 = performance.now();
      await on("wasm", [a, b], (x, y) => tf.matMul(x!, y!, TRANSPOSED, PLAIN));
      return performance.now() - t0;
    };
    const ours = await time();
    unregisterBlasWasmMatMul();
    const theirs = await time();
    assert(E.isRight(registerBlasWasmMatMul()));
    assert(
      ours * 2 < theirs,
      `OpenBLAS took ${ours.toFixed(1)} ms, the wasm kernel ${theirs.toFixed(1)} ms`,
    );
  },
});
