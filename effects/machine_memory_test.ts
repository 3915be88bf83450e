import fc from "fast-check";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { uleb128 } from "../base/mod.ts";
import { assert, assertEquals } from "../tests/assert.ts";
import { cgroupRoom, machineMemory, parseMeminfo, wasmMemoryLimits } from "./machine_memory.ts";

const leb = uleb128;

/** A module that defines one memory of `min` pages (at most `max`) and exports it as `m`. */
function memoryModule(
  min: number,
  max: number | undefined,
  before: number[][] = [],
): Uint8Array<ArrayBuffer> {
  const limits = max === undefined ? [0x00, ...leb(min)] : [0x01, ...leb(min), ...leb(max)];
  const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    1,
    0,
    0,
    0,
    ...before.flatMap((b) => b),
    ...section(5, [1, ...limits]),
    ...section(7, [1, 1, 0x6d, 0x02, 0]),
  ]);
}

Deno.test("wasmMemoryLimits reads the limits V8 enforces on the module's memory", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 64 }),
      fc.option(fc.integer({ min: 0, max: 64 }), { nil: undefined }),
      fc.boolean(),
      async (min, extra, withType) => {
        const max = extra === undefined ? undefined : min + extra;
        // A type section before it: the reader must skip sections it does not want.
        const types = withType ? [[1, 4, 1, 0x60, 0, 0]] : [];
        const bytes = memoryModule(min, max, types);
        const got = wasmMemoryLimits(bytes);
        const instance = await WebAssembly.instantiate(new WebAssembly.Module(bytes));
        const memory = instance.exports.m as WebAssembly.Memory;
        assertEquals(got?.initialBytes, memory.buffer.byteLength);
        if (max !== undefined) {
          assertEquals(got?.maxBytes, max * 65536);
          let refused = false;
          try {
            memory.grow(max - min + 1);
          } catch {
            refused = true;
          }
          assert(refused, "V8 let the memory grow past the maximum read");
        } else assertEquals(got?.maxBytes, 2 ** 32);
      },
    ),
    { numRuns: 60 },
  );
  assertEquals(wasmMemoryLimits(new TextEncoder().encode("not a wasm module")), undefined);
  assertEquals(wasmMemoryLimits(memoryModule(1, 2).slice(0, 12)), undefined);
});

Deno.test("the tfjs wasm binaries declare a 16 MiB heap that may grow to 4 GiB", () => {
  const dist = dirname(createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm"));
  for (const file of ["tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm.wasm"]) {
    assertEquals(wasmMemoryLimits(Deno.readFileSync(join(dist, file))), {
      initialBytes: 2 ** 24,
      maxBytes: 2 ** 32,
    });
  }
  const m = machineMemory();
  assertEquals(m.wasmHeap, { initialBytes: 2 ** 24, maxBytes: 2 ** 32 });
  assert(m.availableBytes > 0 && m.availableBytes <= Deno.systemMemoryInfo().total);
});

Deno.test("parseMeminfo reads this machine's /proc/meminfo as the OS reports its memory", () => {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/meminfo");
  } catch {
    console.log("skipped: no /proc/meminfo here");
    return;
  }
  const m = parseMeminfo(text);
  assert(m !== undefined);
  assertEquals(m.totalBytes, Deno.systemMemoryInfo().total);
  assert(m.availableBytes <= m.totalBytes);
  assertEquals(parseMeminfo("MemTotal: 10 kB\n"), undefined);
});

Deno.test("cgroupRoom: the limit less what is used, inactive page cache counted free", () => {
  const v2 = {
    limit: "8000\n",
    usage: "5000\n",
    stat: "anon 3000\ninactive_file 1500\nactive_file 500\n",
  };
  assertEquals(cgroupRoom(v2), 8000 - (5000 - 1500));
  const v1 = { limit: "8000\n", usage: "5000\n", stat: "cache 2000\ntotal_inactive_file 1000\n" };
  assertEquals(cgroupRoom(v1), 8000 - (5000 - 1000));
  assertEquals(cgroupRoom({ limit: "8000" }), 8000);
  assertEquals(cgroupRoom({ limit: "100", usage: "300" }), 0);
  assertEquals(cgroupRoom({ limit: "max\n", usage: "5000" }), undefined);
  assertEquals(cgroupRoom({ limit: "9223372036854771712\n", usage: "5000" }), undefined);
  assertEquals(cgroupRoom({}), undefined);
});
