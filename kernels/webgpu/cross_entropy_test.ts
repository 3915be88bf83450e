import { assert, assertEquals } from "../../tests/assert.ts";
import { assertAllPassed, webGpuTest } from "./_test_util.ts";
import { compareFusedToComposite, type KernelCase, kernelCases, runCase } from "./equivalence.ts";

function ceCase(label: string, n: number, v: number, targets: Int32Array): KernelCase {
  return {
    label,
    kind: "crossEntropy",
    shapes: [[n, v], [n]],
    values: [Float32Array.from({ length: n * v }, (_, i) => Math.sin(i * 1.3) * 6), targets],
    differentiate: [0],
    eps: 0,
  };
}

webGpuTest(
  "StepSoftmaxCrossEntropy on webgpu matches the composite on random shapes with ignored rows",
  async () => {
    const cases = kernelCases({ seed: 21, perOp: 6, maxSeq: 8 })
      .filter((c) => c.kind === "crossEntropy");
    assertAllPassed(await compareFusedToComposite(cases));
  },
);

webGpuTest(
  "StepSoftmaxCrossEntropy on webgpu handles a GPT-2 vocabulary, edge targets and many rows",
  async () => {
    const rows = 70_000; // one workgroup per row: tfjs folds the dispatch into 2-D
    assertAllPassed(
      await compareFusedToComposite([
        ceCase("crossEntropy [3, 50257]", 3, 50257, Int32Array.from([0, 50256, -1])),
        ceCase(
          `crossEntropy [${rows}, 2]`,
          rows,
          2,
          Int32Array.from({ length: rows }, (_, i) => i % 3 - 1),
        ),
      ]),
    );
  },
);

webGpuTest(
  "StepSoftmaxCrossEntropy on webgpu gives 0 loss and 0 gradient when every row is ignored",
  async () => {
    const got = await runCase(
      ceCase("all ignored", 4, 9, Int32Array.from([-1, -1, -1, -1])),
      "fused",
    );
    assertEquals(Array.from(got.forward), [0]);
    assert(got.grads[0]!.every((g) => g === 0), "every gradient is 0");
    assertEquals(got.leaked, 0);
  },
);
