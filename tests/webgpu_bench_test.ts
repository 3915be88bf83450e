/**
 * bench/gpu_bench.ts on the webgpu backend (Mesa's software adapter where no
 * GPU exists; skipped with a message without any adapter): its rows describe
 * themselves and its memory figures agree with the planner.
 */
import { assert, assertEquals } from "./assert.ts";
import { webGpuUnavailable } from "../kernels/backend.ts";
import { benchGpu, gpuBenchTable, predictedModelState } from "../bench/gpu_bench.ts";
import { benchShape } from "../bench/train_bench.ts";

const why = await webGpuUnavailable();
if (why !== undefined) console.log(`skipping the WebGPU bench test: ${why}`);

Deno.test({
  name: "benchGpu() measures the model state the planner predicts and a GPU peak above it",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const shape: [number, number, number, number, number] = [64, 2, 96, 16, 2];
    const rows = await benchGpu({ shapes: [shape], kernels: ["fused", "composite"], steps: 1 });
    assertEquals(rows.map((r) => [r.shape, r.backend, r.kernels]), [
      [shape, "webgpu", "fused"],
      [shape, "webgpu", "composite"],
    ]);
    const predicted = predictedModelState(benchShape(64, 2, 96, 16));
    for (const r of rows) {
      // 16 B per parameter: weight, gradient, Adam m and v, all fp32.
      assertEquals(r.predictedModelStateBytes, predicted);
      assertEquals(r.predictedModelStateBytes, 16 * r.params);
      assertEquals(r.modelStateBytes, r.predictedModelStateBytes);
      assert(r.gpuBytes >= r.modelStateBytes, `GPU peak ${r.gpuBytes} < model state`);
      assert(r.gpuAllocatedBytes >= r.gpuBytes, "the pool holds at least the peak");
      assert(r.adapter.length > 0 && Number.isFinite(r.loss));
      assert(Math.abs(r.gflops - 6 * r.params * r.tokensPerSec / 1e9) < 1e-9 * r.gflops + 1e-12);
    }
    // The fused kernels drop attention's probabilities and the cross-entropy's softmax.
    assert(
      rows[0]!.gpuBytes < rows[1]!.gpuBytes,
      `fused ${rows[0]!.gpuBytes} vs ${rows[1]!.gpuBytes}`,
    );
    assertEquals(gpuBenchTable(rows).split("\n").length, 3);
  },
});
