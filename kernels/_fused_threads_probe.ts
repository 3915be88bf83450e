/**
 * Run by ./fused_threads_test.ts in a process of its own, since a process chooses its wasm heap
 * once: starts the "wasm" backend with the fused kernels on `STEP_KERNEL_THREADS` threads
 * (with OpenBLAS's products and attention where it is installed, as `auto` does),
 * trains three steps of a model whose tensors are large enough to be cut into parts, and
 * prints the backend's line, the losses, every parameter and the live tensors as JSON.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { initBackend } from "./backend.ts";
import { createTrainState, disposeState } from "./train_state.ts";
import { initParams } from "./params.ts";
import { trainStep } from "./train_step.ts";
import {
  fusedWasmThreads,
  registerFusedWasmAttention,
  registerPooledWasmMatMul,
} from "./fused/mod.ts";
import { openHeapSgemm, registerBlasWasmMatMul } from "./blas/mod.ts";

const got = await initBackend("wasm");
if (E.isLeft(got)) throw new Error(got.left.message);
// As the "auto" backend: products and attention on OpenBLAS where it is installed.
const blas = E.isRight(registerBlasWasmMatMul()) ? openHeapSgemm() : undefined;
if (blas !== undefined && E.isRight(blas)) {
  registerFusedWasmAttention(blas.right.sgemm);
  registerPooledWasmMatMul(blas.right.sgemm);
}
const heap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8;
for (let i = 0; i < 300 && fusedWasmThreads() < got.right.fusedThreads!; i++) {
  await new Promise((r) => setTimeout(r, 20));
}
const shape = {
  hidden: 128,
  intermediate: 352,
  heads: 2,
  kvHeads: 2,
  layers: 2,
  vocab: 512,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 64,
};
const before = tf.memory().numTensors;
let state = createTrainState(shape, initParams(shape, 2, 3));
const [batch, seq] = [8, 64];
const tokens = new Int32Array(batch * seq).map((_, i) => (i * 7919 + 13) % shape.vocab);
const targets = new Int32Array(tokens.length).map((_, i) => tokens[(i + 1) % tokens.length]!);
const losses: number[] = [];
for (let step = 0; step < 3; step++) {
  const r = await trainStep(state, [{ tokens, targets, batch, seq }], { lr: 1e-3 });
  state = r.state;
  losses.push(r.loss);
}
const params: Record<string, number[]> = {};
for (const [name, t] of state.params) params[name] = Array.from(t.dataSync());
disposeState(state);
console.log(JSON.stringify({
  description: got.right.description,
  threads: fusedWasmThreads(),
  shared: heap.buffer instanceof SharedArrayBuffer,
  openBlas: blas !== undefined && E.isRight(blas),
  losses,
  params,
  leaked: tf.memory().numTensors - before,
}));
