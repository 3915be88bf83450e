/**
 * The effect implementations a run is wired from: the tfjs engine, the data
 * stream, the run directory (checkpoints, metrics, final model) and the
 * clock. `pipeline/` declares the interfaces; this folder is the only one
 * that implements them.
 *
 * @module
 */
export * from "./tfjs_engine.ts";
export * from "./data_effect.ts";
export * from "./run_dir.ts";
export * from "./env.ts";
export * from "./compare_backends.ts";
export * from "./process_memory.ts";
export * from "./load_model.ts";
export * from "./evaluate.ts";
export * from "./finetune.ts";
export * from "./generate_text.ts";
export * from "./mt_bench.ts";
