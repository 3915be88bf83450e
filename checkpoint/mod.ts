/**
 * Checkpoints on disk, engine-free: Hugging Face LLaMA directories
 * (`config.json`, `model.safetensors` or shards with an index), PEFT LoRA
 * adapters, this project's `final/` and `checkpoint/` directories, and the
 * STEP transforms between stages (grow, attach, merge) on snapshots and,
 * tensor by tensor, on checkpoints. No TensorFlow.js: files in, files out.
 *
 * - `layout`: names and the [in, out] ⇄ [out, in] mapping.
 * - `hf_config`: our shape ⇄ `config.json`.
 * - `hf_checkpoint`: read and write HF directories (F32/F16/BF16, shards).
 * - `step_checkpoint`: read and write ours.
 * - `peft`: adapter_config.json + adapter_model.safetensors.
 * - `snapshot`: a model's training state as host-side arrays (what engines load and snapshot).
 * - `surgery`: STEP's operations on it, written once: initial model, grow, attach, merge, fresh
 *   moments.
 * - `transforms`: grow and merge on lazy views, tensor by tensor (`surgery`'s arithmetic).
 * - `checkpoint_dir`: open any format, save atomically.
 * - `output_path`: the rule every writing command applies to its outputs (never an input,
 *   never inside or above one, `--force` only where no input or live writer is).
 * - `run_layout`: the run directory's names and its checkpoint's `state.json`.
 *
 * @example
 * ```ts
 * import { openCheckpoint, writeCheckpoint } from "./mod.ts";
 * const opened = await openCheckpoint("runs/tiny/final")();
 * if (opened._tag === "Right") {
 *   await writeCheckpoint(opened.right.view, "out/hf", {
 *     format: "hf", dtype: "bfloat16", maxShardBytes: 5e9, adapters: "separate",
 *     baseModel: "out/hf", replace: false,
 *   })();
 *   opened.right.view.close();
 * }
 * ```
 *
 * @module
 */
export * from "./layout.ts";
export * from "./hf_config.ts";
export * from "./model_view.ts";
export * from "./hf_checkpoint.ts";
export * from "./step_checkpoint.ts";
export * from "./peft.ts";
export * from "./snapshot.ts";
export * from "./surgery.ts";
export * from "./transforms.ts";
export * from "./checkpoint_dir.ts";
export * from "./output_path.ts";
export * from "./run_layout.ts";
export * from "./tokenizer_record.ts";
export { exists } from "./_files.ts";
