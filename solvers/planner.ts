/**
 * The planner: from a memory problem and a mode (optimise K stages, evaluate a
 * given split, or find the fewest stages that fit a memory budget) to a plan
 * with per-stage memory, baselines and, optionally, FLOPs-matched budgets.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ext, formatBytes, type PlanInfeasible, planInfeasible } from "../base/mod.ts";
import { type Baselines, baselines, type GaloreSpec } from "./baselines.ts";
import { type BudgetSpec, type PlanBudget, planBudget } from "./compute_budget.ts";
import {
  type MemoryProblem,
  peakBytes,
  stageLinearForms,
  stageMemories,
  type StageMemory,
  standardBytes,
} from "./memory_model.ts";
import {
  checkQuery,
  type HighsSolver,
  type SolverName,
  solveWithHighs,
  type SplitSolution,
  TIE_RULE,
} from "./split_solver.ts";

/** What the planner is asked. */
export type PlanMode =
  | { readonly kind: "optimal"; readonly stages: number }
  | { readonly kind: "split"; readonly split: readonly number[] }
  | { readonly kind: "budget"; readonly bytes: number };

/** A planning request. */
export interface PlanRequest {
  /** The model, its adapters and what the memory model counts. */
  readonly problem: MemoryProblem;
  /** GaLore's settings, for the baseline it is compared with. */
  readonly galore: GaloreSpec;
  /** Smallest number of layers a stage may add. */
  readonly minLayers: number;
  /** Optimise a number of stages, evaluate a given split, or fit a memory budget. */
  readonly mode: PlanMode;
  /** FLOPs budget, when tokens and steps per stage are wanted. */
  readonly budget?: BudgetSpec;
}

/** One step of the budget search: K stages and their best peak. */
export interface BudgetProbe {
  /** Number of stages K tried. */
  readonly stages: number;
  /** Peak of the best split with K stages, in bytes. */
  readonly peakBytes: number;
  /** That split: layers added by each stage. */
  readonly split: readonly number[];
}

/** A plan: the split, memory of every stage, baselines. */
export interface Plan {
  /** The mode the plan was asked for. */
  readonly mode: PlanMode;
  /** Layers added by each stage, n_1 … n_K, summing to L. */
  readonly split: readonly number[];
  /** Memory of each stage, term by term. */
  readonly stages: readonly StageMemory[];
  /** The largest stage's bytes: what the plan needs (Eq. 3's objective). */
  readonly peakBytes: number;
  /** Bytes of standard pre-training of the same model under the same assumptions. */
  readonly standardBytes: number;
  /** 1 − peak / standard. */
  readonly reduction: number;
  /** Standard, ReLoRA and GaLore memory of the same model. */
  readonly baselines: Baselines;
  /** Which solver found the split, and how ties were broken. */
  readonly solver: { readonly name: SolverName; readonly tieRule: string };
  /** Stages probed by the budget mode, in the order tried. */
  readonly budgetSearch?: readonly BudgetProbe[];
  /** Tokens and steps of each stage and baseline, when a FLOPs budget was asked for. */
  readonly budget?: PlanBudget;
}

/** Builds a plan, or says why none exists. */
export function makePlan(
  highs: HighsSolver,
  request: PlanRequest,
): ext.Either<PlanInfeasible, Plan> {
  const { problem, mode } = request;
  const solved = solveMode(highs, request);
  if (E.isLeft(solved)) return solved;
  const { solution, probes } = solved.right;
  const standard = standardBytes(problem);
  return E.right({
    mode,
    split: solution.split,
    stages: stageMemories(problem, solution.split),
    peakBytes: solution.peakBytes,
    standardBytes: standard,
    reduction: 1 - solution.peakBytes / standard,
    baselines: baselines(problem, request.galore),
    solver: { name: solution.solver, tieRule: TIE_RULE },
    ...(probes === undefined ? {} : { budgetSearch: probes }),
    ...(request.budget === undefined
      ? {}
      : { budget: planBudget(problem, solution.split, request.budget) }),
  });
}

interface Solved {
  readonly solution: SplitSolution;
  readonly probes?: readonly BudgetProbe[];
}

