/**
 * `executedFlopsPerToken` (solvers/executed_flops.ts) against the engine itself: one real
 * `trainStep` on the `cpu` backend runs under `tf.profile`, every matmul kernel it executes is
 * summed as 2·m·k·n from its recorded shapes, and the sum per position must equal the model's
 * count exactly (both are integers far below 2^53). The count is derived from the model's
 * structure; this test never looks at it, only at the kernels tfjs ran, so a backward matmul the
 * model forgets (or invents) shows up as a difference.
 *
 * `cpu` has no fused kernels (kernels/ops/fused_kernels.ts): attention, the head and every projection
 * are plain `BatchMatMul`s, which the test checks before counting.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "./assert.ts";
import {
  adaptedWeights,
  firstStageRoles,
  grownStageRoles,
  grownTrainable,
  type GrowthRoleOptions,
  type LlamaShape,
  paramCounts,
  PROJECTIONS,
  projectionWeight,
  type StageRoles,
  stageTrainable,
} from "../base/mod.ts";
import { executedFlopsPerToken, galoreStepExtraFlops, paperFlopsPerToken } from "../solvers/mod.ts";
import { initBackend } from "../kernels/backend.ts";
import { initParams } from "../kernels/params.ts";
import {
  createTrainState,
  disposeState,
  loadTrainState,
  type TrainState,
} from "../kernels/train_state.ts";
import { trainStep } from "../kernels/train_step.ts";
import {
  attachedSnapshot,
  type EngineSnapshot,
  grownSnapshot,
  initialSnapshot,
} from "../checkpoint/mod.ts";
import type { Batch } from "../kernels/model.ts";

// Grouped-query attention (kvHeads < heads) and an MLP width unlike the hidden width, so a
// model that confused k/v with q/o widths, or gate/up with down, would miscount.
const SHAPE: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 4,
  vocab: 37,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};
const RANK = 3;
const SEQ = 8;
const SEQUENCES = 2;

/** Kernels that multiply matrices; anything else tfjs runs is elementwise or data movement. */
const MATMUL_KERNELS = new Set(["BatchMatMul", "_FusedMatMul"]);

function batch(): Batch {
  const n = SEQUENCES * SEQ;
  const tokens = Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % SHAPE.vocab);
  const targets = Int32Array.from({ length: n }, (_, i) => (i * 5 + 1) % SHAPE.vocab);
  return { tokens, targets, batch: SEQUENCES, seq: SEQ };
}

/**
 * FLOPs of one matmul kernel from the shapes tfjs recorded: the output is [..., m, n] and the
 * first operand holds m·k numbers per batch entry whether or not it was transposed.
 */
function matmulFlops(inputShapes: (number[] | null)[], outputShape: number[]): number {
  const a = inputShapes[0];
  if (a === null || a === undefined) throw new Error("matmul without a first operand shape");
  const m = outputShape.at(-2)!;
  const n = outputShape.at(-1)!;
  const batchEntries = outputShape.slice(0, -2).reduce((p, d) => p * d, 1);
  const k = (a.at(-2)! * a.at(-1)!) / m;
  return 2 * batchEntries * m * n * k;
}

interface Counted {
  readonly flops: number;
  readonly matmuls: number;
  readonly kernels: readonly string[];
}

/** One `trainStep` under `tf.profile`; the state is consumed and the new one disposed. */
async function countStep(
  state: TrainState,
  options: { recompute?: "none" | "layers"; lossChunk?: number },
): Promise<Counted> {
  let after: TrainState | undefined;
  const profile = await tf.profile(async () => {
    const r = await trainStep(state, [batch()], { lr: 1e-3, ...options });
    assert(!r.skipped, "the step must run");
    after = r.state;
  });
  disposeState(after!);
  let flops = 0;
  let matmuls = 0;
  for (const k of profile.kernels) {
    if (!MATMUL_KERNELS.has(k.name)) continue;
    flops += matmulFlops(k.inputShapes, k.outputShapes[0]!);
    matmuls++;
  }
  return { flops, matmuls, kernels: [...new Set(profile.kernels.map((k) => k.name))] };
}

async function cpu(): Promise<void> {
  const got = await initBackend("cpu");
  if (E.isLeft(got)) throw new Error(got.left.message);
}

