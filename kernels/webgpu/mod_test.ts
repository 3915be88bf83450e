import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "../../tests/assert.ts";
import { FUSED_KERNEL_NAMES, kernelNames } from "../ops/fused_kernels.ts";
import { FUSED_REGISTRIES } from "../../solvers/mod.ts";
import { webGpuTest } from "./_test_util.ts";
import { kernelCases, runCase } from "./equivalence.ts";
import { registerWebGpuKernels, unregisterWebGpuKernels, webGpuKernels } from "./mod.ts";

/**
 * Every fused kernel of the webgpu registry has a WGSL implementation: all of
 * ../ops/fused_kernels.ts but the gradient norm's sum of squares, which runs composite there (one
 * storage binding per gradient would pass the adapter's limit).
 */
const ALL = kernelNames(FUSED_REGISTRIES.webgpu);
assert(
  FUSED_KERNEL_NAMES.filter((n) => !ALL.includes(n)).join() === "StepSumSquares",
  "webgpu leaves out only the gradient norm's kernel",
);

async function stepKernelsRun(): Promise<string[]> {
  const names = new Set<string>();
  for (const c of kernelCases({ seed: 41, perOp: 1, maxSeq: 6 })) {
    const p = await tf.profile(async () => {
      const got = await runCase(c, "fused");
      assertEquals(got.leaked, 0, `${c.label}: tensors or GPU buffers leaked`);
    });
    for (const n of p.kernelNames) if (n.startsWith("Step")) names.add(n);
  }
  return [...names].sort();
}

webGpuTest(
  'initBackend("webgpu") registers every fused kernel in WGSL and the ops run them without leaks',
  async () => {
    assertEquals(webGpuKernels().sort(), [...ALL].sort());
    assertEquals(await stepKernelsRun(), [...ALL].sort());
  },
);

webGpuTest("unregisterWebGpuKernels() sends the ops back to their composites", async () => {
  unregisterWebGpuKernels();
  try {
    assertEquals(webGpuKernels(), []);
    assertEquals(await stepKernelsRun(), []);
  } finally {
    registerWebGpuKernels();
  }
  registerWebGpuKernels(); // idempotent
  assertEquals(webGpuKernels().length, ALL.length);
  assert(tf.getBackend() === "webgpu");
});
