/**
 * The whole STEP pipeline (training steps, growth, ReLoRA attach and merges,
 * evaluation, export) on the WebGPU backend agrees with the CPU backend. On a
 * machine without a GPU, Mesa's software Vulkan driver provides the adapter;
 * without any adapter the test is skipped with a message. The comparison is
 * the one the GPU device program runs (effects/compare_backends.ts on
 * examples/tiny_gqa.ts).
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "./assert.ts";
import { webGpuUnavailable } from "../kernels/backend.ts";
import { compareBackends } from "../effects/mod.ts";
import { validateGraph } from "../pipeline/mod.ts";
import { tinyGqaPipeline } from "../examples/tiny_gqa.ts";

const why = await webGpuUnavailable();
if (why !== undefined) console.log(`skipping the WebGPU pipeline test: ${why}`);

Deno.test({
  name: "webgpu runs a two-stage STEP pipeline with the same losses as cpu",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const g = E.flatMap(tinyGqaPipeline(`${dir}/tokens`), validateGraph);
    assert(E.isRight(g), JSON.stringify(g));
    const c = await compareBackends(g.right, { reference: "cpu", candidate: "webgpu" });
    await Deno.remove(dir, { recursive: true });
    const [cpu, gpu] = c.runs;
    assertEquals(gpu.losses.length, cpu.losses.length);
    assert(c.steps >= 20, `${c.steps} steps compared`);
    assert(c.worstStep <= 1e-4, `worst step differs by ${c.worstStep}`);
    assert(c.valDiff <= 1e-4, `final validation losses differ by ${c.valDiff}`);
    assert(Math.abs(gpu.mergedValLoss - gpu.finalValLoss) <= 1e-4, "merging changed the loss");
  },
});
