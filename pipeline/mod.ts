/**
 * The pure core of a run: configs, stage graphs and their validation, plan → graph, the
 * predictions and compute of a graph, the effect interfaces, the interpreter and its training
 * fold, the records of `metrics.jsonl`, and fine-tuning's settings, plan and graph. Nothing here
 * touches tensors: the engines behind the interfaces are `effects/`'s.
 *
 * @module
 */
export * from "./config.ts";
export * from "./stage_graph.ts";
export * from "./validate_graph.ts";
export * from "./plan_to_graph.ts";
export * from "./plan_modules.ts";
export * from "./predict.ts";
export * from "./memory_fit.ts";
export * from "./effects.ts";
export * from "./step_hyper.ts";
export * from "./interpreter.ts";
export * from "./run_state.ts";
export * from "./metrics_records.ts";
export * from "./metric_scalars.ts";
export * from "./seeds.ts";
export * from "./schedule.ts";
export * from "./graph_flops.ts";
export * from "./run_flops.ts";
export * from "./compare_plan.ts";
export * from "./finetune_plan.ts";
export * from "./finetune_settings.ts";
export * from "./finetune_graph.ts";
export * from "./finetune_run.ts";
export * from "./finetune_summary.ts";
export * from "./torch_settings.ts";
export { firstNonFinite } from "./run_steps.ts";
export { STEPS_AHEAD } from "./train_stage.ts";
// What a kind of run writes and prints as the training fold runs it.
export type { ProgressAt, RunVoice, StepAt } from "./run_voice.ts";
export * from "./model_account.ts";
