/**
 * Planning without tensors: parameter counts, the memory model (Eq. 1–2 and
 * the terms beyond them), baselines, FLOPs budgets, Eq. 3 solved by HiGHS, and the
 * float64 SVD behind GaLore's projectors.
 *
 * @module
 */
export * from "./memory_model.ts";
export * from "./baselines.ts";
export * from "./compute_budget.ts";
export * from "./executed_flops.ts";
export * from "./integer_program.ts";
export * from "./split_solver.ts";
export * from "./highs_loader.ts";
export * from "./planner.ts";
export * from "./engine_memory.ts";
export * from "./svd.ts";
export * from "./fused_registries.ts";
export * from "./memory_fit.ts";
