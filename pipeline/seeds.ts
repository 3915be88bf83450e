/**
 * Every random stream of a run, named and derived from `training.seed` (no
 * hidden randomness: STYLE b13). Strides are distinct primes so that streams
 * of different stages start apart; their values are part of what makes a run
 * reproducible, so they never change.
 *
 * @module
 */

/** The stride between stages' adapter-initialisation seeds (the 10,000th prime). */
export const ADAPTER_SEED_STRIDE = 104_729;
/** The stride between stages' ReLoRA-restart seeds (the 1,000th prime); the step is added to it. */
export const RESTART_SEED_STRIDE = 7_919;
/** The built-in corpus is generated from its own stream, one past the run's seed. */
export const BUILTIN_CORPUS_SEED_OFFSET = 1;

/** The seeds a run draws from, all from one number. */
export interface RunSeeds {
  /** Stage 1's weights (each tensor's stream is further named by its parameter name). */
  readonly weights: number;
  /** The order of training windows (a fresh shuffle per epoch). */
  readonly dataOrder: number;
  /** The generated built-in corpus. */
  readonly builtinCorpus: number;
  /** Adapter A matrices attached at the start of stage `stage` (≥ 2). */
  adapters(stage: number): number;
  /** Adapter A matrices re-initialised by the ReLoRA restart at step `step` of stage `stage`. */
  restart(stage: number, step: number): number;
}

/**
 * The named seeds of a run with `training.seed` = `seed`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runSeeds } from "./seeds.ts";
 * const s = runSeeds(0);
 * assert(s.adapters(2) !== s.adapters(3) && s.restart(2, 5) !== s.restart(2, 6));
 * ```
 */
export function runSeeds(seed: number): RunSeeds {
  return {
    weights: seed,
    dataOrder: seed,
    builtinCorpus: seed + BUILTIN_CORPUS_SEED_OFFSET,
    adapters: (stage) => seed + ADAPTER_SEED_STRIDE * stage,
    restart: (stage, step) => seed + RESTART_SEED_STRIDE * stage + step,
  };
}
