import { assertAllPassed, webGpuTest } from "./_test_util.ts";
import { compareFusedToComposite, type KernelCase, kernelCases } from "./equivalence.ts";

function swigluCase(n: number, f: number, gateScale: number): KernelCase {
  return {
    label: `swiglu [${n}, ${f}] gates ±${gateScale}`,
    kind: "swiglu",
    shapes: [[n, f], [n, f]],
    values: [
      Float32Array.from({ length: n * f }, (_, i) => Math.sin(i * 0.61) * gateScale),
      Float32Array.from({ length: n * f }, (_, i) => Math.cos(i * 0.29) * 2),
    ],
    differentiate: [0, 1],
    eps: 0,
  };
}

webGpuTest("StepSwiGlu on webgpu matches swigluComposite on random shapes", async () => {
  const cases = kernelCases({ seed: 61, perOp: 6, maxSeq: 8 }).filter((c) => c.kind === "swiglu");
  assertAllPassed(await compareFusedToComposite(cases));
});

webGpuTest(
  "StepSwiGlu on webgpu handles saturated gates and more elements than one dispatch dimension",
  async () => {
    // 70 000 × 257 ≈ 18 M elements: 70 274 workgroups, so tfjs folds the dispatch into 2-D.
    assertAllPassed(
      await compareFusedToComposite([swigluCase(3, 5, 90), swigluCase(70_000, 257, 4)]),
    );
  },
);
