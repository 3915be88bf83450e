import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { initBackend, isBackendName } from "./backend.ts";

const quiet = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "initBackend() starts cpu and wasm, idempotently, and describes what it got",
  ...quiet,
  fn: async () => {
    for (const name of ["cpu", "wasm"] as const) {
      const first = await initBackend(name);
      const again = await initBackend(name);
      assert(E.isRight(first) && E.isRight(again), `${name} started`);
      assertEquals(first.right, again.right);
      assertEquals(tf.getBackend(), name);
      assertEquals(first.right.name, name);
    }
    const wasm = await initBackend("wasm");
    assert(E.isRight(wasm));
    assertStringIncludes(wasm.right.description, "XNNPACK");
  },
});

Deno.test({
  name: 'initBackend("webgpu") starts on an adapter, or explains why it cannot',
  ...quiet,
  fn: async () => {
    const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
    const adapter = gpu === undefined ? null : await gpu.requestAdapter();
    const got = await initBackend("webgpu");
    if (adapter === null) {
      assert(E.isLeft(got));
      assertStringIncludes(got.left.message, "webgpu");
    } else {
      assert(E.isRight(got), E.isLeft(got) ? got.left.message : "");
      assertEquals(tf.getBackend(), "webgpu");
      assertStringIncludes(got.right.description, "webgpu");
    }
  },
});

Deno.test({
  name: 'initBackend("tensorflow") says which package to add when tfjs-node is absent',
  ...quiet,
  fn: async () => {
    const got = await initBackend("tensorflow");
    assert(E.isLeft(got), "tfjs-node is not installable here");
    assertEquals(got.left._tag, "KernelFailed");
    assertStringIncludes(got.left.message, "@tensorflow/tfjs-node");
    assertStringIncludes(got.left.message, "wasm");
  },
});

Deno.test("isBackendName() accepts exactly the four backends", () => {
  assertEquals(["wasm", "cpu", "webgpu", "tensorflow", "webgl", ""].map(isBackendName), [
    true,
    true,
    true,
    true,
    false,
    false,
  ]);
});
