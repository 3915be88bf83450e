/**
 * What the fused kernels touch of tfjs-backend-wasm 4.22's BackendWasm (pinned
 * in deno.json): the heap, the tensors' heap offsets and reference counts,
 * output allocation. Private to `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { type SimdKernels, simdKernels } from "./_simd.ts";
import type { JobName } from "./_parts.ts";
import { poolOf } from "./_pool.ts";
import { PARALLEL_FROM } from "../../base/mod.ts";

/** The parts of BackendWasm used here. */
export interface WasmBackendLike {
  readonly wasm: {
    readonly HEAPU8: Uint8Array;
    readonly asm: { readonly memory: WebAssembly.Memory };
  };
  readonly dataIdMap: {
    get(dataId: tf.DataId): { readonly memoryOffset: number; readonly refCount: number };
  };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: tf.DataId): boolean;
  incRef(dataId: tf.DataId): void;
}

/** A kernel's view of the backend. */
export interface Heap {
  readonly backend: WasmBackendLike;
  readonly simd: SimdKernels;
  /** Byte offset of a tensor's data (stable when the memory grows). */
  offset(t: tf.TensorInfo): number;
  /** A new uninitialised float32 tensor. */
  alloc(shape: number[]): tf.TensorInfo;
  /**
   * Scratch of `floats` floats inside one kernel: counted by the buffer ledger
   * (kernels/peak_memory.ts) until `free`, since tfjs never sees it as a tensor.
   */
  scratch(floats: number): tf.TensorInfo;
  /** Frees a tensor made by `alloc` that is not returned, or scratch. */
  free(t: tf.TensorInfo): void;
  /** Float32 view of the whole memory: take it after the last `alloc`. */
  f32(): Float32Array;
  /** Int32 view of the whole memory: take it after the last `alloc`. */
  i32(): Int32Array;
  /** The memory as bytes, after the last `alloc` (for sgemm). */
  bytes(): Uint8Array;
  /**
   * Runs a job of ./_parts.ts: over the kernel pool's threads when it touches `work`
   * elements or more ({@link PARALLEL_FROM}), on at most `maxParts`; returns the parts used.
   */
  run(job: JobName, args: readonly number[], work: number, maxParts?: number): number;
  /** Parts a job of `work` elements is cut into (at least 1), whichever threads are ready. */
  parts(work: number): number;
  /** Lets the jobs that multiply use the heap sgemm of ../blas named `library`. */
  attachBlas(library: string): void;
}

/** Releases of the scratch alive now, by buffer. */
const held = new Map<tf.DataId, () => void>();

/**
 * Told, as a kernel makes scratch, of the bytes held beyond tfjs's tensors while it lives: the
 * scratch and the outputs the kernel has made so far (tfjs tracks those only once the kernel
 * returns). Returns what to call when the scratch is freed.
 */
export type ScratchListener = (bytes: number) => () => void;

let listener: ScratchListener | undefined;

/** Sets who hears of kernel scratch (the buffer ledger, `kernels/peak_memory.ts`). */
export function listenToScratch(l: ScratchListener | undefined): void {
  listener = l;
}

/** The heap of the backend a kernel was called with. */
export function heapOf(backend: unknown): Heap {
  const b = backend as unknown as WasmBackendLike;
  const memory = b.wasm.asm.memory;
  // Bytes of the outputs this call has made and not freed (a heap serves one kernel call).
  let made = 0;
  return {
    backend: b,
    simd: simdKernels(memory),
    offset: (t) => b.dataIdMap.get(t.dataId).memoryOffset,
    alloc: (shape) => {
      made += 4 * sizeOf(shape);
      return b.makeOutput(shape, "float32");
    },
    scratch: (floats) => {
      const t = b.makeOutput([floats], "float32");
      held.set(t.dataId, listener?.(made + 4 * floats) ?? (() => {}));
      return t;
    },
    free: (t) => {
      b.disposeData(t.dataId);
      const release = held.get(t.dataId);
      if (release === undefined) made -= 4 * sizeOf(t.shape);
      else {
        release();
        held.delete(t.dataId);
      }
    },
    f32: () => new Float32Array(b.wasm.HEAPU8.buffer),
    i32: () => new Int32Array(b.wasm.HEAPU8.buffer),
    bytes: () => b.wasm.HEAPU8,
    run: (job, args, work, maxParts) =>
      poolOf(memory).run(job, args, work < PARALLEL_FROM ? 1 : maxParts),
    parts: (work) => work < PARALLEL_FROM ? 1 : poolOf(memory).parts(),
    attachBlas: (library) => poolOf(memory).attach(library),
  };
}

/** Elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