function solveMode(highs: HighsSolver, request: PlanRequest): ext.Either<PlanInfeasible, Solved> {
  const { problem, mode, minLayers } = request;
  switch (mode.kind) {
    case "optimal":
      return E.map((solution: SplitSolution) => ({ solution }))(
        solveWithHighs(highs, problem, { stages: mode.stages, minLayers }),
      );
    case "split":
      return E.map((solution: SplitSolution) => ({ solution }))(
        givenSplit(problem, mode.split, minLayers),
      );
    case "budget":
      return fewestStagesWithin(highs, problem, mode.bytes, minLayers);
  }
}

/** Evaluates a user-given split after checking it sums to L. */
export function givenSplit(
  problem: MemoryProblem,
  split: readonly number[],
  minLayers: number,
): ext.Either<PlanInfeasible, SplitSolution> {
  const L = problem.shape.layers;
  const sum = split.reduce((a, b) => a + b, 0);
  if (split.length === 0) return E.left(planInfeasible("the split is empty"));
  const bad = split.findIndex((n) => !Number.isInteger(n) || n < minLayers);
  if (bad >= 0) {
    return E.left(planInfeasible(
      `stage ${bad + 1} of the split adds ${
        split[bad]
      } layers; each stage must add an integer ≥ ${minLayers}`,
    ));
  }
  if (sum !== L) {
    return E.left(planInfeasible(
      `the split [${split.join(", ")}] adds up to ${sum} layers, the model has ${L}`,
    ));
  }
  return E.right({ split, peakBytes: peakBytes(problem, split), solver: "given" });
}

/**
 * True when adding a stage can never raise the optimal peak: an old layer
 * (frozen + adapters) costs no more than a new one, constants do not grow
 * with the stage index, and stages may add a single layer (any stage with two
 * or more layers can then be split in two without raising any stage).
 */
export function peakMonotoneInStages(problem: MemoryProblem, minLayers: number): boolean {
  if (minLayers !== 1) return false;
  const first = stageLinearForms(problem, 1);
  const later = stageLinearForms(problem, 2);
  return later.every((f, p) => f.perOld <= f.perNew && f.constant <= (first[p]?.constant ?? 0));
}

function fewestStagesWithin(
  highs: HighsSolver,
  problem: MemoryProblem,
  budget: number,
  minLayers: number,
): ext.Either<PlanInfeasible, Solved> {
  const maxStages = Math.floor(problem.shape.layers / minLayers);
  const probes: BudgetProbe[] = [];
  const probe = (K: number): ext.Either<PlanInfeasible, SplitSolution> => {
    const s = solveWithHighs(highs, problem, { stages: K, minLayers });
    if (E.isRight(s)) {
      probes.push({ stages: K, peakBytes: s.right.peakBytes, split: s.right.split });
    }
    return s;
  };
  const fits = (s: SplitSolution): boolean => s.peakBytes <= budget;
  const tooBig = (best: SplitSolution): PlanInfeasible =>
    planInfeasible(
      `no split fits ${formatBytes(budget)}: the smallest achievable peak is ${
        formatBytes(best.peakBytes)
      } with ${best.split.length} stages [${best.split.join(", ")}]`,
    );
  const checked = checkQuery(problem, { stages: 1, minLayers });
  if (E.isLeft(checked)) return checked;

  if (peakMonotoneInStages(problem, minLayers)) {
    // Peak is non-increasing in K: test the deepest staging, then bisect for the fewest stages.
    const deepest = probe(maxStages);
    if (E.isLeft(deepest)) return deepest;
    if (!fits(deepest.right)) return E.left(tooBig(deepest.right));
    let lo = 1;
    let hi = maxStages;
    let best = deepest.right;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const s = probe(mid);
      if (E.isLeft(s)) return s;
      if (fits(s.right)) {
        hi = mid;
        best = s.right;
      } else {
        lo = mid + 1;
      }
    }
    return E.right({ solution: best, probes });
  }
  let smallest: SplitSolution | undefined;
  for (let K = 1; K <= maxStages; K++) {
    const s = probe(K);
    if (E.isLeft(s)) return s;
    if (fits(s.right)) return E.right({ solution: s.right, probes });
    if (smallest === undefined || s.right.peakBytes < smallest.peakBytes) smallest = s.right;
  }
  return E.left(
    smallest === undefined ? planInfeasible("no stage count is possible") : tooBig(smallest),
  );
}
