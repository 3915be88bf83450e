import { createRequire } from "node:module";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { importSharedMemory, SHARED_MEMORY_IMPORT } from "./_shared_wasm_memory.ts";
import { assembleWat } from "./fused/_wat.ts";

function tfjsSimdBinary(): Uint8Array {
  const main = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm");
  return Deno.readFileSync(new URL("./tfjs-backend-wasm-simd.wasm", `file://${main}`));
}

function thrown(f: () => unknown): string {
  try {
    f();
  } catch (e: unknown) {
    return String(e);
  }
  return "";
}

Deno.test("importSharedMemory: tfjs's SIMD binary then imports a shared memory and exports it", () => {
  const original = tfjsSimdBinary();
  const before = new WebAssembly.Module(original as Uint8Array<ArrayBuffer>);
  const { bytes, initialPages } = importSharedMemory(original);
  const after = new WebAssembly.Module(bytes);
  const memoryImports = WebAssembly.Module.imports(after).filter((i) => i.kind === "memory");
  assertEquals(
    memoryImports,
    [{ ...SHARED_MEMORY_IMPORT, name: SHARED_MEMORY_IMPORT.field }].map(
      (i) => ({ module: i.module, name: i.name, kind: "memory" as const }),
    ),
  );
  assertEquals(WebAssembly.Module.exports(after), WebAssembly.Module.exports(before));
  const functionImports = (m: WebAssembly.Module) =>
    WebAssembly.Module.imports(m).filter((i) => i.kind !== "memory");
  assertEquals(functionImports(after), functionImports(before));
  assert(initialPages > 0 && initialPages < 65536, `initial pages ${initialPages}`);
  // Only the memory moved: the rewrite is the original size give or take the two entries.
  assert(Math.abs(bytes.length - original.length) < 32, `${bytes.length} vs ${original.length}`);
});

Deno.test("importSharedMemory: a module that does not define one plain memory is refused", () => {
  assertStringIncludes(
    thrown(() => importSharedMemory(new Uint8Array([1, 2, 3]))),
    "not a version-1",
  );
  // Our own kernels import their memory: nothing to share.
  const importing = assembleWat(`(module (import "env" "memory" (memory 1))
    (func $f (export "f") (param $x i32) (result i32) (local.get $x)))`);
  assertStringIncludes(thrown(() => importSharedMemory(importing)), "no memory section");
  const truncated = tfjsSimdBinary().subarray(0, 5000);
  assertStringIncludes(thrown(() => importSharedMemory(truncated)), "truncated");
});
