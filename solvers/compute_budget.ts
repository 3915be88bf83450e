/**
 * FLOPs-matched token and step budgets (spec §4): every method of one model
 * size gets the same compute C. A training token costs 6·N FLOPs for N trained
 * parameters (2 forward, 4 backward) and 2·N for N frozen ones (forward only),
 * with N counting non-embedding parameters, as the paper does. Cheaper steps
 * buy STEP and ReLoRA more tokens; this is how the paper's Table 4 is built.
 *
 * @module
 */
import { adapterParamsPerLayer, paramCounts } from "../base/mod.ts";
import type { MemoryProblem } from "./memory_model.ts";

/** How the total compute is given. */
export type ComputeTotal =
  | { readonly kind: "flops"; readonly flops: number }
  /** Standard pre-training's step count; C = 6·N·steps·batchTokens. */
  | { readonly kind: "standardSteps"; readonly steps: number };

/**
 * How STEP's compute is shared between stages: `layers` gives stage i the
 * fraction n_i / L (so stage 1 runs exactly as many steps as standard
 * pre-training would), `equal` gives each stage 1/K, a list gives explicit
 * weights (normalised).
 */
export type StageShare = "layers" | "equal" | readonly number[];

/** Budget settings. */
export interface BudgetSpec {
  /** The compute C every method gets. */
  readonly total: ComputeTotal;
  /** Tokens per optimizer step (the batch). */
  readonly batchTokens: number;
  /** How STEP's share of C is divided between its stages. */
  readonly share: StageShare;
  /** Fraction of a stage's schedule after which it grows (0.75 in the paper). */
  readonly growAt: number;
}

/** Compute of one STEP stage. */
export interface StageBudget {
  /** 1-based stage index i. */
  readonly stage: number;
  /** 6·trainable + 2·frozen, per token. */
  readonly flopsPerToken: number;
  /** FLOPs this stage spends: its share of C. */
  readonly flops: number;
  /** Tokens it trains on: `flops / flopsPerToken` (not rounded). */
  readonly tokens: number;
  /** Optimizer steps this stage runs. */
  readonly steps: number;
  /**
   * Length of the stage's warmup + cosine schedule: a stage that grows stops
   * at `growAt` of its schedule, so its schedule is steps / growAt long; the
   * last stage runs its whole schedule.
   */
  readonly scheduleSteps: number;
}

/** Compute of one baseline method. */
export interface MethodBudget {
  /** FLOPs one training token costs: 6 per trained parameter, 2 per frozen one. */
  readonly flopsPerToken: number;
  /** Tokens C buys at that cost (not rounded). */
  readonly tokens: number;
  /** Optimizer steps: tokens / batchTokens, rounded, at least 1. */
  readonly steps: number;
}

/** The whole budget of a plan. */
export interface PlanBudget {
  /** The compute C every method gets, in FLOPs. */
  readonly flops: number;
  /** Tokens per optimizer step, the same for every method. */
  readonly batchTokens: number;
  /** STEP's stages, in order. */
  readonly stages: readonly StageBudget[];
  /** STEP as a whole: its stages' tokens and steps summed; its cost per token is C / tokens. */
  readonly stepTotal: MethodBudget;
  /** Standard pre-training: 6 FLOPs per parameter and token. */
  readonly standard: MethodBudget;
  /** ReLoRA after its full-rank warm start: all layers frozen, adapters everywhere. */
  readonly relora: MethodBudget;
  /** GaLore trains every weight: same cost per token as standard. */
  readonly galore: MethodBudget;
}

/** Per-token FLOPs of STEP's stage i: new layers and adapters trained, old layers frozen. */
export function stageFlopsPerToken(
  problem: MemoryProblem,
  split: readonly number[],
  stage: number,
): number {
  const P = paramCounts(problem.shape).perLayer;
  const E = adapterParamsPerLayer(problem.shape, problem.adapter.rank, problem.adapter.targets);
  const before = split.slice(0, stage - 1).reduce((a, b) => a + b, 0);
  const added = split[stage - 1] ?? 0;
  return 6 * (added * P + before * E) + 2 * before * P;
}

/** Each stage's weight under a share rule (not normalised). */
export function shareWeights(share: StageShare, split: readonly number[]): number[] {
  if (share === "layers") return split.map((n) => n);
  if (share === "equal") return split.map(() => 1);
  return [...share];
}

function method(flops: number, flopsPerToken: number, batchTokens: number): MethodBudget {
  const tokens = flops / flopsPerToken;
  return { flopsPerToken, tokens, steps: Math.max(1, Math.round(tokens / batchTokens)) };
}

/** Tokens and steps per STEP stage and per baseline, all at the same FLOPs. */
export function planBudget(
  problem: MemoryProblem,
  split: readonly number[],
  spec: BudgetSpec,
): PlanBudget {
  const L = problem.shape.layers;
  const P = paramCounts(problem.shape).perLayer;
  const E = adapterParamsPerLayer(problem.shape, problem.adapter.rank, problem.adapter.targets);
  const standardPerToken = 6 * L * P;
  const flops = spec.total.kind === "flops"
    ? spec.total.flops
    : standardPerToken * spec.total.steps * spec.batchTokens;
  const weights = shareWeights(spec.share, split);
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const stages = split.map((_, idx): StageBudget => {
    const stage = idx + 1;
    const perToken = stageFlopsPerToken(problem, split, stage);
    const stageFlops = flops * (weights[idx] ?? 0) / weightSum;
    const m = method(stageFlops, perToken, spec.batchTokens);
    const last = stage === split.length;
    return {
      stage,
      flopsPerToken: perToken,
      flops: stageFlops,
      tokens: m.tokens,
      steps: m.steps,
      scheduleSteps: last ? m.steps : Math.round(m.steps / spec.growAt),
    };
  });
  const stepTokens = stages.reduce((a, s) => a + s.tokens, 0);
  return {
    flops,
    batchTokens: spec.batchTokens,
    stages,
    stepTotal: {
      flopsPerToken: flops / stepTokens,
      tokens: stepTokens,
      steps: stages.reduce((a, s) => a + s.steps, 0),
    },
    standard: method(flops, standardPerToken, spec.batchTokens),
    relora: method(flops, 6 * L * E + 2 * L * P, spec.batchTokens),
    galore: method(flops, standardPerToken, spec.batchTokens),
  };
}
