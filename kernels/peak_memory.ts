/**
 * The memory the tensor engine really holds, read from tfjs itself while
 * work runs: the high-water mark of the bytes of distinct tensor buffers
 * (tfjs's `tf.memory().numBytes` counts a buffer once per tensor that views
 * it — every clone the gradient tape saves, every reshape — so it overstates
 * what is held; the buffers themselves are what the backend allocates), the
 * wasm heap's size, and on webgpu the GPU buffers in use.
 *
 * A ledger wraps the engine's bookkeeping calls (`trackTensor`,
 * `removeDataId`) once: the peak falls inside a kernel sequence no caller
 * can sample, so every tracker reads the running high-water mark. The fused
 * wasm kernels' scratch, which tfjs never sees as a tensor, is reported to it
 * while it lives.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { trackGpuPeak } from "./webgpu/gpu_peak.ts";
import { listenToScratch } from "./fused/mod.ts";

/** The part of tfjs's engine the ledger reads and wraps. */
interface EngineLike {
  state: {
    numBytes: number;
    tensorInfo: WeakMap<object, { bytes: number; backend: unknown }>;
  };
  trackTensor: (a: { dataId: object }, backend: unknown) => void;
  removeDataId: (dataId: object, backend: unknown) => void;
}

/** Bytes of every distinct tensor buffer the engine holds, kept from the first tracker on. */
interface Ledger {
  held: number;
  readonly sizes: Map<object, number>;
  /** Running high-water marks (one per active tracker). */
  readonly marks: Set<{ peak: number; countPeak: number }>;
}

let ledger: Ledger | undefined;

/**
 * Installs the ledger on the engine once. tfjs keeps its per-buffer records in a WeakMap that
 * cannot be summed, so the ledger mirrors them from here on; buffers made before it are not
 * counted (the engine calls this when its backend starts, before any model exists).
 */
export function installBufferLedger(): void {
  if (ledger !== undefined) return;
  const engine = tf.engine() as unknown as EngineLike;
  const l: Ledger = { held: 0, sizes: new Map(), marks: new Set() };
  const { trackTensor, removeDataId } = engine;
  engine.trackTensor = function (a, backend) {
    const fresh = !l.sizes.has(a.dataId);
    trackTensor.call(engine, a, backend);
    if (fresh) {
      const bytes = engine.state.tensorInfo.get(a.dataId)?.bytes ?? 0;
      l.sizes.set(a.dataId, bytes);
      l.held += bytes;
    }
    for (const m of l.marks) {
      m.peak = Math.max(m.peak, l.held);
      m.countPeak = Math.max(m.countPeak, engine.state.numBytes);
    }
  };
  engine.removeDataId = function (dataId, backend) {
    removeDataId.call(engine, dataId, backend);
    const bytes = l.sizes.get(dataId);
    if (bytes !== undefined && !engine.state.tensorInfo.has(dataId)) {
      l.sizes.delete(dataId);
      l.held -= bytes;
    }
  };
  ledger = l;
  listenToScratch((bytes) => holdScratch(l, bytes));
}

/**
 * Counts `bytes` that a kernel allocates outside tfjs's tensors (its scratch) as held until the
 * returned release runs, so every tracker's peak sees them.
 */
function holdScratch(l: Ledger, bytes: number): () => void {
  l.held += bytes;
  for (const m of l.marks) m.peak = Math.max(m.peak, l.held);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    l.held -= bytes;
  };
}

/** A running measurement of the engine's buffers. */
export interface BufferPeakTracker {
  /** Most bytes of distinct tensor buffers alive at once since the tracker started. */
  peak(): number;
  /** Bytes of distinct tensor buffers alive now. */
  current(): number;
  /** Most bytes tfjs's own per-tensor count (`tf.memory().numBytes`) reached, for comparison. */
  tensorCountPeak(): number;
  /** Ends the measurement. */
  stop(): void;
}

/**
 * Starts tracking the high-water mark of the bytes held in distinct tensor buffers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs-core";
 * import { trackBufferPeak } from "./peak_memory.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const t = trackBufferPeak();
 * const x = tf.zeros([256, 256]); // 256 KiB
 * const view = tf.reshape(x, [65536]); // the same buffer: not counted again
 * tf.dispose([x, view]);
 * t.stop();
 * assert(t.peak() - t.current() === 256 * 256 * 4);
 * ```
 */
export function trackBufferPeak(): BufferPeakTracker {
  installBufferLedger();
  const l = ledger!;
  const mark = { peak: l.held, countPeak: tf.memory().numBytes };
  l.marks.add(mark);
  return {
    peak: () => mark.peak,
    current: () => l.held,
    tensorCountPeak: () => mark.countPeak,
    stop: () => void l.marks.delete(mark),
  };
}

/** Size of the wasm backend's linear memory (it only grows), or undefined on other backends. */
export function wasmHeapBytes(): number | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  return wasm?.HEAPU8?.buffer.byteLength;
}

/** What one stretch of work held at its peak. */
export interface MeasuredPeak {
  /** Most bytes of distinct tensor buffers alive at once. */
  readonly bufferBytes: number;
  /** tfjs's per-tensor count at its peak (views and saved clones counted again). */
  readonly tensorCountBytes: number;
  /** The wasm heap's size afterwards (wasm and auto). */
  readonly heapBytes?: number;
  /** Most GPU bytes in use (webgpu). */
  readonly gpuBytes?: number;
}

/**
 * Runs `work` and measures what the engine held at its peak meanwhile.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs-core";
 * import { measurePeak } from "./peak_memory.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("cpu");
 * const { value, peak } = await measurePeak(() => tf.tidy(() => tf.sum(tf.ones([1000]))));
 * assert(peak.bufferBytes >= 4000);
 * value.dispose();
 * ```
 */
export async function measurePeak<A>(
  work: () => A | Promise<A>,
): Promise<{ readonly value: A; readonly peak: MeasuredPeak }> {
  const gpu = tf.getBackend() === "webgpu" ? trackGpuPeak() : undefined;
  const buffers = trackBufferPeak();
  try {
    const value = await work();
    const heap = wasmHeapBytes();
    return {
      value,
      peak: {
        bufferBytes: buffers.peak(),
        tensorCountBytes: buffers.tensorCountPeak(),
        ...(heap === undefined ? {} : { heapBytes: heap }),
        ...(gpu === undefined ? {} : { gpuBytes: gpu.peak() }),
      },
    };
  } finally {
    buffers.stop();
    gpu?.stop();
  }
}
