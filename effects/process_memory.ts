/**
 * The process's peak resident memory, read from the operating system: a
 * figure independent of tfjs's bookkeeping (it also counts Deno, V8's heap,
 * the wasm module and every copy tfjs makes outside tensors). On Linux it is
 * `VmHWM` in `/proc/self/status`, reset by writing `5` to
 * `/proc/self/clear_refs`; elsewhere it is unknown.
 *
 * @module
 */
import type { ProcessMemoryEffect } from "../pipeline/mod.ts";

const HWM = /^VmHWM:\s+(\d+)\s+kB$/m;

/** Peak resident bytes of this process, or undefined where the OS does not tell. */
export function processPeakBytes(): number | undefined {
  try {
    const m = HWM.exec(Deno.readTextFileSync("/proc/self/status"));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Restarts the peak from the current resident size, where the kernel allows it. */
export function resetProcessPeak(): void {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
  } catch {
    // Not Linux, or not permitted: the peak then covers the whole process.
  }
}

/**
 * The process memory effect over `/proc`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { processMemory } from "./process_memory.ts";
 * const m = processMemory();
 * m.resetPeak();
 * const peak = m.peakBytes();
 * assert(peak === undefined || peak > 0);
 * ```
 */
export function processMemory(): ProcessMemoryEffect {
  return { peakBytes: processPeakBytes, resetPeak: resetProcessPeak };
}
