/**
 * This machine's memory as the backends see it, read at run time: what the OS can give a
 * process (`MemAvailable`, or a cgroup's room when that is smaller) and the wasm backend's heap
 * as its binary declares it. `pipeline/memory_fit.ts` turns them into each backend's limit.
 *
 * @module
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { MachineMemory } from "../pipeline/mod.ts";
import { readUleb128, WASM32_PAGES, WASM_PAGE_BYTES, wasmSections } from "../base/mod.ts";

/**
 * `MemAvailable` and `MemTotal` of a `/proc/meminfo` text, in bytes; undefined when either is
 * missing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMeminfo } from "./machine_memory.ts";
 * const m = parseMeminfo("MemTotal:       24683772 kB\nMemAvailable:   24136120 kB\n");
 * assert.deepEqual(m, { totalBytes: 24683772 * 1024, availableBytes: 24136120 * 1024 });
 * ```
 */
export function parseMeminfo(
  text: string,
): { readonly totalBytes: number; readonly availableBytes: number } | undefined {
  const kib = (key: string) => {
    const m = text.match(new RegExp(`^${key}:\\s+(\\d+)\\s*kB\\s*$`, "m"));
    return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
  };
  const [totalBytes, availableBytes] = [kib("MemTotal"), kib("MemAvailable")];
  return totalBytes === undefined || availableBytes === undefined
    ? undefined
    : { totalBytes, availableBytes };
}

/** The files of a cgroup's memory controller, as read (undefined where a file is missing). */
export interface CgroupFiles {
  /** `memory.max` (v2: a number or `max`) or `memory.limit_in_bytes` (v1). */
  readonly limit?: string;
  /** `memory.current` (v2) or `memory.usage_in_bytes` (v1). */
  readonly usage?: string;
  /** `memory.stat`. */
  readonly stat?: string;
}

/**
 * The bytes a cgroup still lets its processes take: its limit less its usage, counting the
 * inactive page cache as free, as the kernel reclaims it before it refuses memory (v2's
 * `inactive_file`, v1's `total_inactive_file`). Undefined without a limit (`max`, or v1's
 * "unlimited", a number near 2⁶³).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cgroupRoom } from "./machine_memory.ts";
 * assert.equal(cgroupRoom({ limit: "1000\n", usage: "700\n", stat: "anon 500\ninactive_file 100\n" }), 400);
 * assert.equal(cgroupRoom({ limit: "max\n", usage: "700\n" }), undefined);
 * ```
 */
export function cgroupRoom(files: CgroupFiles): number | undefined {
  const limit = Number(files.limit?.trim());
  // v1 writes "no limit" as the largest page-aligned signed 64-bit value.
  if (!Number.isFinite(limit) || limit <= 0 || limit >= 2 ** 62) return undefined;
  const usage = Number(files.usage?.trim() ?? NaN);
  if (!Number.isFinite(usage)) return limit;
  const inactive = files.stat?.match(/^(?:total_)?inactive_file (\d+)$/m)?.[1];
  const reclaimable = inactive === undefined ? 0 : Number(inactive);
  return Math.max(0, limit - Math.max(0, usage - reclaimable));
}

/**
 * The declared limits of a wasm module's own linear memory (its memory section), in bytes;
 * undefined when the module has none (an imported memory) or the bytes are not a wasm module.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wasmMemoryLimits } from "./machine_memory.ts";
 * // A module with one memory of 256 pages that may grow to 65536 (4 GiB).
 * const module = new Uint8Array([
 *   0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // magic, version
 *   5, 7, 1, 0x01, 0x80, 0x02, 0x80, 0x80, 0x04, // memory section: min 256, max 65536
 * ]);
 * assert.deepEqual(wasmMemoryLimits(module), { initialBytes: 2 ** 24, maxBytes: 2 ** 32 });
 * ```
 */
