/**
 * STEP: staged parameter-efficient pre-training, planned and run.
 *
 * The root entry holds everything that needs no tensors (planning, configs,
 * stage graphs, charts). Tensor code is a second entry, `./kernels/mod.ts`, so
 * planning never loads TensorFlow.js.
 *
 * @example
 * ```ts
 * import { completeShape, PAPER_ASSUMPTIONS, PROJECTIONS, peakBytes } from "./mod.ts";
 * const shape = completeShape({ hidden: 1536, intermediate: 4096, heads: 12, layers: 24, vocab: 50257 } as never);
 * const problem = { shape, adapter: { rank: 128, targets: PROJECTIONS }, assumptions: PAPER_ASSUMPTIONS };
 * console.log(peakBytes(problem, [14, 10]) / 1e9); // ≈ 6.34
 * ```
 *
 * Signatures name the io-ts and fp-ts types they use through `ext` (`ext.Type`, `ext.TypeOf`,
 * `ext.Either`, `ext.TaskEither`): the types of those packages, documented there.
 *
 * @module
 */
export * from "./base/mod.ts";
export * from "./solvers/mod.ts";
export * from "./pipeline/mod.ts";
export * from "./charts/mod.ts";
export * from "./data/mod.ts";
export * from "./store/mod.ts";
export * from "./checkpoint/mod.ts";
export * from "./evals/mod.ts";
export * from "./report/mod.ts";
