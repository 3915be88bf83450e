/**
 * Solving Eq. 3: HiGHS on the integer program, and an exhaustive reference
 * that enumerates every composition of L into K parts (used by tests and the
 * solver benchmark).
 *
 * Tie rule: among splits whose peak is equal to the byte, both solvers return
 * the lexicographically largest one — n_1 as large as possible, then n_2, and
 * so on. Earlier stages then train more layers at full rank and fewer layers
 * sit frozen behind adapters; the rule is deterministic and independent of the
 * solver's search order.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ext, type PlanInfeasible, planInfeasible } from "../base/mod.ts";
import { byteUnit, layerVariable, splitProgram, toLpFormat } from "./integer_program.ts";
import { type MemoryProblem, peakBytes } from "./memory_model.ts";

/** The tie rule, stated for reports. */
export const TIE_RULE =
  "equal peaks (to the byte) are broken towards the lexicographically largest split: n_1 as large as possible, then n_2, ...";

/**
 * Which solver produced a split: `highs` (the integer program), `exhaustive` (the reference),
 * `given` (the user's split, evaluated), `forced` (only one split is possible: one stage, or
 * every stage at its minimum; no solver ran).
 */
export type SolverName = "highs" | "exhaustive" | "given" | "forced";

/** An optimal (or given) split and its peak. */
export interface SplitSolution {
  /** Layers added by each stage, n_1 … n_K. */
  readonly split: readonly number[];
  /** The split's peak: the largest stage's bytes. */
  readonly peakBytes: number;
  /** Who produced the split. */
  readonly solver: SolverName;
}

/** What to solve for. */
export interface SplitQuery {
  /** Number of stages K. */
  readonly stages: number;
  /** Smallest number of layers a stage may add. */
  readonly minLayers: number;
}

/** The part of HiGHS's one-shot API this module uses. */
export interface HighsSolver {
  /**
   * Solves a program in CPLEX LP text; `Status` is `"Optimal"` on success, `Columns` the values.
   */
  solve(problem: string, options?: Record<string, unknown>): {
    readonly Status: string;
    readonly Columns: Readonly<Record<string, { readonly Primal: number }>>;
  };
}

// Exact MIP: a relative gap of 1e-4 (HiGHS's default) could stop thousands of bytes short.
const HIGHS_OPTIONS = {
  mip_rel_gap: 0,
  mip_abs_gap: 1e-9,
  output_flag: false,
  presolve: "on",
} as const;

/** Checks that K stages of at least `minLayers` layers can make L layers. */
export function checkQuery(
  problem: MemoryProblem,
  q: SplitQuery,
): ext.Either<PlanInfeasible, void> {
  const L = problem.shape.layers;
  if (q.stages < 1 || q.stages > L) {
    return E.left(planInfeasible(`stages must be between 1 and L = ${L}, got ${q.stages}`));
  }
  if (q.stages * q.minLayers > L) {
    return E.left(planInfeasible(
      `${q.stages} stages of at least ${q.minLayers} layers need ${
        q.stages * q.minLayers
      } layers, the model has ${L}`,
    ));
  }
  return E.right(undefined);
}