/** A stage-2 state: a stage-1 model of `depth` layers grown by `added`, adapters per roles. */
function grownState(depth: number, added: number, options: GrowthRoleOptions): {
  state: TrainState;
  roles: StageRoles;
} {
  const roles = grownStageRoles(2, depth, added, options);
  const initial = E.right<string, EngineSnapshot>(initialSnapshot(SHAPE, depth, 5));
  const grown = added === 0 ? initial : E.flatMap((s: EngineSnapshot) =>
    grownSnapshot(s, {
      add: added,
      placement: options.placement,
      seed: options.seed,
      trainable: grownTrainable(roles),
    })
  )(initial);
  const attached = E.flatMap((s: EngineSnapshot) =>
    attachedSnapshot(s, {
      rank: RANK,
      alpha: 2 * RANK,
      seed: 11,
      adapted: adaptedWeights(roles),
      trainable: stageTrainable(roles, SHAPE),
    })
  )(grown);
  if (E.isLeft(attached)) throw new Error(attached.left);
  return { state: loadTrainState(SHAPE, attached.right), roles };
}

interface Case {
  readonly name: string;
  readonly build: () => { state: TrainState; roles: StageRoles };
  readonly recompute?: "none" | "layers";
  readonly lossChunk?: number;
  /** Whether the engine is expected to compute some unneeded matmuls in this case. */
  readonly wasteful: boolean;
}

const STEP_ROLES: GrowthRoleOptions = {
  placement: "upper",
  seed: 0,
  // Only q and v adapted: the lowest frozen layer's k needs no gradient, yet composite attention
  // computes dK (and in layers where no input gradient flows, nothing else is wasted).
  targets: ["q", "v"],
  trainEmbeddings: false,
};

const CASES: readonly Case[] = [
  {
    name: "stage 1, everything trains",
    build: () => ({
      state: createTrainState(SHAPE, initParams(SHAPE, 4, 1)),
      roles: firstStageRoles(4),
    }),
    wasteful: false,
  },
  {
    name: "stage 1, tied embeddings",
    build: () => {
      const shape = { ...SHAPE, tiedEmbeddings: true };
      return { state: createTrainState(shape, initParams(shape, 4, 1)), roles: firstStageRoles(4) };
    },
    wasteful: false,
  },
  {
    name: "STEP stage 2 (2 → 4 layers, upper), q/v adapters, embeddings frozen",
    build: () => grownState(2, 2, STEP_ROLES),
    wasteful: true,
  },
  {
    name: "STEP stage 2, embeddings trainable",
    build: () => grownState(2, 2, { ...STEP_ROLES, trainEmbeddings: true }),
    wasteful: false,
  },
  {
    name: "STEP stage 2, lower placement, k/down adapters",
    build: () => grownState(3, 1, { ...STEP_ROLES, placement: "lower", targets: ["k", "down"] }),
    wasteful: true,
  },
  {
    name: "ReLoRA-like: every layer frozen and adapted, norms and embeddings train",
    build: () =>
      grownState(4, 0, {
        placement: "upper",
        seed: 0,
        targets: PROJECTIONS,
        trainEmbeddings: true,
        trainNorms: true,
      }),
    wasteful: false,
  },
  {
    name: "no adapters, frozen bottom (3 → 4 layers, upper)",
    build: () => grownState(3, 1, { ...STEP_ROLES, targets: [] }),
    wasteful: false,
  },
  {
    name: "stage 1, recompute layers",
    build: () => ({
      state: createTrainState(SHAPE, initParams(SHAPE, 4, 1)),
      roles: firstStageRoles(4),
    }),
    recompute: "layers",
    wasteful: false,
  },
  {
    name: "STEP stage 2, recompute layers",
    build: () => grownState(2, 2, STEP_ROLES),
    recompute: "layers",
    wasteful: true,
  },
  {
    name: "no adapters, frozen bottom, recompute layers",
    build: () => grownState(3, 1, { ...STEP_ROLES, targets: [] }),
    recompute: "layers",
    wasteful: false,
  },
  {
    name: "stage 1, lossChunk 5 (head trains)",
    build: () => ({
      state: createTrainState(SHAPE, initParams(SHAPE, 4, 1)),
      roles: firstStageRoles(4),
    }),
    lossChunk: 5,
    wasteful: false,
  },
  {
    name: "STEP stage 2, lossChunk 5 (head frozen), recompute layers",
    build: () => grownState(2, 2, STEP_ROLES),
    lossChunk: 5,
    recompute: "layers",
    wasteful: true,
  },
  {
    name: "lossChunk at least the micro-batch: the unchunked path",
    build: () => ({
      state: createTrainState(SHAPE, initParams(SHAPE, 4, 1)),
      roles: firstStageRoles(4),
    }),
    lossChunk: SEQUENCES * SEQ,
    wasteful: false,
  },
];

