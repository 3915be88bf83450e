/**
 * Test helpers for the WGSL kernels: a test that runs on the webgpu backend
 * and is skipped, with the reason printed, where no adapter exists.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { assert } from "../../tests/assert.ts";
import { initBackend, webGpuUnavailable } from "../backend.ts";
import type { CaseComparison } from "./equivalence.ts";

/**
 * Registers a test that starts the webgpu backend first. WebGPU keeps a
 * device and its promises alive across tests, so the op and resource
 * sanitizers are off.
 */
export function webGpuTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const why = await webGpuUnavailable();
      if (why !== undefined) {
        console.log(`  skipping "${name}": ${why}`);
        await t.step({ name: "webgpu", ignore: true, fn: () => {} });
        return;
      }
      const got = await initBackend("webgpu");
      if (E.isLeft(got)) throw new Error(got.left.message);
      await fn();
    },
  });
}

/** Asserts every comparison passed, naming the failures with their errors. */
export function assertAllPassed(rows: readonly CaseComparison[]): void {
  assert(rows.length > 0, "no cases ran");
  const failed = rows.filter((r) => !r.passed);
  assert(
    failed.length === 0,
    failed.map((r) =>
      `${r.label}: forward ${r.forward.toExponential(2)}, gradient ${
        r.gradient.toExponential(2)
      }, leaked ${r.leaked}`
    ).join("\n"),
  );
}
