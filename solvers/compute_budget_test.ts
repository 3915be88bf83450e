/**
 * The paper's FLOPs arithmetic (spec §4, Table 4) through `planBudget`: every method of one size
 * gets C = 6·N·T of standard pre-training for 20K steps, and its step count follows from its
 * cost per token (6 per trained, 2 per frozen non-embedding parameter).
 *
 * The problems are built as `deno task plan` builds them from examples/configs/paper-*.yaml
 * (model, `pet` rank 128 on all seven projections, the paper's memory assumptions), written out
 * here so that this test does not depend on the config parser.
 *
 * Findings, each pinned by a test below:
 * - standard 20K and GaLore 20K: exact by construction.
 * - ReLoRA (2·P + 6·E per layer per token): 43K for 368M and 680M, as printed; 46K for 1.2B,
 *   whose adapters are a smaller share of the layer (E/P = 0.099 against 0.13). No variant of
 *   this accounting gives 43K there (a full-rank warm start would need 2.5K steps for 1.2B and
 *   none for 680M); the paper seems to reuse one step count across sizes.
 * - STEP-2stages 33K: reproduced to the thousand, for all three sizes, when the run's steps are
 *   cut at growAt = 0.75 (stage 1 runs 75% of STEP's steps, stage 2 the last 25%; a `share` of
 *   [0.75·c₁, 0.25·c₂] FLOPs, c the stages' costs per token) with adapters counted. The default
 *   share `layers` gives 32K (2.7% below), `equal` 32K; leaving the adapters out gives 34K.
 * - STEP-3stages 45K (1.2B, {11, 8, 5}): not reachable with this accounting by any share. Stage
 *   1 alone costs 6·11·P per token, the cheapest of the three, so the run can take at most
 *   C / (6·11·P·B) = 20K · 24/11 = 43.6K steps. `layers` gives 40K (11% below).
 *
 * @module
 */
import { assert, assertEquals } from "../tests/assert.ts";
import { type LlamaShape, PROJECTIONS } from "../base/mod.ts";
import { type MemoryProblem, PAPER_ASSUMPTIONS } from "./memory_model.ts";
import {
  type PlanBudget,
  planBudget,
  stageFlopsPerToken,
  type StageShare,
} from "./compute_budget.ts";

interface PaperSize {
  readonly name: string;
  readonly shape: LlamaShape;
  /** `training.batchTokens` of the config: Table 4's batch, in 1024-token sequences. */
  readonly batchTokens: number;
}

/** A config's `model:` section with LLaMA's defaults (MHA, untied head), GPT-2's vocabulary. */
function paperShape(
  hidden: number,
  intermediate: number,
  heads: number,
  layers: number,
): LlamaShape {
  return {
    hidden,
    intermediate,
    heads,
    kvHeads: heads,
    layers,
    vocab: 50257,
    tiedEmbeddings: false,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxSeqLen: 1024,
  };
}

const SIZES: readonly PaperSize[] = [
  {
    name: "368M",
    // examples/configs/paper-368m.yaml: widths not in the paper; these reproduce Table 2.
    shape: paperShape(1536, 4608, 12, 12),
    batchTokens: 368640,
  },
  {
    name: "680M",
    shape: paperShape(1536, 4096, 12, 24),
    batchTokens: 688128,
  },
  {
    name: "1.2B",
    shape: paperShape(2048, 5461, 16, 24),
    batchTokens: 1179648,
  },
];

/** STEP-2stages split of each size (spec §3, Table 1). */
function twoStages(size: PaperSize): number[] {
  return size.shape.layers === 12 ? [7, 5] : [14, 10];
}

/** `problemOf`'s second argument: adapters left out of the count. */
const WITHOUT_ADAPTERS = false;

function problemOf(size: PaperSize, withAdapters = true): MemoryProblem {
  return {
    shape: size.shape,
    adapter: withAdapters ? { rank: 128, targets: PROJECTIONS } : { rank: 0, targets: [] },
    assumptions: PAPER_ASSUMPTIONS,
  };
}

function budget(
  size: PaperSize,
  split: readonly number[],
  share: StageShare,
  problem: MemoryProblem = problemOf(size),
): PlanBudget {
  return planBudget(problem, split, {
    total: { kind: "standardSteps", steps: 20000 },
    batchTokens: size.batchTokens,
    share,
    growAt: 0.75,
  });
}

/** Steps in thousands, rounded as Table 4 prints them. */
function thousands(steps: number): number {
  return Math.round(steps / 1000);
}

/**
 * The growAt cut: FLOPs shares that make the stages' step counts stand as `fractions` (stage i
 * runs fractions[i] of the run's steps), i.e. weights fractions[i]·c_i.
 */
function cutShare(problem: MemoryProblem, split: readonly number[], fractions: number[]): number[] {
  return split.map((_, i) => fractions[i]! * stageFlopsPerToken(problem, split, i + 1));
}

Deno.test("Table 4: standard and GaLore 20K steps at every size", () => {
  for (const size of SIZES) {
    const b = budget(size, twoStages(size), "layers");
    assertEquals(b.standard.steps, 20000, size.name);
    assertEquals(b.galore.steps, 20000, size.name);
    // C = 6·N·T with N non-embedding (Table 4's FLOPs column within 3%: 1.63e19, 5.55e19, 1.73e20).
    const printed = { "368M": 1.63e19, "680M": 5.55e19, "1.2B": 1.73e20 }[size.name]!;
    assert(Math.abs(b.flops / printed - 1) < 0.03, `${size.name}: ${b.flops} vs ${printed}`);
  }
});

