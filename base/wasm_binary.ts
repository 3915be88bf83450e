/**
 * Reading and writing the integers and sections of a WebAssembly binary: what the
 * project's own assembler emits, what the machine's memory limits are read from, and
 * what the wasm backend's heap is rewritten with.
 *
 * @module
 */

/** Bytes in a page of WebAssembly memory. */
export const WASM_PAGE_BYTES = 65536;

/** wasm32's largest memory, in pages (4 GiB): what a shared memory declares as its maximum. */
export const WASM32_PAGES = 65536;

/** The magic number and version 1 that begin every wasm binary. */
export const WASM_HEADER: readonly number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/**
 * Unsigned LEB128 of a whole number ≥ 0 (exact up to 2^53).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readUleb128, uleb128 } from "./wasm_binary.ts";
 * assert.deepEqual(uleb128(624485), [0xe5, 0x8e, 0x26]);
 * assert.deepEqual(readUleb128(new Uint8Array([0xe5, 0x8e, 0x26]), 0), [624485, 3]);
 * ```
 */
export function uleb128(n: number): number[] {
  const out: number[] = [];
  let rest = n;
  do {
    let b = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) b |= 0x80;
    out.push(b);
  } while (rest > 0);
  return out;
}

/**
 * Reads an unsigned LEB128 at `at`: the value and the offset after it.
 *
 * @throws {RangeError} when the number runs past the end of `bytes`.
 */
export function readUleb128(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = at; i < bytes.length; i++) {
    const b = bytes[i]!;
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return [value, i + 1];
  }
  throw new RangeError("truncated LEB128");
}

/** One section of a wasm binary: its id and its contents (a view of the binary). */
export interface WasmSection {
  /** The section id: 2 imports, 5 memory, 7 exports, 10 code, … */
  readonly id: number;
  /** The section's contents, after its id and size. */
  readonly body: Uint8Array;
}

/**
 * The sections of a version-1 wasm binary, in order; undefined when the bytes do not start
 * like one.
 *
 * @throws {RangeError} when a section runs past the end of the binary.
 */
export function wasmSections(binary: Uint8Array): WasmSection[] | undefined {
  if (binary.length < 8 || WASM_HEADER.some((b, i) => binary[i] !== b)) return undefined;
  const sections: WasmSection[] = [];
  for (let at = 8; at < binary.length;) {
    const id = binary[at]!;
    const [size, start] = readUleb128(binary, at + 1);
    if (start + size > binary.length) throw new RangeError(`wasm section ${id} is truncated`);
    sections.push({ id, body: binary.subarray(start, start + size) });
    at = start + size;
  }
  return sections;
}
