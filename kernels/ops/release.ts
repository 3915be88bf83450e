/**
 * Releasing GPU buffers when tensors die. tfjs-backend-webgpu keeps the
 * buffer of a disposed tensor until the command batch that used it is
 * submitted (every 15 dispatches by default), so the buffers freed across a
 * batch pile up on top of the live ones. Submitting at the points where the
 * training step frees many at once (the end of a layer, of a backward node,
 * of a parameter's update) returns them at once; it costs a queue submission
 * only when something is waiting.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/** The parts of tfjs-backend-webgpu's backend this reads and calls. */
interface PendingGpuWork {
  tensorDataPendingDisposal?: unknown[];
  commandEncoder?: unknown;
  endComputePassEncoder?: () => void;
  submitQueue?: () => void;
}

/**
 * On webgpu, submits the pending commands when some disposed tensor still holds its buffer, so
 * that buffer goes back now; elsewhere nothing happens.
 *
 * @example
 * ```ts
 * import { releaseDisposedGpuBuffers } from "./release.ts";
 * releaseDisposedGpuBuffers(); // a no-op unless the active backend is webgpu
 * ```
 */
export function releaseDisposedGpuBuffers(): void {
  if (tf.getBackend() !== "webgpu") return;
  const b = tf.backend() as unknown as PendingGpuWork;
  if ((b.tensorDataPendingDisposal?.length ?? 0) === 0 || b.commandEncoder == null) return;
  b.endComputePassEncoder?.();
  b.submitQueue?.();
}