/** Solves Eq. 3 with HiGHS, then applies the tie rule with K − 1 further solves. */
export function solveWithHighs(
  highs: HighsSolver,
  problem: MemoryProblem,
  q: SplitQuery,
): ext.Either<PlanInfeasible, SplitSolution> {
  const checked = checkQuery(problem, q);
  if (E.isLeft(checked)) return checked;
  const forced = forcedSplit(problem.shape.layers, q);
  if (forced !== undefined) {
    return E.right({ split: forced, peakBytes: peakBytes(problem, forced), solver: "forced" });
  }
  const unit = byteUnit(problem, q.stages);
  const base = splitProgram(problem, { stages: q.stages, minLayers: q.minLayers, unit });
  const first = runHighs(highs, toLpFormat(base), q.stages);
  if (E.isLeft(first)) return first;
  const peak = peakBytes(problem, first.right);
  // Lexicographic tie-break: fix n_1..n_{k−1}, cap every stage at the exact peak, maximise n_k.
  const fixed: number[] = [];
  for (let k = 1; k < q.stages; k++) {
    const ip = {
      ...base,
      sense: "maximize" as const,
      objective: [{ variable: layerVariable(k), coef: 1 }],
      variables: base.variables.map((v) => {
        if (v.name === "t") return { ...v, upper: peak / unit };
        const idx = Number(v.name.slice(1));
        const value = fixed[idx - 1];
        return value === undefined ? v : { ...v, lower: value, upper: value };
      }),
    };
    const next = runHighs(highs, toLpFormat(ip), q.stages);
    // The first solution is feasible for this program, so failure means a solver fault.
    if (E.isLeft(next)) return next;
    const nk = next.right[k - 1];
    if (nk === undefined) return E.left(planInfeasible(`HiGHS returned no value for n${k}`));
    fixed.push(nk);
  }
  const split = [...fixed, problem.shape.layers - fixed.reduce((a, b) => a + b, 0)];
  return E.right({ split, peakBytes: peakBytes(problem, split), solver: "highs" });
}

// One stage, or every stage at the minimum: only one split exists.
function forcedSplit(layers: number, q: SplitQuery): number[] | undefined {
  if (q.stages === 1) return [layers];
  if (q.stages * q.minLayers === layers) return Array.from({ length: q.stages }, () => q.minLayers);
  return undefined;
}

function runHighs(
  highs: HighsSolver,
  lp: string,
  stages: number,
): ext.Either<PlanInfeasible, number[]> {
  let result;
  try {
    result = highs.solve(lp, HIGHS_OPTIONS);
  } catch (e) {
    return E.left(planInfeasible(`HiGHS failed: ${e instanceof Error ? e.message : String(e)}`));
  }
  if (result.Status !== "Optimal") {
    return E.left(planInfeasible(`HiGHS reports "${result.Status}"`));
  }
  const split: number[] = [];
  for (let i = 1; i <= stages; i++) {
    const col = result.Columns[layerVariable(i)];
    if (col === undefined) return E.left(planInfeasible(`HiGHS returned no column n${i}`));
    split.push(Math.round(col.Primal));
  }
  return E.right(split);
}

/** Number of compositions of L into K parts of at least `min`: C(L − K·min + K − 1, K − 1). */
export function compositionCount(layers: number, q: SplitQuery): number {
  const free = layers - q.stages * q.minLayers;
  if (free < 0) return 0;
  let c = 1;
  for (let i = 1; i < q.stages; i++) c = (c * (free + i)) / i;
  return Math.round(c);
}

/**
 * Enumerates every split, in lexicographically decreasing order, and keeps the
 * first with the smallest peak — the tie rule by construction.
 */
export function solveExhaustive(
  problem: MemoryProblem,
  q: SplitQuery,
): ext.Either<PlanInfeasible, SplitSolution> {
  const checked = checkQuery(problem, q);
  if (E.isLeft(checked)) return checked;
  const L = problem.shape.layers;
  let best: { split: number[]; peak: number } | undefined;
  const current: number[] = [];
  const visit = (remaining: number, stagesLeft: number): void => {
    if (stagesLeft === 1) {
      current.push(remaining);
      const peak = peakBytes(problem, current);
      if (best === undefined || peak < best.peak) best = { split: [...current], peak };
      current.pop();
      return;
    }
    const most = remaining - (stagesLeft - 1) * q.minLayers;
    for (let n = most; n >= q.minLayers; n--) {
      current.push(n);
      visit(remaining - n, stagesLeft - 1);
      current.pop();
    }
  };
  visit(L, q.stages);
  if (best === undefined) return E.left(planInfeasible("no split exists"));
  return E.right({ split: best.split, peakBytes: best.peak, solver: "exhaustive" });
}
