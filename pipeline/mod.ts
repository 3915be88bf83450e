/**
 * Configs, stage graphs and their validation, plan reports: pure data and
 * functions that never touch tensors.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./codec.ts";
export * from "./config.ts";
export * from "./stage_graph.ts";
export * from "./validate_graph.ts";
export * from "./plan_to_graph.ts";
export * from "./plan_report.ts";
