/**
 * What the fused kernels touch of tfjs-backend-wasm 4.22's BackendWasm (pinned
 * in deno.json): the heap, the tensors' heap offsets and reference counts,
 * output allocation. Private to `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { type SimdKernels, simdKernels } from "./_simd.ts";

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
  /** Frees a tensor made by `alloc` that is not returned. */
  free(t: tf.TensorInfo): void;
  /** Float32 view of the whole memory: take it after the last `alloc`. */
  f32(): Float32Array;
  /** Int32 view of the whole memory: take it after the last `alloc`. */
  i32(): Int32Array;
  /** The memory as bytes, after the last `alloc` (for sgemm). */
  bytes(): Uint8Array;
}

/** The heap of the backend a kernel was called with. */
export function heapOf(backend: unknown): Heap {
  const b = backend as unknown as WasmBackendLike;
  return {
    backend: b,
    simd: simdKernels(b.wasm.asm.memory),
    offset: (t) => b.dataIdMap.get(t.dataId).memoryOffset,
    alloc: (shape) => b.makeOutput(shape, "float32"),
    free: (t) => void b.disposeData(t.dataId),
    f32: () => new Float32Array(b.wasm.HEAPU8.buffer),
    i32: () => new Int32Array(b.wasm.HEAPU8.buffer),
    bytes: () => b.wasm.HEAPU8,
  };
}

/** Elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
