import { assertAllPassed, webGpuTest } from "./_test_util.ts";
import { compareFusedToComposite, type KernelCase, kernelCases } from "./equivalence.ts";

function rmsCases(seed: number, perOp: number): KernelCase[] {
  return kernelCases({ seed, perOp, maxSeq: 8 }).filter((c) => c.kind === "rmsNorm");
}

webGpuTest("StepRmsNorm on webgpu matches rmsNormComposite on random shapes", async () => {
  assertAllPassed(await compareFusedToComposite(rmsCases(11, 6)));
});

webGpuTest(
  "StepRmsNorm on webgpu handles wide rows and more rows than one dispatch dimension",
  async () => {
    const wide = 1536; // 256 threads per row, each summing 6 columns
    const rows = 70_000; // one workgroup per row: tfjs folds the dispatch into 2-D
    const cases: KernelCase[] = [[3, wide], [rows, 1]].map(([n, h]) => ({
      label: `rmsNorm [${n}, ${h}]`,
      kind: "rmsNorm",
      shapes: [[n!, h!], [h!]],
      values: [
        Float32Array.from({ length: n! * h! }, (_, i) => Math.sin(i * 0.37) * 2),
        Float32Array.from({ length: h! }, (_, i) => 1 + Math.cos(i)),
      ],
      differentiate: [0, 1],
      eps: 1e-5,
    }));
    assertAllPassed(await compareFusedToComposite(cases));
  },
);
