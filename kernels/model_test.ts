import * as tf from "@tensorflow/tfjs-core";
import { assertEquals } from "../tests/assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { type Batch, forwardLogits, lossOf, lossSum } from "./model.ts";
import { disposeParams, importParams } from "./params.ts";
import {
  arr,
  crossEntropyRef,
  finiteDiff,
  forwardRef,
  type RefParams,
  uniformArr,
} from "./_reference.ts";
import { asFloat32, assertClose, backendTest } from "./_test_util.ts";
import { loraNames, paramShapes, projectionWeight } from "../base/param_names.ts";

const gqa: LlamaShape = {
  hidden: 8,
  intermediate: 12,
  heads: 2,
  kvHeads: 1,
  layers: 3,
  vocab: 7,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10,
  maxSeqLen: 8,
};
const tied: LlamaShape = { ...gqa, heads: 4, kvHeads: 4, tiedEmbeddings: true };

const batch: Batch = {
  tokens: new Int32Array([1, 5, 2, 6, 0, 3]),
  targets: new Int32Array([5, 2, -1, 0, 3, 4]),
  batch: 2,
  seq: 3,
};

/** Random weights large enough that every nonlinearity matters, plus LoRA on q and down. */
function refParams(shape: LlamaShape, depth: number, seed: number): RefParams {
  const out: RefParams = new Map();
  let s = seed;
  for (const [name, dims] of paramShapes(shape, depth)) {
    const u = uniformArr(dims, s++, dims.length === 1 ? 0.3 : 0.6);
    if (dims.length === 1) u.data.forEach((v, i) => (u.data[i] = 1 + v));
    out.set(name, asFloat32(u));
  }
  for (const [layer, p] of [[0, "q"], [1, "down"]] as const) {
    if (layer >= depth) continue;
    const name = projectionWeight(layer, p);
    const [din, dout] = out.get(name)!.shape as [number, number];
    const ln = loraNames(name);
    out.set(ln.a, asFloat32(uniformArr([din, 2], s++, 0.5)));
    out.set(ln.b, asFloat32(uniformArr([2, dout], s++, 0.5)));
  }
  return out;
}

function toParams(ref: RefParams): Map<string, tf.Tensor> {
  return importParams(
    [...ref].map(([name, a]) => ({ name, shape: a.shape, data: Float32Array.from(a.data) })),
  ) as Map<string, tf.Tensor>;
}

const loraScale = 0.5;

function refLoss(shape: LlamaShape, ref: RefParams): number {
  const logits = forwardRef(shape, ref, { ...batch, loraScale });
  return crossEntropyRef(logits, batch.targets);
}

for (
  const [label, shape] of [["grouped-query, untied", gqa], ["multi-head, tied", tied]] as const
) {
  backendTest(`forwardLogits() matches the float64 reference (${label}, with LoRA)`, async () => {
    const ref = refParams(shape, 2, 100);
    const params = toParams(ref);
    const logits = forwardLogits({ shape, params, loraScale }, batch);
    assertEquals(logits.shape, [6, 7]);
    const expected = forwardRef(shape, ref, { ...batch, loraScale });
    assertClose((await logits.data()) as Float32Array, expected.data, 1e-5, "logits");
    const mean = lossOf({ shape, params, loraScale }, batch);
    assertClose((await mean.data()) as Float32Array, [refLoss(shape, ref) / 5], 1e-5, "mean loss");
    tf.dispose([logits, mean]);
    disposeParams(params);
  });

  backendTest(
    `lossSum() gradients of every parameter match finite differences (${label})`,
    async () => {
      const ref = refParams(shape, 2, 200);
      const params = toParams(ref);
      const names = [...params.keys()];
      const model = { shape, params, loraScale };
      const run = (): tf.Tensor[] =>
        tf.grads(() => lossSum(model, batch))(names.map((n) => params.get(n)!));
      tf.dispose(run()); // warm-up
      const before = tf.memory().numTensors;
      const grads = run();
      for (const [i, name] of names.entries()) {
        const fd = finiteDiff(() => refLoss(shape, ref), ref.get(name)!.data);
        assertClose((await grads[i]!.data()) as Float32Array, fd, 2e-3, name);
      }
      tf.dispose(grads);
      assertEquals(tf.memory().numTensors, before);
      disposeParams(params);
    },
  );
}

backendTest("lossSum() ignores negative targets and counts the rest", async () => {
  const ref = refParams(gqa, 1, 300);
  const params = toParams(ref);
  const all = lossSum({ shape: gqa, params, loraScale }, batch);
  const onlyFirst = lossSum({ shape: gqa, params, loraScale }, {
    ...batch,
    targets: new Int32Array([5, -1, -1, -1, -1, -1]),
  });
  const logits = forwardRef(gqa, ref, { ...batch, loraScale });
  assertClose(
    (await all.data()) as Float32Array,
    [crossEntropyRef(logits, batch.targets)],
    1e-5,
    "all",
  );
  const first = arr([1, 7], logits.data.subarray(0, 7));
  assertClose(
    (await onlyFirst.data()) as Float32Array,
    [crossEntropyRef(first, [5])],
    1e-5,
    "first",
  );
  tf.dispose([all, onlyFirst]);
  disposeParams(params);
});
