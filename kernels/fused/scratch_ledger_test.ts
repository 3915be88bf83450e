/**
 * The buffer ledger must see what a fused kernel really allocates, its scratch included: the
 * expectation is read from the wasm backend's own allocations (every `makeOutput` of the call),
 * not from the scratch formula.
 */
import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "../../tests/assert.ts";
import { initBackend } from "../backend.ts";
import { heapSgemmOrSkip } from "../_test_util.ts";
import { causalAttention } from "../ops/attention.ts";
import { trackBufferPeak } from "../peak_memory.ts";
import { registerFusedWasmAttention, unregisterFusedWasmAttention } from "./mod.ts";

interface Allocating {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

/** Runs `work` and returns the bytes of every buffer the wasm backend allocated meanwhile. */
function allocatedBy(work: () => void): number[] {
  const backend = tf.backend() as unknown as Allocating;
  const original = backend.makeOutput;
  const sizes: number[] = [];
  backend.makeOutput = function (shape, dtype) {
    sizes.push(4 * shape.reduce((a, b) => a * b, 1));
    return original.call(this, shape, dtype);
  };
  try {
    work();
  } finally {
    backend.makeOutput = original;
  }
  return sizes;
}

Deno.test("the measured peak of fused attention's forward and backward includes their scratch", async (t) => {
  const sgemm = await heapSgemmOrSkip(t);
  if (sgemm === undefined) return;
  await initBackend("wasm");
  registerFusedWasmAttention(sgemm);
  try {
    // A sequence long enough that a part's scratch outweighs the outputs' lse.
    const [b, seq, heads, d] = [2, 160, 2, 8];
    const q = tf.randomNormal([b, seq, heads, d]) as tf.Tensor4D;
    const k = tf.randomNormal([b, seq, heads, d]) as tf.Tensor4D;
    const v = tf.randomNormal([b, seq, heads, d]) as tf.Tensor4D;
    const dy = tf.randomNormal([b, seq, heads, d]) as tf.Tensor4D;
    const before = tf.memory().numTensors;

    // Forward: the outputs, then the scratch (freed in the call); nothing else is made.
    const tracker = trackBufferPeak();
    const start = tracker.current();
    let o: tf.Tensor | undefined;
    const forward = allocatedBy(() => void (o = causalAttention(q, k, v)));
    tracker.stop();
    const outputs = forward.slice(0, -1).reduce((a, x) => a + x, 0);
    assert(forward.length >= 3, `outputs and scratch: ${forward}`);
    assert(forward.at(-1)! > outputs, `the scratch is the largest buffer here: ${forward}`);
    assertEquals(tracker.peak() - start, forward.reduce((a, x) => a + x, 0), `forward ${forward}`);
    o!.dispose();

    // Backward through the kernel alone: dq, dk, dv, then the scratch.
    const grads = tf.grads((a: tf.Tensor, bb: tf.Tensor, c: tf.Tensor) =>
      causalAttention(a as tf.Tensor4D, bb as tf.Tensor4D, c as tf.Tensor4D)
    );
    let got: tf.Tensor[] = [];
    const tracker2 = trackBufferPeak();
    const start2 = tracker2.current();
    const all = allocatedBy(() => void (got = grads([q, k, v], dy)));
    tracker2.stop();
    // The tape reruns the forward (o, lse, its scratch, freed in its call), then the gradient
    // kernel makes dq, dk, dv and its scratch: at that point everything but the forward's
    // scratch is alive.
    assertEquals(all.length, 7, `allocations ${all}`);
    assertEquals(tracker2.peak() - start2, all.reduce((a, x) => a + x, 0) - all[2]!, `${all}`);
    tf.dispose([...got, q, k, v, dy]);
    assertEquals(tf.memory().numTensors, before - 4);
  } finally {
    unregisterFusedWasmAttention();
  }
});
