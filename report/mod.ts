/**
 * How plans and runs are shown: tables for people, one JSON object for
 * programs, and SVG pictures (memory per stage, loss curves). Pure functions
 * of a plan or a run's result.
 *
 * @module
 */
export * from "./plan_report.ts";
export * from "./run_report.ts";
export * from "./compare_report.ts";
export * from "./eval_report.ts";
