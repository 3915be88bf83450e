/**
 * The planner assumes, per backend, which ops run fused (`BACKEND_FUSED`), because a plan is made
 * before any backend exists. It is built from the registries' declaration in solvers/, as the
 * registries are; this checks which registries each backend starts: every backend this machine
 * can start must report, from its live registries, the set the planner assumes.
 */
import * as E from "fp-ts/lib/Either.js";
import { assertEquals } from "./assert.ts";
import { startBackend } from "../effects/mod.ts";
import { fusedOps, webGpuUnavailable } from "../kernels/mod.ts";
import { BACKEND_FUSED } from "../pipeline/mod.ts";

Deno.test({
  name: "BACKEND_FUSED lists the ops each backend runs fused once started",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const gpu = await webGpuUnavailable();
    for (const name of ["cpu", "wasm", "blas", "auto", "webgpu"] as const) {
      if (name === "webgpu" && gpu !== undefined) {
        console.log(`  skipping webgpu: ${gpu}`);
        continue;
      }
      const started = await startBackend(name)();
      if (E.isLeft(started)) {
        // blas needs OpenBLAS; without it the table cannot be checked here.
        console.log(`  skipping ${name}: ${started.left.message}`);
        continue;
      }
      // Without OpenBLAS, auto runs plain wasm (and says so).
      const as = name === "auto" && !started.right.startsWith("wasm + BLAS") ? "wasm" : name;
      await t.step(name, () => assertEquals([...fusedOps()].sort(), [...BACKEND_FUSED[as]].sort()));
    }
    // Leave plain wasm behind: auto's OpenBLAS kernels are unregistered again.
    await startBackend("wasm")();
  },
});