for (const c of CASES) {
  Deno.test(`executed FLOPs equal the engine's matmuls: ${c.name}`, async () => {
    await cpu();
    const { state, roles } = c.build();
    const shape = state.shape;
    const counted = await countStep(state, {
      ...(c.recompute === undefined ? {} : { recompute: c.recompute }),
      ...(c.lossChunk === undefined ? {} : { lossChunk: c.lossChunk }),
    });
    // The count assumes composite attention: no fused kernel may have run.
    assertEquals(counted.kernels.filter((k) => k.startsWith("Step")), []);
    assert(counted.matmuls > 0);
    const model = executedFlopsPerToken({
      shape,
      roles,
      adapterRank: RANK,
      seqLen: SEQ,
      recompute: c.recompute ?? "none",
      microBatch: SEQUENCES,
      ...(c.lossChunk === undefined ? {} : { lossChunk: c.lossChunk }),
    });
    const positions = SEQUENCES * SEQ;
    assertEquals(counted.flops / positions, model.total, JSON.stringify(model));
    assertEquals(
      model.forward + model.inputGrad + model.weightGrad + model.attention + model.head +
        model.recompute,
      model.total,
    );
    assertEquals(model.unneeded > 0, c.wasteful, `unneeded ${model.unneeded}`);
  });
}

Deno.test("the engine executes more than the paper's 6N/2N in a STEP stage", () => {
  // Frozen layers under trainable adapters pay their input gradient (another 2 per weight),
  // attention and the head are extra: the executed count is above the paper's for the same stage.
  const roles = grownStageRoles(2, 2, 2, STEP_ROLES);
  const executed = executedFlopsPerToken({
    shape: SHAPE,
    roles,
    adapterRank: RANK,
    seqLen: SEQ,
    recompute: "none",
  });
  const paper = paperFlopsPerToken(SHAPE, roles, RANK);
  assert(executed.forward + executed.inputGrad + executed.weightGrad > paper);
  // The paper's count is 2 per frozen weight; the projection part of the engine's forward alone
  // already covers every weight once (2 per weight, norms excepted).
  const weights = paramCounts(SHAPE).perLayer - 2 * SHAPE.hidden;
  assert(executed.forward >= 2 * 4 * weights);
});

Deno.test("a GaLore step executes a standard step's matmuls plus galoreStepExtraFlops", async () => {
  await cpu();
  const targets = ["q", "v", "up", "down"] as const;
  const weights = Array.from(
    { length: SHAPE.layers },
    (_, l) => targets.map((p) => projectionWeight(l, p)),
  ).flat();
  // updateEvery 1: this step refreshes every projector (the SVD runs in float64 JavaScript, not
  // as a tfjs kernel, so only the projections are counted).
  const state = createTrainState(SHAPE, initParams(SHAPE, SHAPE.layers, 5), {
    galore: { rank: RANK, updateEvery: 1, scale: 0.25, targets: weights },
  });
  const counted = await countStep(state, { recompute: "none" });
  const tokens = SEQUENCES * SEQ;
  const step = executedFlopsPerToken({
    shape: SHAPE,
    roles: firstStageRoles(SHAPE.layers),
    adapterRank: 0,
    seqLen: SEQ,
    recompute: "none",
  }).total * tokens;
  const extra = galoreStepExtraFlops(SHAPE, SHAPE.layers, { rank: RANK, targets: [...targets] });
  assert(extra > 0);
  assertEquals(counted.flops, step + extra);
});
