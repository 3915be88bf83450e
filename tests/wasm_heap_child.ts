/**
 * Run by `tests/wasm_heap_test.ts` in its own process (it fills a 4 GiB heap that never shrinks):
 * on `auto`, puts the fused cross-entropy's and attention's tensors above 2 GiB of the wasm heap
 * and checks them against float64 references, then allocates until the heap is full. Prints one
 * JSON line.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { startBackend } from "../effects/mod.ts";
import { causalAttention, crossEntropySum, WasmHeapFull } from "../kernels/mod.ts";
import { attentionRef, crossEntropyRef, uniformArr } from "../kernels/_reference.ts";

const started = await startBackend("auto")();
if (E.isLeft(started)) throw new Error(started.left.message);
const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8;
const offset = (t: tf.Tensor) =>
  (tf.backend() as unknown as { dataIdMap: { get(id: unknown): { memoryOffset: number } } })
    .dataIdMap.get(t.dataId).memoryOffset;

// 2.25 GiB filled in place by the wasm Fill kernel (no JavaScript copy): what follows lies past
// 2³¹, where a signed shift of a byte offset turns negative.
const filler = tf.fill([9 * 2 ** 26], 0);
const logits = uniformArr([6, 11], 1, 3);
const targets = [0, 3, 10, 5, 5, 1];
const x = tf.tensor2d(Float32Array.from(logits.data), [6, 11]);
const t = tf.tensor1d(targets, "int32");
const [loss, grad] = (() => {
  const g = tf.valueAndGrad((l: tf.Tensor) => crossEntropySum(l as tf.Tensor2D, t));
  const r = g(x);
  return [r.value.dataSync()[0]!, r.grad.dataSync()];
})();
// d loss / d logits = softmax − onehot, in float64.
let gradGap = 0;
for (let i = 0; i < 6; i++) {
  const row = logits.data.subarray(i * 11, (i + 1) * 11);
  const mx = Math.max(...row);
  const z = row.reduce((s, v) => s + Math.exp(v - mx), 0);
  for (let j = 0; j < 11; j++) {
    const want = Math.exp(row[j]! - mx) / z - (j === targets[i] ? 1 : 0);
    gradGap = Math.max(gradGap, Math.abs(grad[i * 11 + j]! - want));
  }
}
const q = uniformArr([1, 5, 2, 4], 2);
const k = uniformArr([1, 5, 2, 4], 3);
const v = uniformArr([1, 5, 2, 4], 4);
const t4 = (a: typeof q) => tf.tensor4d(Float32Array.from(a.data), [1, 5, 2, 4]);
const y = causalAttention(t4(q), t4(k), t4(v));
const yRef = attentionRef(q, k, v);
const yData = y.dataSync();
const attentionGap = Math.max(...yRef.data.map((r, i) => Math.abs(r - yData[i]!)));
const lowestOffset = Math.min(offset(x), offset(t), offset(y));

let held = 0;
let full: { requested: number; heapBytes: number; message: string } | undefined;
const chunks: tf.Tensor[] = [];
try {
  for (;;) {
    chunks.push(tf.fill([2 ** 24], 1));
    held += 2 ** 26;
  }
} catch (e) {
  full = e instanceof WasmHeapFull
    ? { requested: e.requested, heapBytes: e.heapBytes, message: e.message }
    : { requested: -1, heapBytes: heap().length, message: String(e) };
}
tf.dispose([filler, x, t, y, ...chunks]);
console.log(JSON.stringify({
  lowestOffset,
  loss,
  lossRef: crossEntropyRef(logits, targets),
  gradGap,
  attentionGap,
  heldAfterFiller: held,
  full,
}));
