/**
 * A model's whole training state as host-side plain data: what an engine's `snapshot` gives,
 * what its `load` takes, what a checkpoint stores and what STEP's surgery (`surgery.ts`)
 * transforms. No engine is needed to read or build one.
 *
 * @module
 */
import type { SnapshotMeta } from "./run_layout.ts";

/** A named float32 tensor as plain data, in our layout (linear weights [in, out]). */
export interface NamedArray {
  /** Hugging Face's name (`m/…`, `v/…`, `galore/…` for optimizer state). */
  readonly name: string;
  /** Dimensions, row-major. */
  readonly shape: readonly number[];
  /** The values, as many as the shape's product. */
  readonly data: Float32Array;
}

/** An engine's state as plain data: enough to load it again exactly. */
export interface EngineSnapshot {
  /** Weights and adapters. */
  readonly params: readonly NamedArray[];
  /** Adam's moments (`m/<name>`, `v/<name>`) and GaLore's projectors (`galore/<name>`). */
  readonly moments: readonly NamedArray[];
  /** Trainable set, adapter scale, optimizer step (and GaLore's settings when it runs). */
  readonly meta: SnapshotMeta;
}

/** Bytes the snapshot's arrays hold (what a copy through host memory costs). */
export function snapshotBytes(s: EngineSnapshot): number {
  let bytes = 0;
  for (const a of [...s.params, ...s.moments]) bytes += a.data.byteLength;
  return bytes;
}