export function wasmMemoryLimits(
  bytes: Uint8Array,
): { readonly initialBytes: number; readonly maxBytes: number } | undefined {
  try {
    const memory = wasmSections(bytes)?.find((s) => s.id === 5)?.body;
    if (memory === undefined) return undefined;
    const [count, flagsAt] = readUleb128(memory, 0);
    if (count < 1) return undefined;
    const [flags, minAt] = readUleb128(memory, flagsAt);
    // Bit 2 is memory64, whose limits this reading does not cover.
    if ((flags & 0x04) !== 0) return undefined;
    const [min, maxAt] = readUleb128(memory, minAt);
    // A wasm32 memory without a declared maximum can still grow no further than 2³² bytes.
    const max = (flags & 0x01) !== 0 ? readUleb128(memory, maxAt)[0] : WASM32_PAGES;
    return { initialBytes: min * WASM_PAGE_BYTES, maxBytes: max * WASM_PAGE_BYTES };
  } catch {
    return undefined;
  }
}

function readOptional(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** The cgroup (v2, else v1) that limits this process, read from its usual mount. */
function cgroupFiles(): { files: CgroupFiles; where: string } | undefined {
  const v2 = "/sys/fs/cgroup";
  const v2Limit = readOptional(`${v2}/memory.max`);
  if (v2Limit !== undefined) {
    return {
      where: `${v2}/memory.max`,
      files: {
        limit: v2Limit,
        ...opt("usage", readOptional(`${v2}/memory.current`)),
        ...opt("stat", readOptional(`${v2}/memory.stat`)),
      },
    };
  }
  const v1 = "/sys/fs/cgroup/memory";
  const v1Limit = readOptional(`${v1}/memory.limit_in_bytes`);
  if (v1Limit === undefined) return undefined;
  return {
    where: `${v1}/memory.limit_in_bytes`,
    files: {
      limit: v1Limit,
      ...opt("usage", readOptional(`${v1}/memory.usage_in_bytes`)),
      ...opt("stat", readOptional(`${v1}/memory.stat`)),
    },
  };
}

function opt<K extends string>(key: K, value: string | undefined): { [k in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: string };
}

/** The tfjs wasm backend's binary (the SIMD build; the plain one declares the same memory). */
function wasmBinaryPath(): string | undefined {
  try {
    const main = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm");
    return join(dirname(main), "tfjs-backend-wasm-simd.wasm");
  } catch {
    return undefined;
  }
}

/**
 * The bytes the OS can give this process now: MemAvailable (`/proc/meminfo`, or `Deno`'s
 * reading elsewhere), or a cgroup's room when smaller; Infinity when nothing says.
 */
export function availableMemory(): { readonly bytes: number; readonly from: string } {
  const meminfo = parseMeminfo(readOptional("/proc/meminfo") ?? "");
  let bytes: number;
  let from: string;
  if (meminfo !== undefined) {
    bytes = meminfo.availableBytes;
    from = "MemAvailable in /proc/meminfo";
  } else {
    try {
      // Deno may not read /proc without --allow-all; its own reading is MemAvailable too.
      bytes = Deno.systemMemoryInfo().available;
      from = "MemAvailable through Deno.systemMemoryInfo";
    } catch {
      // Without /proc and without the `sys` permission nothing says how much there is.
      bytes = Infinity;
      from = "unknown: /proc/meminfo unreadable and no --allow-sys";
    }
  }
  const cgroup = cgroupFiles();
  const room = cgroup === undefined ? undefined : cgroupRoom(cgroup.files);
  if (cgroup !== undefined && room !== undefined && room < bytes) {
    bytes = room;
    from = `the room left under ${cgroup.where}`;
  }
  return { bytes, from };
}

/**
 * This machine's memory now: {@link availableMemory} and the wasm heap's declared limits.
 */
export function machineMemory(): MachineMemory {
  const os = availableMemory();
  const binary = wasmBinaryPath();
  const bytes = binary === undefined ? undefined : readBinary(binary);
  const heap = bytes === undefined ? undefined : wasmMemoryLimits(bytes);
  return {
    availableBytes: os.bytes,
    availableFrom: os.from,
    ...(heap === undefined ? {} : { wasmHeap: heap }),
  };
}

function readBinary(path: string): Uint8Array | undefined {
  try {
    return Deno.readFileSync(path);
  } catch {
    return undefined;
  }
}
