import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import * as E from "fp-ts/lib/Either.js";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { registerBlasBackend } from "./mod.ts";
import {
  assertClose,
  compare,
  input,
  on,
  operandShape,
  randomArray,
  registerSomeGradients,
  SIZES,
  TRANSPOSES,
} from "./_test_util.ts";

// Registration happens here, outside any test, so the FFI library is not counted as a
// resource opened by the first test.
const reg = registerBlasBackend();
const skip = E.isLeft(reg);
if (E.isLeft(reg)) console.warn(`Skipping blas kernel tests: ${reg.left}`);

const gradients = skip ? undefined : await registerSomeGradients();
const noGradients = gradients === undefined;
if (!skip && noGradients) console.warn("Skipping blas gradient tests: no gradients registered");
if (!skip && !noGradients) console.log(`blas gradient tests use the gradients of ${gradients}`);

Deno.test({
  name: "blas BatchMatMul matches cpu on odd sizes and all four transposes",
  ignore: skip,
  async fn() {
    let seed = 1;
    for (const [m, k, n] of SIZES) {
      for (const [ta, tb] of TRANSPOSES) {
        const a = input(operandShape(m, k, ta), seed++);
        const b = input(operandShape(k, n, tb), seed++);
        await compare(
          `${m}x${k}x${n} ta=${ta} tb=${tb}`,
          [a, b],
          (x, y) => tf.matMul(x!, y!, ta, tb),
        );
      }
    }
  },
});

Deno.test({
  name: "blas BatchMatMul matches cpu on batched and broadcast batch dims",
  ignore: skip,
  async fn() {
    const cases: [number[], number[]][] = [
      [[4, 5, 7], [4, 7, 3]], // same batch
      [[4, 5, 7], [7, 3]], // shared B: one collapsed sgemm
      [[5, 7], [4, 7, 3]], // shared A
      [[2, 3, 5, 7], [3, 7, 3]], // leading broadcast of B
      [[1, 5, 7], [6, 7, 3]], // batch of one broadcast
      [[2, 3, 17, 65], [2, 3, 65, 1]],
    ];
    let seed = 100;
    for (const [as, bs] of cases) {
      for (const [ta, tb] of TRANSPOSES) {
        const swap = (s: number[], t: boolean): number[] =>
          t ? [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!] : s;
        const a = input(swap(as, ta), seed++);
        const b = input(swap(bs, tb), seed++);
        await compare(`${as}·${bs} ta=${ta} tb=${tb}`, [a, b], (x, y) => tf.matMul(x!, y!, ta, tb));
      }
    }
  },
});

Deno.test({
  name: "blas BatchMatMul broadcasts batch dims [2,1] with [1,3] numpy-style",
  ignore: skip,
  async fn() {
    // tfjs's CPU kernel indexes batches modulo their count and gets this case wrong, so the
    // reference is each (i, j) pair multiplied on its own.
    const a = input([2, 1, 3, 4], 7);
    const b = input([1, 3, 4, 5], 8);
    const [got] = await on("blas", [a, b], (x, y) => tf.matMul(x!, y!));
    assertEquals(got!.shape, [2, 3, 3, 5]);
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        const ai = { shape: [3, 4], values: a.values.slice(i * 12, i * 12 + 12) };
        const bj = { shape: [4, 5], values: b.values.slice(j * 20, j * 20 + 20) };
        const [want] = await on("cpu", [ai, bj], (x, y) => tf.matMul(x!, y!));
        const slice = got!.values.slice((i * 3 + j) * 15, (i * 3 + j + 1) * 15);
        assertClose([{ shape: [3, 5], values: slice }], [want!], `pair ${i},${j}`);
      }
    }
  },
});

Deno.test({
  name: "blas BatchMatMul handles empty operands and int32 inputs",
  ignore: skip,
  async fn() {
    await compare("k = 0", [input([3, 0], 1), input([0, 4], 2)], (x, y) => tf.matMul(x!, y!));
    await compare("m = 0", [input([0, 5], 1), input([5, 4], 2)], (x, y) => tf.matMul(x!, y!));
    await compare(
      "int32",
      [input([3, 5], 3), input([5, 2], 4)],
      (x, y) =>
        tf.cast(
          tf.matMul(tf.cast(tf.mul(x!, 10), "int32"), tf.cast(tf.mul(y!, 10), "int32")),
          "float32",
        ),
    );
  },
});

