/**
 * The most GPU bytes in use over a stretch of work on the webgpu backend.
 * tfjs-backend-webgpu counts the bytes of the buffers it hands out as they
 * are acquired and released but keeps no maximum, and the peak (inside the
 * backward pass) is not a moment a caller can sample, so the tracker wraps
 * the buffer manager's `acquireBuffer` while it runs.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/** The part of tfjs-backend-webgpu's buffer manager the tracker reads. */
interface BufferManagerLike {
  numBytesUsed: number;
  numBytesAllocated: number;
  acquireBuffer: (...args: unknown[]) => unknown;
}

/** A running measurement; `stop` restores the buffer manager. */
export interface GpuPeakTracker {
  /** Most bytes in use since the tracker started. */
  peak(): number;
  /** Bytes tfjs holds now, its reuse pool included (never returned to the driver). */
  allocated(): number;
  stop(): void;
}

/**
 * Starts tracking the active webgpu backend's high-water mark.
 *
 * @throws {Error} when the active backend is not webgpu.
 * @example
 * ```ts
 * import { trackGpuPeak } from "./gpu_peak.ts";
 * import { initBackend } from "../backend.ts";
 * const got = await initBackend("webgpu");
 * if (got._tag === "Right") {
 *   const t = trackGpuPeak();
 *   t.stop();
 *   console.log(t.peak());
 * }
 * ```
 */
export function trackGpuPeak(): GpuPeakTracker {
  const manager = (tf.backend() as unknown as { bufferManager?: BufferManagerLike }).bufferManager;
  if (manager === undefined) throw new Error("trackGpuPeak: the active backend is not webgpu");
  const acquire = manager.acquireBuffer;
  let peak = manager.numBytesUsed;
  manager.acquireBuffer = (...args: unknown[]): unknown => {
    const buffer = acquire.apply(manager, args);
    peak = Math.max(peak, manager.numBytesUsed);
    return buffer;
  };
  return {
    peak: () => peak,
    allocated: () => manager.numBytesAllocated,
    stop: () => {
      manager.acquireBuffer = acquire;
    },
  };
}
