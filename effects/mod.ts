/**
 * The effect implementations a run is wired from (the tfjs and torch engines, the data
 * stream, the run directory with its checkpoints, metrics and final model, the process's
 * resident memory; `wireRun` puts them together), and the commands built on them that need a
 * loaded model: evaluation, generation, MT-Bench answers and fine-tuning. `pipeline/` declares
 * the interfaces; this folder holds their real implementations (tests wire fakes).
 *
 * @module
 */
export * from "./tfjs_engine.ts";
export * from "./data_effect.ts";
export * from "./run_dir.ts";
export * from "./tensorboard_log.ts";
export * from "./env.ts";
export * from "./compare_backends.ts";
export * from "./process_memory.ts";
export * from "./machine_memory.ts";
export * from "./load_model.ts";
export * from "./evaluate.ts";
export * from "./finetune.ts";
export * from "./generate_text.ts";
export * from "./mt_bench.ts";
export * from "./run_tokenizer.ts";
// The torch engine's pieces a bench drives directly (bench/torch_engine_bench.ts).
export { createTorchEngine, type TorchEngineOptions } from "./torch_engine.ts";
export { findTorchPython, type TorchPython } from "./torch_launch.ts";
export { writeExchange } from "./torch_snapshot.ts";
