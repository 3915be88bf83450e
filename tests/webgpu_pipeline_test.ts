/**
 * The whole STEP pipeline (training steps, growth, ReLoRA attach and merges,
 * evaluation, export) on the WebGPU backend agrees with the CPU backend. On a
 * machine without a GPU, Mesa's software Vulkan driver provides the adapter;
 * without any adapter the test is skipped with a message. The comparison is
 * the one the GPU device program runs (bench/gpu_pipeline.ts).
 */
import { assert, assertEquals } from "./assert.ts";
import { webGpuUnavailable } from "../kernels/backend.ts";
import { comparePipelines } from "../bench/gpu_pipeline.ts";

const why = await webGpuUnavailable();
if (why !== undefined) console.log(`skipping the WebGPU pipeline test: ${why}`);

Deno.test({
  name: "webgpu runs a two-stage STEP pipeline with the same losses as cpu",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const c = await comparePipelines("cpu", "webgpu");
    const [cpu, gpu] = c.runs;
    assertEquals(gpu.losses.length, cpu.losses.length);
    assert(c.steps >= 20, `${c.steps} steps compared`);
    assert(c.worstStep <= 1e-4, `worst step differs by ${c.worstStep}`);
    assert(c.valDiff <= 1e-4, `final validation losses differ by ${c.valDiff}`);
    assert(Math.abs(gpu.mergedValLoss - gpu.finalValLoss) <= 1e-4, "merging changed the loss");
  },
});
