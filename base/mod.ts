/**
 * The shared base every folder may use: errors as values, io-ts helpers, the
 * seeded generator, byte and count units, the branded numbers, the LLaMA
 * model shape and where growth puts new layers. Plain data and pure
 * functions; it imports nothing of this project's.
 *
 * - `errors`: `PipelineError`, the tagged failures a user sees, their text and exit codes.
 * - `codec`: strict object codecs, string enums, tagged unions and the decode-error reporter.
 * - `section`: settings sections, each field written once with its codec and default.
 * - `prng`: splitmix32, FNV-1a and seed derivation (no `Math.random` anywhere).
 * - `units`: `24GB` ⇄ bytes, human-readable sizes and counts.
 * - `brands`: `PositiveInt`, `Fraction`, … as io-ts brands.
 * - `llama_shape`: the model's dimensions and parameter counts.
 * - `growth_layout`: the layer layout of a grown model (placement → new layer positions).
 * - `wasm_binary`: LEB128 integers and the sections of a WebAssembly binary.
 * - `kernel_parts`: how the CPU engine's fused kernels cut their work, attention's scratch.
 * - `ext`: the io-ts and fp-ts types exported signatures name (`ext.Type`, `ext.Either`, …).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeShape, formatBytes, paramCounts } from "./mod.ts";
 * const shape = completeShape({ hidden: 64, intermediate: 176, heads: 4, layers: 4, vocab: 257 } as never);
 * assert(formatBytes(16 * paramCounts(shape).perLayer * shape.layers).endsWith("MB"));
 * ```
 *
 * @module
 */
export * from "./errors.ts";
export * from "./codec.ts";
export * from "./section.ts";
export * from "./prng.ts";
export * from "./units.ts";
export * from "./brands.ts";
export * from "./llama_shape.ts";
export * from "./growth_layout.ts";
export * from "./param_names.ts";
export * from "./stage_roles.ts";
export * from "./stats.ts";
export * from "./init_values.ts";
export * from "./wasm_binary.ts";
export * from "./kernel_parts.ts";
/**
 * The io-ts and fp-ts types that exported signatures name: `ext.Either` and `ext.TaskEither` are
 * fp-ts's, `ext.Type`, `ext.TypeOf` and the other codec types io-ts's, each documented by its
 * package.
 */
export type * as ext from "./external_types.ts";
