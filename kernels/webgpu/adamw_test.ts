import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "../../tests/assert.ts";
import { adamwUpdate } from "../ops/adamw.ts";
import { assertAllPassed, webGpuTest } from "./_test_util.ts";
import { compareFusedToComposite, type KernelCase, kernelCases } from "./equivalence.ts";

function adamwCase(shape: number[], step: number, gradScale: number): KernelCase {
  const size = shape.reduce((a, b) => a * b, 1);
  const wave = (f: number, a: number): Float32Array =>
    Float32Array.from({ length: size }, (_, i) => Math.sin(i * f + 0.5) * a);
  return {
    label: `adamw [${shape}] step ${step} gradScale ${gradScale}`,
    kind: "adamw",
    shapes: [shape, shape, shape, shape],
    values: [wave(0.37, 1), wave(0.71, 3), wave(0.13, 0.1), wave(0.29, 0.1).map(Math.abs)],
    differentiate: [],
    eps: 0,
    adamw: { lr: 0.01, step, gradScale, weightDecay: 0.1 },
  };
}

webGpuTest(
  "StepAdamW on webgpu matches adamwUpdate's composite on random shapes (param, m and v)",
  async () => {
    const cases = kernelCases({ seed: 71, perOp: 6, maxSeq: 8 }).filter((c) => c.kind === "adamw");
    assertAllPassed(await compareFusedToComposite(cases));
  },
);

webGpuTest(
  "StepAdamW on webgpu matches the composite beyond one dispatch dimension and with zero moments",
  async () => {
    // 4 100 × 4 100 ≈ 16.8 M elements: 65 660 workgroups, just past one dispatch dimension.
    const big = adamwCase([4100, 4100], 7, 0.5);
    const fresh: KernelCase = {
      ...adamwCase([5, 3], 1, 1),
      label: "adamw [5,3] step 1, zero moments",
      values: [
        ...adamwCase([5, 3], 1, 1).values.slice(0, 2),
        new Float32Array(15),
        new Float32Array(15),
      ],
    };
    assertAllPassed(await compareFusedToComposite([big, fresh]));
  },
);

webGpuTest(
  "StepAdamW on webgpu leaves its inputs intact, in place or not, and returns new tensors",
  async () => {
    const shape = [4, 6];
    const make = (f: number, a: number): tf.Tensor =>
      tf.tensor(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * f) * a), shape);
    const [param, grad, m, v] = [
      make(0.3, 1),
      make(0.7, 2),
      make(0.1, 0.1),
      tf.abs(make(0.2, 0.1)),
    ];
    const before = await Promise.all([param, grad, m, v].map((t) => t.data()));
    for (const consumeInputs of [false, true]) {
      const tensors = tf.memory().numTensors;
      const got = adamwUpdate({ param: param!, grad: grad!, m: m!, v: v! }, {
        lr: 0.01,
        step: 2,
        gradScale: 1,
        consumeInputs,
      });
      const outs = [got.param, got.m, got.v];
      assertEquals(tf.memory().numTensors, tensors + 3, "three new tensors");
      assert(
        outs.every((o) => [param, grad, m, v].every((i) => o.dataId !== i!.dataId)),
        "outputs on their own buffers",
      );
      for (const o of outs) await o.data();
      tf.dispose(outs);
      // webgpu ignores inPlace: the inputs still hold their values, and may be read again.
      const after = await Promise.all([param, grad, m, v].map((t) => t!.data()));
      assertEquals(after.map((a) => Array.from(a)), before.map((b) => Array.from(b)));
    }
    tf.dispose([param!, grad!, m!, v!]);
  },
);
