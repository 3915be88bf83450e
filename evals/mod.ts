/**
 * Evaluation as data, tensor-free: task definitions (lm-evaluation-harness's conventions),
 * readers for the benchmark formats, items and token-level requests, rolling windows, and the
 * metrics. The scoring itself is `kernels/scoring.ts`; `effects/evaluate.ts` joins the two.
 *
 * @module
 */
export * from "./task_def.ts";
export * from "./task_records.ts";
export * from "./task_items.ts";
export * from "./requests.ts";
export * from "./metrics.ts";
export * from "./builtin_tasks.ts";
export * from "./task_file.ts";
