/**
 * `deno task serve`'s dashboard: a local HTTP server that reads run directories and comparison
 * folders (never writing them) and a plain page that draws them, live while a run trains.
 *
 * @module
 */
export * from "./dashboard_server.ts";
export type { RunStatus, StatusView } from "./run_status.ts";
