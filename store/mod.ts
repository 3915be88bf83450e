/**
 * Checkpoint byte formats and crash-safe writes.
 *
 * - `safetensors`: encode/decode the safetensors format in memory (F32, F16, BF16, F64 and
 *   integer dtypes), strict validation with errors naming file and tensor.
 * - `safetensors_file`: a lazy reader (header first, one tensor on demand) and a streaming
 *   writer (layout fixed up front, tensors written in any order), both file-backed.
 * - `half`: exact F16/BF16 ⇄ F32 conversions (round to nearest even).
 * - `atomic`: atomic file and directory writes (temporary name, fsync, rename) and recovery.
 * - `dir_lock`: one writer per folder (an OS file lock, freed when its holder dies).
 * - `tfevents`: TensorBoard's event files (TFRecord framing, masked CRC-32C, scalar events).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSafetensors, encodeSafetensors } from "./mod.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F16", shape: [2], data: new Float32Array([1, 2]) } });
 * assert(bytes._tag === "Right" && decodeSafetensors(bytes.right, "w")._tag === "Right");
 * ```
 *
 * @module
 */
export * from "./atomic.ts";
export * from "./dir_lock.ts";
export * from "./half.ts";
export * from "./safetensors.ts";
export * from "./safetensors_file.ts";
export * from "./tensor_data.ts";
export * from "./tfevents.ts";
