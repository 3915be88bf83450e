import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import * as E from "fp-ts/lib/Either.js";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { BLAS_BACKEND, registerBlasBackend } from "./mod.ts";
import { openBlas } from "./_openblas.ts";

const reg = registerBlasBackend();
const skip = E.isLeft(reg);
if (E.isLeft(reg)) console.warn(`Skipping blas backend tests: ${reg.left}`);

function cpuHasAvx512(): boolean {
  try {
    return /\bavx512f\b/.test(Deno.readTextFileSync("/proc/cpuinfo"));
  } catch {
    return false;
  }
}

Deno.test({
  name: "registerBlasBackend() uses every core and an AVX-512 kernel where the CPU has one",
  ignore: skip,
  fn() {
    const info = E.isRight(reg) ? reg.right : undefined;
    assert(info !== undefined);
    if (Deno.env.get("OPENBLAS_NUM_THREADS") === undefined) {
      assertEquals(info.threads, navigator.hardwareConcurrency);
    }
    if (cpuHasAvx512() && Deno.env.get("OPENBLAS_CORETYPE") === undefined) {
      assert(["SkylakeX", "Cooperlake", "SapphireRapids"].includes(info.core), info.core);
      assertEquals(info.warning, undefined);
    }
    assertEquals([...info.blasKernels].sort(), ["BatchMatMul", "_FusedMatMul"]);
  },
});

Deno.test({
  name: "registerBlasBackend() mirrors every cpu kernel and replaces only the matmuls",
  ignore: skip,
  async fn() {
    for (const config of tf.getKernelsForBackend("cpu")) {
      const ours = tf.getKernel(config.kernelName, BLAS_BACKEND);
      assert(ours !== undefined, `kernel ${config.kernelName} missing`);
      const replaced = config.kernelName === "BatchMatMul" || config.kernelName === "_FusedMatMul";
      assertEquals(ours.kernelFunc === config.kernelFunc, !replaced, config.kernelName);
    }
    assert(await tf.setBackend(BLAS_BACKEND));
    assertEquals(tf.getBackend(), BLAS_BACKEND);
  },
});

Deno.test({
  name: "registerBlasBackend() called twice returns the first registration",
  ignore: skip,
  fn() {
    assertEquals(registerBlasBackend(), reg);
  },
});

Deno.test("openBlas() without the library returns a one-line install notice", () => {
  const r = openBlas({ library: "/nonexistent/libopenblas.so.0" });
  assert(E.isLeft(r));
  assert(r.left.includes("apt-get install libopenblas0-pthread"), r.left);
  assert(!r.left.includes("\n"), r.left);
});
