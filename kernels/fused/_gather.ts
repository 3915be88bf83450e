/**
 * GatherV2 along axis 0 for the wasm backend as row copies in wasm memory
 * (the embedding lookup). Measured here, the stock kernel took 45 ms for 2048
 * rows of 256 floats, about as long as the rest of the embedding's work in a
 * step; memmove of whole rows takes well under a millisecond. Other axes,
 * batch dims and dtypes go to the kernel it replaces. Private to
 * `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { type WasmBackendLike } from "./_wasm_backend.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** A GatherV2 kernel that falls back to `original`. */
export function rowGather(original: tf.KernelFunc): tf.KernelFunc {
  return function stepGatherRows(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
    const x = args.inputs["x"];
    const indices = args.inputs["indices"];
    const axis = args.attrs?.["axis"];
    const batchDims = args.attrs?.["batchDims"] ?? 0;
    if (
      x === undefined || indices === undefined || x.shape.length < 1 || axis !== 0 ||
      batchDims !== 0 || indices.dtype !== "int32" || (x.dtype !== "float32" && x.dtype !== "int32")
    ) {
      return original(args);
    }
    const b = args.backend as unknown as WasmBackendLike;
    const rows = x.shape[0]!;
    const inner = x.shape.slice(1).reduce((p, d) => p * d, 1);
    const count = indices.shape.reduce((p, d) => p * d, 1);
    const out = b.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    const heap = b.wasm.HEAPU8;
    const ids = new Int32Array(heap.buffer, b.dataIdMap.get(indices.dataId).memoryOffset, count);
    const src = b.dataIdMap.get(x.dataId).memoryOffset;
    const dst = b.dataIdMap.get(out.dataId).memoryOffset;
    const rowBytes = 4 * inner;
    for (let i = 0; i < count; i++) {
      const id = ids[i]!;
      if (!(id >= 0 && id < rows)) {
        b.disposeData(out.dataId);
        throw new Error(`gather: index ${id} is outside [0, ${rows})`);
      }
      heap.copyWithin(dst + i * rowBytes, src + id * rowBytes, src + (id + 1) * rowBytes);
    }
    return out;
  };
}
