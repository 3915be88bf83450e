/**
 * BatchMatMul for tfjs-backend-wasm that always lands on XNNPACK.
 *
 * The stock kernel uses XNNPACK only for an untransposed product with batch 1;
 * anything else (every matmul gradient, attention's batched products) falls
 * to a scalar loop measured here at about 1 GFLOP/s against 12-20 GFLOP/s.
 * This kernel transposes the flagged operand with the (fast, for the small
 * operands gradients transpose) Transpose kernel, folds a batch into rows when
 * the right operand is shared, and otherwise runs one batch-1 product per batch
 * entry on views into the operands' heap memory, writing straight into the
 * output, so no slice or concat copies are made.
 *
 * Tied to tfjs-backend-wasm 4.22.0's internals (its `BatchMatMul` C export and
 * tensor registry), which deno.json pins.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { PLAIN } from "./ops/flags.ts";

/** The parts of tfjs-backend-wasm's BackendWasm used here. */
interface WasmBackendLike {
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...xs: unknown[]) => void;
    tfjs: {
      registerTensor(id: number, size: number, offset: number): void;
      disposeData(id: number): void;
    };
  };
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: tf.DataId): { id: number; memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: tf.DataId): boolean;
}

type CMatMul = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: boolean,
  transposeB: boolean,
  outId: number,
) => void;

const cMatMuls = new WeakMap<object, CMatMul>();

function cMatMulOf(backend: WasmBackendLike): CMatMul {
  let f = cMatMuls.get(backend);
  if (f === undefined) {
    f = backend.wasm.cwrap("BatchMatMul", null, [
      "number",
      "array",
      "number",
      "number",
      "array",
      "number",
      "number",
      "number",
      "number",
    ]) as unknown as CMatMul;
    cMatMuls.set(backend, f);
  }
  return f;
}

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/** A tensor id over existing heap memory; released with `releaseView`, never freed. */
function view(backend: WasmBackendLike, offset: number, size: number): number {
  const id = backend.dataIdNextNumber++;
  backend.wasm.tfjs.registerTensor(id, size, offset);
  return id;
}

function releaseView(backend: WasmBackendLike, id: number): void {
  // Also drops XNNPACK's operator cached for this id (keyed by the B operand).
  backend.wasm.tfjs.disposeData(id);
}

function transposeLast2(x: tf.TensorInfo, backend: WasmBackendLike): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  const kernel = tf.getKernel("Transpose", "wasm")!;
  return kernel.kernelFunc({
    inputs: { x },
    backend: backend as unknown as tf.KernelBackend,
    attrs: { perm },
  }) as tf.TensorInfo;
}

function makeWasmMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return function wasmBatchMatMul(args): tf.TensorInfo {
    const backend = args.backend as unknown as WasmBackendLike;
    const a0 = args.inputs["a"]!;
    const b0 = args.inputs["b"]!;
    const transposeA = args.attrs!["transposeA"] as boolean;
    const transposeB = args.attrs!["transposeB"] as boolean;
    if (a0.dtype !== "float32" || b0.dtype !== "float32" || a0.shape.length < 2) {
      return original(args) as tf.TensorInfo;
    }
    const batchA = tf.util.sizeFromShape(a0.shape.slice(0, -2));
    const batchB = tf.util.sizeFromShape(b0.shape.slice(0, -2));
    if (batchA !== batchB && batchA !== 1 && batchB !== 1) return original(args) as tf.TensorInfo;
    const temps: tf.TensorInfo[] = [];
    const a = transposeA ? transposeLast2(a0, backend) : a0;
    const b = transposeB ? transposeLast2(b0, backend) : b0;
    if (transposeA) temps.push(a);
    if (transposeB) temps.push(b);
    const m = a.shape[a.shape.length - 2]!;
    const k = a.shape[a.shape.length - 1]!;
    const n = b.shape[b.shape.length - 1]!;
    if (b.shape[b.shape.length - 2] !== k) {
      throw new Error(`matMul: inner dimensions differ: a [${a0.shape}], b [${b0.shape}]`);
    }
    const outShape = [
      ...tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)),
      m,
      n,
    ];
    const out = backend.makeOutput(outShape, "float32");
    const cMatMul = cMatMulOf(backend);
    const aOff = backend.dataIdMap.get(a.dataId).memoryOffset;
    const bOff = backend.dataIdMap.get(b.dataId).memoryOffset;
    const oOff = backend.dataIdMap.get(out.dataId).memoryOffset;
    // A batch sharing one right operand is a single product with more rows.
    const [rows, steps] = batchB === 1 ? [batchA * m, 1] : [m, Math.max(batchA, batchB)];
    const aShape = shapeBytes([1, rows, k]);
    const bShape = shapeBytes([1, k, n]);
    for (let i = 0; i < steps; i++) {
      const ai = view(backend, aOff + 4 * (batchA === 1 ? 0 : i) * rows * k, rows * k);
      const bi = view(backend, bOff + 4 * (batchB === 1 ? 0 : i) * k * n, k * n);
      const oi = view(backend, oOff + 4 * i * rows * n, rows * n);
      cMatMul(ai, aShape, 3, bi, bShape, 3, PLAIN, PLAIN, oi);
      releaseView(backend, ai);
      releaseView(backend, bi);
      releaseView(backend, oi);
    }
    for (const t of temps) backend.disposeData(t.dataId);
    return out;
  };
}

const installed = new WeakSet<tf.KernelFunc>();

/** Replaces wasm's BatchMatMul with the XNNPACK-only one above; idempotent. */
export function registerWasmMatMul(): void {
  const current = tf.getKernel("BatchMatMul", "wasm");
  if (current === undefined || installed.has(current.kernelFunc)) return;
  const kernelFunc = makeWasmMatMul(current.kernelFunc);
  installed.add(kernelFunc);
  tf.unregisterKernel("BatchMatMul", "wasm");
  const config: tf.KernelConfig = { kernelName: "BatchMatMul", backendName: "wasm", kernelFunc };
  // The stock setup binds the C export inside tfjs; keep it for `original`.
  if (current.setupFunc !== undefined) config.setupFunc = current.setupFunc;
  tf.registerKernel(config);
}

function wasmIdentity(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const x = args.inputs["x"]!;
  (args.backend as unknown as { incRef(dataId: tf.DataId): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * Replaces wasm's Identity (a full copy) with a shared, reference-counted
 * view, as the cpu backend does. tfjs clones every tensor it saves for the
 * backward pass through Identity, so the stock kernel doubled activation
 * memory and spent time copying it. Tensor data is immutable, so sharing is
 * safe. Idempotent.
 */
export function registerWasmIdentity(): void {
  const current = tf.getKernel("Identity", "wasm");
  if (current?.kernelFunc === (wasmIdentity as unknown as tf.KernelFunc)) return;
  if (current !== undefined) tf.unregisterKernel("Identity", "wasm");
  tf.registerKernel({
    kernelName: "Identity",
    backendName: "wasm",
    kernelFunc: wasmIdentity as unknown as tf.KernelFunc,
  });
}