Deno.test({
  name: "blas _FusedMatMul matches cpu with biases and activations",
  ignore: skip,
  async fn() {
    const [m, k, n] = [17, 33, 5];
    const biases: number[][] = [[n], [1, n], [], [m, n], [m, 1]];
    const activations: tf.fused.Activation[] = [
      "linear",
      "relu",
      "relu6",
      "leakyrelu",
      "sigmoid",
      "elu",
      "prelu",
    ];
    let seed = 300;
    for (const [ta, tb] of TRANSPOSES) {
      for (const biasShape of [undefined, ...biases]) {
        for (const activation of activations) {
          const ins = [
            input(operandShape(m, k, ta), seed++),
            input(operandShape(k, n, tb), seed++),
            input([n], seed++),
            ...(biasShape === undefined ? [] : [input(biasShape, seed++)]),
          ];
          await compare(
            `ta=${ta} tb=${tb} bias=${biasShape} ${activation}`,
            ins,
            (a, b, w, bias) =>
              tf.fused.matMul({
                a: a!,
                b: b!,
                transposeA: ta,
                transposeB: tb,
                ...(bias === undefined ? {} : { bias }),
                activation,
                ...(activation === "prelu" ? { preluActivationWeights: w! } : {}),
                leakyreluAlpha: 0.3,
              }),
          );
        }
      }
    }
    await compare(
      "batched fused with row bias",
      [input([3, m, k], 1), input([k, n], 2), input([n], 3)],
      (a, b, bias) => tf.fused.matMul({ a: a!, b: b!, bias: bias!, activation: "relu" }),
    );
  },
});

Deno.test({
  name: "blas matMul gradients match cpu for all transposes, batched",
  ignore: skip || noGradients,
  async fn() {
    let seed = 500;
    for (const batch of [[], [3]]) {
      for (const [ta, tb] of TRANSPOSES) {
        const [m, k, n] = [5, 17, 3];
        const a = input([...batch, ...operandShape(m, k, ta)], seed++);
        const b = input([...batch, ...operandShape(k, n, tb)], seed++);
        const dy = input([...batch, m, n], seed++);
        await compare(
          `grad batch=${batch} ta=${ta} tb=${tb}`,
          [a, b, dy],
          (x, y, d) =>
            tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, ta, tb))([x!, y!], d),
        );
      }
    }
  },
});

Deno.test({
  name: "blas _FusedMatMul gradients match cpu with bias (and relu with tfjs gradients)",
  ignore: skip || noGradients,
  async fn() {
    let seed = 700;
    for (const [ta, tb] of TRANSPOSES) {
      // Under tf.grads tfjs fuses only "linear"; relu then runs unfused and needs a Relu
      // gradient, which the project's own gradient set does not have.
      const activations = gradients === "@tensorflow/tfjs" ? ["linear", "relu"] as const : [
        "linear",
      ] as const;
      for (const activation of activations) {
        const [m, k, n] = [9, 17, 6];
        const ins = [
          input(operandShape(m, k, ta), seed++),
          input(operandShape(k, n, tb), seed++),
          input([n], seed++),
          input([m, n], seed++),
        ];
        await compare(
          `fused grad ta=${ta} tb=${tb} ${activation}`,
          ins,
          (a, b, bias, dy) =>
            tf.grads((p: tf.Tensor, q: tf.Tensor, c: tf.Tensor) =>
              tf.fused.matMul({ a: p, b: q, bias: c, activation, transposeA: ta, transposeB: tb })
            )([a!, b!, bias!], dy!),
        );
      }
    }
  },
});

Deno.test({
  name: "blas kernels leave no tensors behind",
  ignore: skip,
  async fn() {
    await tf.setBackend("blas");
    const a = tf.tensor(randomArray(6 * 8, 1), [6, 8]);
    const b = tf.tensor(randomArray(8 * 4, 2), [8, 4]);
    const bias = tf.tensor(randomArray(6 * 4, 3), [6, 4]);
    const step = (): void => {
      tf.tidy(() => {
        tf.matMul(a, b).dataSync();
        tf.fused.matMul({ a, b, bias, activation: "relu" }).dataSync();
        tf.fused.matMul({ a, b, bias: tf.slice(bias, [0, 0], [1, 4]), activation: "elu" })
          .dataSync();
        if (!noGradients) {
          tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.fused.matMul({ a: p, b: q, bias }))(
            [a, b],
            tf.onesLike(bias),
          );
        }
      });
    };
    step();
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    step();
    assertEquals(tf.memory().numTensors, tensors);
    assertEquals(tf.engine().backend.numDataIds(), dataIds);
    tf.dispose([a, b, bias]);
  },
});

Deno.test({
  name: "blas BatchMatMul runs OpenBLAS rather than the cpu loop",
  ignore: skip,
  async fn() {
    // 512³: the CPU backend's JS loop runs at ~1-2 GFLOP/s, OpenBLAS at 20+ even on a busy
    // 2-core machine, so 5× is a safe margin.
    const a = input([512, 512], 1);
    const b = input([512, 512], 2);
    const time = async (backend: string): Promise<number> => {
      await on(backend, [a, b], (x, y) => tf.matMul(x!, y!));
      const t0 = performance.now();
      await on(backend, [a, b], (x, y) => tf.matMul(x!, y!));
      return performance.now() - t0;
    };
    const cpu = await time("cpu");
    const blas = await time("blas");
    assert(blas * 5 < cpu, `blas took ${blas.toFixed(1)} ms, cpu ${cpu.toFixed(1)} ms`);
  },
});
