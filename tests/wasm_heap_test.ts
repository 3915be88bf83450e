/**
 * The wasm heap past 2 GiB and at its 4 GiB end, in a process of its own (`wasm_heap_child.ts`):
 * the fused kernels read tensors that lie above 2³¹ correctly, and an allocation the heap
 * cannot hold is a `WasmHeapFull` error naming its size, never a tensor at address 0 or past
 * the heap's end followed by a bare `Aborted()`.
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

const CHILD = new URL("./wasm_heap_child.ts", import.meta.url).pathname;

Deno.test("the wasm heap: kernels past 2 GiB match float64, and a full heap is a named error", async () => {
  // The child touches the whole 4 GiB heap.
  if (Deno.systemMemoryInfo().available < 6e9) {
    console.log("skipped: needs 6 GB of available memory for a full 4 GiB wasm heap");
    return;
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CHILD],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(text.trim().split("\n").at(-1)!);
  assert(r.lowestOffset >= 2 ** 31, `the tensors lie below 2 GiB: ${r.lowestOffset}`);
  assert(Math.abs(r.loss - r.lossRef) <= 1e-5 * Math.abs(r.lossRef), text);
  assert(r.gradGap <= 1e-6, text);
  assert(r.attentionGap <= 1e-6, text);
  assertEquals(r.full.requested, 2 ** 26, text);
  assert(r.full.heapBytes <= 2 ** 32, text);
  assertStringIncludes(r.full.message, "the wasm heap is full");
  assertStringIncludes(r.full.message, `${2 ** 26} bytes`);
});