Deno.test("Table 4: ReLoRA 43K for 368M and 680M; 1.2B gives 46K under the same accounting", () => {
  const got = SIZES.map((s) => thousands(budget(s, twoStages(s), "layers").relora.steps));
  assertEquals(got, [43, 43, 46]);
  // 1.2B is 7.6% above the paper's 43K: outside 5%, the one Table 4 entry this accounting misses.
  const b = budget(SIZES[2]!, [14, 10], "layers");
  assert(b.relora.steps / 43000 - 1 > 0.05);
});

Deno.test("Table 4: STEP-2stages 33K when stage 1 runs 75% of the run's steps", () => {
  for (const size of SIZES) {
    const split = twoStages(size);
    const problem = problemOf(size);
    const b = budget(size, split, cutShare(problem, split, [0.75, 0.25]));
    assertEquals(thousands(b.stepTotal.steps), 33, size.name);
    // The cut holds: stage 1 is 75% of the steps (to rounding of the step counts).
    assert(Math.abs(b.stages[0]!.steps / b.stepTotal.steps - 0.75) < 1e-3);
    // Every method spends the same compute.
    const spent = b.stages.reduce((s, st) => s + st.flopsPerToken * st.tokens, 0);
    assert(Math.abs(spent / b.flops - 1) < 1e-12);
  }
});

Deno.test("Table 4: the default share `layers` gives 32K for STEP-2stages, within 5% of 33K", () => {
  for (const size of SIZES) {
    const split = twoStages(size);
    const layers = budget(size, split, "layers");
    assertEquals(thousands(layers.stepTotal.steps), 32, size.name);
    assert(Math.abs(layers.stepTotal.steps / 33000 - 1) < 0.05, size.name);
    // Stage 1 under `layers` runs exactly the standard 20K steps (spec: n_1/L of C at 6·n_1·P).
    assertEquals(layers.stages[0]!.steps, 20000);
    // `equal` also lands at 32K; without adapters in the count, 34K: neither is the paper's 33K.
    assertEquals(thousands(budget(size, split, "equal").stepTotal.steps), 32, size.name);
    const noAdapters = budget(size, split, "layers", problemOf(size, WITHOUT_ADAPTERS));
    assertEquals(thousands(noAdapters.stepTotal.steps), 34, size.name);
  }
});

Deno.test("Table 4: STEP-3stages 45K (1.2B {11, 8, 5}) is beyond any share of the same compute", () => {
  const size = SIZES[2]!;
  const split = [11, 8, 5];
  const problem = problemOf(size);
  // Stage 1 is the cheapest stage per token, so spending all of C there bounds the run.
  const costs = split.map((_, i) => stageFlopsPerToken(problem, split, i + 1));
  assertEquals(Math.min(...costs), costs[0]);
  const flops = budget(size, split, "layers").flops;
  const bound = flops / (costs[0]! * size.batchTokens);
  assert(Math.abs(bound - 20000 * 24 / 11) < 1e-6 * bound);
  assert(bound < 45000 * 0.97, `${bound}`);
  const shares: StageShare[] = [
    "layers",
    "equal",
    cutShare(problem, split, [0.75 * 0.75, 0.75 * 0.25, 0.25]),
    [1, 1e-9, 1e-9],
  ];
  for (const share of shares) {
    const steps = budget(size, split, share).stepTotal.steps;
    assert(steps <= bound + 2, `${JSON.stringify(share)}: ${steps}`);
  }
  assertEquals(thousands(budget(size, split, "layers").stepTotal.steps), 40);
});

Deno.test("Table 4: charging stage 1 its whole schedule (20K/0.75) also gives STEP-2stages 33K", () => {
  // A second reading that reproduces 33K, for the record: under `layers` stage 1 gets 20K steps
  // and a 26.7K-step schedule; if the unrun quarter of that schedule is charged and counted as
  // updates, stage 2 gets what is left. It fails for three stages (nothing is left for stage 3),
  // so the growAt cut above is the reading the test suite keeps.
  for (const size of SIZES) {
    const split = twoStages(size);
    const problem = problemOf(size);
    const b = budget(size, split, "layers");
    const schedule1 = b.stages[0]!.scheduleSteps;
    const perStep = (stage: number): number =>
      stageFlopsPerToken(problem, split, stage) * size.batchTokens;
    const stage2 = (b.flops - schedule1 * perStep(1)) / perStep(2);
    assertEquals(thousands(schedule1 + stage2), 33, size.name);
  }
  // Three stages (1.2B {11, 8, 5}): the schedules of stages 1 and 2 alone exceed C.
  const size = SIZES[2]!;
  const split = [11, 8, 5];
  const problem = problemOf(size);
  const b = budget(size, split, "layers");
  const charged = b.stages.slice(0, 2).reduce(
    (sum, st) => sum + st.scheduleSteps * st.flopsPerToken * size.batchTokens,
    0,
  );
  assert(charged > b.flops, `${charged} vs ${b.flops}`);
  assertEquals(b.stages[0]!.flopsPerToken, stageFlopsPerToken(problem, split, 1));
});
