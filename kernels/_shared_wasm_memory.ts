/**
 * Puts tfjs-backend-wasm's heap on a shared WebAssembly memory, so that the
 * fused kernels' worker threads (./fused/_pool.ts) can work on the tensors in
 * place. Private to `kernels/`.
 *
 * The single-threaded SIMD build defines its own (unshared) memory; tfjs's
 * threaded build, which imports a shared one, needs emscripten's pthread
 * workers, which Deno cannot start. So the binary is rewritten as it is
 * instantiated: its memory section becomes an import of a shared memory with
 * the same initial size and wasm32's maximum, created here. Nothing else in
 * the module changes (memory imports take no function indices, the export of
 * memory 0 stays valid), and the emscripten glue grows the memory and renews
 * its views as before.
 *
 * @module
 */
import { readUleb128, uleb128, WASM32_PAGES, wasmSections } from "../base/mod.ts";

/** The import the rewritten module asks for. */
export const SHARED_MEMORY_IMPORT = { module: "step", field: "memory" } as const;

function name(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [...uleb128(bytes.length), ...bytes];
}

function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A module rewritten by {@link importSharedMemory}. */
export interface SharedMemoryModule {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The memory's initial size in pages, as the original defined it. */
  readonly initialPages: number;
}

/**
 * Rewrites a wasm binary whose one memory is defined inside it into one that
 * imports a shared memory ({@link SHARED_MEMORY_IMPORT}) of the same initial
 * size and wasm32's maximum.
 *
 * @throws {Error} when the binary is not wasm, has no import section, or does
 * not define exactly one unshared memory.
 */
export function importSharedMemory(binary: Uint8Array): SharedMemoryModule {
  let sections;
  try {
    sections = wasmSections(binary);
  } catch (e: unknown) {
    throw new Error(`wasm rewrite: ${e instanceof Error ? e.message : e}`);
  }
  if (sections === undefined) throw new Error("wasm rewrite: not a version-1 wasm binary");
  const memory = sections.filter((s) => s.id === 5);
  if (memory.length !== 1) throw new Error("wasm rewrite: no memory section to share");
  const body = memory[0]!.body;
  const [count, flagsAt] = readUleb128(body, 0);
  if (count !== 1) throw new Error(`wasm rewrite: ${count} memories, expected one`);
  const flags = body[flagsAt]!;
  if ((flags & 0x02) !== 0) throw new Error("wasm rewrite: the memory is shared already");
  const [initialPages] = readUleb128(body, flagsAt + 1);
  if (!sections.some((s) => s.id === 2)) throw new Error("wasm rewrite: no import section");
  const memoryImport = [
    ...name(SHARED_MEMORY_IMPORT.module),
    ...name(SHARED_MEMORY_IMPORT.field),
    0x02, // memory
    0x03, // shared, with a maximum
    ...uleb128(initialPages),
    ...uleb128(WASM32_PAGES),
  ];
  const out: Uint8Array[] = [binary.subarray(0, 8)];
  for (const s of sections) {
    if (s.id === 5) continue;
    let content = s.body;
    if (s.id === 2) {
      const [imports, rest] = readUleb128(s.body, 0);
      content = concat([
        new Uint8Array(uleb128(imports + 1)),
        s.body.subarray(rest),
        new Uint8Array(memoryImport),
      ]);
    }
    out.push(new Uint8Array([s.id, ...uleb128(content.length)]), content);
  }
  return { bytes: concat(out), initialPages };
}

function rewritable(bytes: Uint8Array): SharedMemoryModule | undefined {
  try {
    return importSharedMemory(bytes);
  } catch {
    return undefined;
  }
}

type Instantiate = typeof WebAssembly.instantiate;

/**
 * Runs `start` (which instantiates tfjs-backend-wasm) with `WebAssembly.instantiate`
 * wrapped: a binary that defines its own memory is instantiated rewritten, on a new
 * shared memory. Restored afterwards. Returns what `start` returns; whether the heap
 * is shared is read from it (`memory.buffer instanceof SharedArrayBuffer`).
 */
export async function withSharedWasmMemory<T>(start: () => Promise<T>): Promise<T> {
  const original: Instantiate = WebAssembly.instantiate;
  const wrapped = (source: unknown, imports?: WebAssembly.Imports): Promise<unknown> => {
    const bytes = source instanceof ArrayBuffer
      ? new Uint8Array(source)
      : ArrayBuffer.isView(source) && source.buffer instanceof ArrayBuffer
      ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
      : undefined;
    const rewritten = bytes === undefined ? undefined : rewritable(bytes);
    if (rewritten === undefined) {
      return (original as (s: unknown, i?: WebAssembly.Imports) => Promise<unknown>)(
        source,
        imports,
      );
    }
    const memory = new WebAssembly.Memory({
      initial: rewritten.initialPages,
      maximum: WASM32_PAGES,
      shared: true,
    });
    return original(rewritten.bytes, {
      ...imports,
      [SHARED_MEMORY_IMPORT.module]: { [SHARED_MEMORY_IMPORT.field]: memory },
    });
  };
  WebAssembly.instantiate = wrapped as Instantiate;
  try {
    return await start();
  } finally {
    WebAssembly.instantiate = original;
  }
}
