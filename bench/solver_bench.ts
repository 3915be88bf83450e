/**
 * Solve time of Eq. 3 for L up to 96 and K up to 8: HiGHS against the
 * exhaustive reference (run only where it enumerates at most `maxCompositions`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { completeShape, median, PROJECTIONS } from "../base/mod.ts";
import {
  compositionCount,
  loadHighs,
  type MemoryProblem,
  PAPER_ASSUMPTIONS,
  solveExhaustive,
  solveWithHighs,
} from "../solvers/mod.ts";

/** One solver timing. */
export interface SolverBenchResult {
  readonly layers: number;
  readonly stages: number;
  readonly compositions: number;
  readonly highsMs: number;
  /** Undefined where enumeration was skipped as too large. */
  readonly exhaustiveMs: number | undefined;
  readonly split: readonly number[];
  readonly agree: boolean | undefined;
}

/** Options of {@link benchSolver}. */
export interface SolverBenchOptions {
  readonly layers?: readonly number[];
  readonly stages?: readonly number[];
  readonly maxCompositions?: number;
  readonly repeats?: number;
}

/** Times HiGHS and the exhaustive solver on the 1.2B layer shape at several depths. */
export async function benchSolver(opts: SolverBenchOptions = {}): Promise<SolverBenchResult[]> {
  const highs = await loadHighs();
  const results: SolverBenchResult[] = [];
  for (const L of opts.layers ?? [12, 24, 48, 96]) {
    const problem: MemoryProblem = {
      shape: completeShape(
        { hidden: 2048, intermediate: 5461, heads: 16, layers: L, vocab: 50257 } as never,
      ),
      adapter: { rank: 128, targets: PROJECTIONS },
      assumptions: PAPER_ASSUMPTIONS,
    };
    for (const K of opts.stages ?? [2, 4, 8]) {
      if (K > L) continue;
      const q = { stages: K, minLayers: 1 };
      const times: number[] = [];
      let split: readonly number[] = [];
      for (let r = 0; r < (opts.repeats ?? 3); r++) {
        const t0 = performance.now();
        const s = solveWithHighs(highs, problem, q);
        times.push(performance.now() - t0);
        if (E.isRight(s)) split = s.right.split;
      }
      const count = compositionCount(L, q);
      let exhaustiveMs: number | undefined;
      let agree: boolean | undefined;
      if (count <= (opts.maxCompositions ?? 200_000)) {
        const t0 = performance.now();
        const s = solveExhaustive(problem, q);
        exhaustiveMs = performance.now() - t0;
        agree = E.isRight(s) && s.right.split.join() === split.join();
      }
      results.push({
        layers: L,
        stages: K,
        compositions: count,
        highsMs: median(times),
        exhaustiveMs,
        split,
        agree,
      });
    }
  }
  return results;
}
