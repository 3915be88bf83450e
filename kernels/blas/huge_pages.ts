/**
 * Float32 arrays that the kernel may back with 2 MiB pages (Linux transparent huge pages, asked
 * for with `madvise(MADV_HUGEPAGE)` through libc), for data streamed end to end on every use: the
 * row decoder's packed weights, read once per generated token.
 *
 * Why: a decoded token of the [512, 8, 4096] bench model reads ~110 MB, at the memory's speed.
 * With 4 KiB pages the hardware prefetcher stops at every page and the TLB misses every 4 KiB;
 * sgemv over 112 MB of weights (20 matrices of 2736 × 512, 2 threads) measured 29.5–36 GB/s on
 * 4 KiB pages against 38.5–41.6 GB/s on huge pages here, in a one-off probe; docs/generation.md
 * gives what it changed for a decoded token.
 *
 * Where libc or `madvise` is missing, or THP is off, the array is an ordinary one: same values,
 * same results, only slower.
 *
 * @module
 */

const HUGE_PAGE = 2 * 1024 * 1024;
const MADV_HUGEPAGE = 14;

type Madvise = (at: Deno.PointerValue, bytes: bigint, advice: number) => number;

let madvise: Madvise | null | undefined;

function openMadvise(): Madvise | null {
  if (madvise !== undefined) return madvise;
  madvise = null;
  if (Deno.build.os !== "linux") return madvise;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
    });
    madvise = (at, bytes, advice) => libc.symbols.madvise(at, bytes, advice);
  } catch {
    // No glibc (musl, or FFI refused): ordinary pages.
  }
  return madvise;
}

/**
 * A zeroed Float32Array of `length` elements, starting on a 2 MiB boundary of a fresh
 * allocation and advised for huge pages, before any of its pages is touched.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hugePageFloats } from "./huge_pages.ts";
 * const a = hugePageFloats(1 << 20);
 * assert.equal(a.length, 1 << 20);
 * assert.equal(a[0], 0);
 * assert.equal(a.byteOffset % 4, 0);
 * ```
 */
export function hugePageFloats(length: number): Float32Array {
  const bytes = Math.max(1, length) * 4;
  const advise = bytes >= HUGE_PAGE ? openMadvise() : null;
  if (advise === null) return new Float32Array(length);
  const buffer = new ArrayBuffer(bytes + HUGE_PAGE);
  const base = Deno.UnsafePointer.of(buffer);
  if (base === null) return new Float32Array(length);
  const address = Deno.UnsafePointer.value(base);
  const skip = Number(
    (BigInt(HUGE_PAGE) - BigInt(address) % BigInt(HUGE_PAGE)) % BigInt(HUGE_PAGE),
  );
  const whole = Math.floor(bytes / HUGE_PAGE) * HUGE_PAGE;
  if (whole > 0) advise(Deno.UnsafePointer.offset(base, skip), BigInt(whole), MADV_HUGEPAGE);
  return new Float32Array(buffer, skip, length);
}
