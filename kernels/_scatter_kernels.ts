/**
 * UnsortedSegmentSum as a linear scatter-add for the CPU-side backends.
 *
 * It is the gradient of `gather` (the embedding). tfjs-backend-wasm has no
 * such kernel, and tfjs-backend-cpu builds it from one mask per segment, which
 * costs vocab × tokens × hidden; a scatter-add costs tokens × hidden.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

type Values = Float32Array | Int32Array | Uint8Array;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** The parts of tfjs-backend-wasm's BackendWasm used here. */
interface WasmBackendLike {
  typedArrayFromHeap(t: tf.TensorInfo): Values;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

/** The parts of tfjs-backend-cpu's MathBackendCPU used here. */
interface CpuBackendLike {
  data: { get(dataId: tf.DataId): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Values): tf.TensorInfo;
}

/** Adds row i of `x` into row `ids[i]` of `out` (rows of `inner` elements). */
function scatterAdd(x: Values, ids: Values, out: Values, inner: number, numSegments: number): void {
  out.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    // Out-of-range ids are dropped, as TensorFlow's kernel does.
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j]! += x[src + j]!;
  }
}

interface SegmentArgs {
  x: tf.TensorInfo;
  ids: tf.TensorInfo;
  numSegments: number;
  outShape: number[];
  inner: number;
}

function segmentArgs(args: KernelArgs): SegmentArgs {
  const x = args.inputs["x"]!;
  const ids = args.inputs["segmentIds"]!;
  const numSegments = args.attrs!["numSegments"] as number;
  if (ids.shape.length !== 1 || x.shape[0] !== ids.shape[0]) {
    throw new Error(
      `UnsortedSegmentSum: segmentIds must be 1-D over the first axis of x; got x ` +
        `[${x.shape}] and segmentIds [${ids.shape}]`,
    );
  }
  const inner = tf.util.sizeFromShape(x.shape.slice(1));
  return { x, ids, numSegments, outShape: [numSegments, ...x.shape.slice(1)], inner };
}

function wasmSegmentSum(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike;
  const a = segmentArgs(args);
  const out = backend.makeOutput(a.outShape, a.x.dtype);
  scatterAdd(
    backend.typedArrayFromHeap(a.x),
    backend.typedArrayFromHeap(a.ids),
    backend.typedArrayFromHeap(out),
    a.inner,
    a.numSegments,
  );
  return out;
}

function cpuSegmentSum(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as CpuBackendLike;
  const a = segmentArgs(args);
  const xs = backend.data.get(a.x.dataId).values as Values;
  const ids = backend.data.get(a.ids.dataId).values as Values;
  const out = a.x.dtype === "int32"
    ? new Int32Array(a.numSegments * a.inner)
    : new Float32Array(a.numSegments * a.inner);
  scatterAdd(xs, ids, out, a.inner, a.numSegments);
  return backend.makeTensorInfo(a.outShape, a.x.dtype, out);
}

/** Installs the scatter-add UnsortedSegmentSum on `cpu` or `wasm`; idempotent. */
export function registerScatterKernels(backendName: "cpu" | "wasm"): void {
  const kernelFunc = backendName === "wasm" ? wasmSegmentSum : cpuSegmentSum;
  const current = tf.getKernel("UnsortedSegmentSum", backendName);
  if (current?.kernelFunc === kernelFunc) return;
  if (current !== undefined) tf.unregisterKernel("UnsortedSegmentSum", backendName);
  tf.registerKernel({
    kernelName: "UnsortedSegmentSum",
    backendName,
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
}
