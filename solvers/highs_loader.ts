/**
 * Loads HiGHS (WASM). The only door through which the solver's promise enters.
 *
 * @module
 */
import * as highsModule from "highs";
import type { HighsSolver } from "./split_solver.ts";

// The package's types describe its default export as the module itself under Deno's
// CommonJS interop; at run time `default` is the loader function.
type Loader = () => Promise<HighsSolver>;

/** Instantiates the HiGHS WASM module once per call. */
export function loadHighs(): Promise<HighsSolver> {
  const loader = (highsModule as unknown as { default: Loader }).default;
  return loader();
}
