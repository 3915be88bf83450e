/**
 * Closed forms of the executed count on cases small enough to work out by hand, and the paper's
 * count against `stageFlopsPerToken`. The count against the engine's own kernels is
 * tests/executed_flops_count_test.ts.
 */
import { assert, assertEquals } from "../tests/assert.ts";
import {
  adapterParamsPerLayer,
  completeShape,
  firstStageRoles,
  grownStageRoles,
  type LlamaShape,
  paramCounts,
  projectionDims,
  PROJECTIONS,
  splitRoles,
} from "../base/mod.ts";
import {
  type ExecutedFlopsInput,
  executedFlopsPerToken,
  executedStageFlops,
  galoreStepExtraFlops,
  layerBackward,
  paperFlopsPerToken,
} from "./executed_flops.ts";
import { stageFlopsPerToken } from "./compute_budget.ts";
import { PAPER_ASSUMPTIONS } from "./memory_model.ts";

// GQA and h ≠ f so that every width enters differently.
const SHAPE: LlamaShape = completeShape({
  hidden: 64,
  intermediate: 176,
  heads: 8,
  kvHeads: 2,
  layers: 6,
  vocab: 257,
} as never);
const H = SHAPE.hidden;
const KV = 2 * (64 / 8);
const F = SHAPE.intermediate;
const V = SHAPE.vocab;
const SEQ = 32;
/** Σ in·out of one layer's seven projections, written out (not from projectionDims). */
const W = H * H + 2 * H * KV + H * H + 2 * H * F + F * H;
/** Attention's two forward products per token per layer: QKᵀ and P·V, 2·s·h each. */
const ATT_FWD = 4 * SEQ * H;
const ATT_BWD = 8 * SEQ * H;
const HEAD = 2 * H * V;

function input(over: Partial<ExecutedFlopsInput> & Pick<ExecutedFlopsInput, "roles">) {
  return { shape: SHAPE, adapterRank: 0, seqLen: SEQ, recompute: "none" as const, ...over };
}

Deno.test("stage 1: 6 per weight, attention 12·s·h per layer, head 6·h·V", () => {
  const f = executedFlopsPerToken(input({ roles: firstStageRoles(6) }));
  assertEquals(f.forward, 6 * 2 * W);
  assertEquals(f.inputGrad, 6 * 2 * W);
  assertEquals(f.weightGrad, 6 * 2 * W);
  assertEquals(f.attention, 6 * (ATT_FWD + ATT_BWD));
  assertEquals(f.head, 3 * HEAD);
  assertEquals(f.recompute, 0);
  assertEquals(f.unneeded, 0);
  assertEquals(f.total, 6 * (6 * W + 12 * SEQ * H) + 6 * H * V);
});

Deno.test("frozen layers above a trainable one cost 4 per weight, below it 2", () => {
  // 5 → 6 layers, the new one inserted after layer 0 (`lower`), no adapters, embeddings frozen.
  const roles = grownStageRoles(2, 5, 1, {
    placement: "lower",
    seed: 0,
    targets: [],
    trainEmbeddings: false,
  });
  assertEquals(roles.newLayers, [1]);
  const f = executedFlopsPerToken(input({ roles }));
  // Layer 0: forward only. Layer 1 trains fully but its input needs no gradient; its norms
  // train, so every projection's input still gets one (the norm weights need it). Layers 2..5:
  // forward + input gradient.
  assertEquals(f.forward, 6 * 2 * W);
  assertEquals(f.weightGrad, 2 * W);
  assertEquals(f.inputGrad, 5 * 2 * W);
  assertEquals(f.attention, 6 * ATT_FWD + 5 * ATT_BWD);
  // Frozen head: forward and dH.
  assertEquals(f.head, 2 * HEAD);
  assertEquals(f.total, 6 * 2 * W + 2 * W + 10 * W + 6 * ATT_FWD + 5 * ATT_BWD + 2 * HEAD);
  // The paper charges every frozen layer 2 per parameter, above or below.
  assertEquals(paperFlopsPerToken(SHAPE, roles, 0), 6 * (W + 2 * H) + 2 * 5 * (W + 2 * H));
});

Deno.test("frozen layers below every trainable parameter cost their forward only", () => {
  const roles = grownStageRoles(2, 5, 1, {
    placement: "upper",
    seed: 0,
    targets: [],
    trainEmbeddings: false,
  });
  assertEquals(roles.newLayers, [5]);
  assertEquals(layerBackward(roles, 0).map((l) => l.visited), [
    false,
    false,
    false,
    false,
    false,
    true,
  ]);
  const f = executedFlopsPerToken(input({ roles }));
  assertEquals(f.forward, 6 * 2 * W);
  assertEquals(f.weightGrad, 2 * W);
  assertEquals(f.inputGrad, 2 * W);
  assertEquals(f.attention, 6 * ATT_FWD + ATT_BWD);
  // Recomputation reruns only the top layer.
  const r = executedFlopsPerToken(input({ roles, recompute: "layers" }));
  assertEquals(r.recompute, 2 * W + ATT_FWD);
  assertEquals(r.total - f.total, r.recompute);
});

Deno.test("the lowest adapted frozen layer: no input gradient through its q, k, v", () => {
  // Every layer frozen with all seven projections adapted, nothing else trains (ReLoRA without
  // norms and embeddings): layer 0's normed input depends on nothing trainable.
  const r = 4;
  const roles = grownStageRoles(2, 6, 0, {
    placement: "upper",
    seed: 0,
    targets: PROJECTIONS,
    trainEmbeddings: false,
  });
  const f = executedFlopsPerToken(input({ roles, adapterRank: r }));
  const A = PROJECTIONS.reduce((s, p) => {
    const d = projectionDims(SHAPE, p);
    return s + d.in + d.out;
  }, 0) * r; // adapter parameters per layer
  assertEquals(A, adapterParamsPerLayer(SHAPE, r, PROJECTIONS));
  // x·A and (x·A)·B per projection: dA, dB, d(x·A) always; dX through W and through A only when
  // x depends on something trainable.
  const qkvIn = (H * H + 2 * H * KV) + r * 3 * H;
  assertEquals(f.forward, 6 * (2 * W + 2 * A));
  assertEquals(f.weightGrad, 6 * 2 * A);
  const bInputGrads = 2 * r * (H + 2 * KV + H + 2 * F + H); // d(x·A) = dY·Bᵀ, all projections
  const fullInput = 2 * W + 2 * r * (3 * H + H + 2 * H + F); // dX through W and A
  assertEquals(f.inputGrad, 6 * bInputGrads + 6 * fullInput - 2 * qkvIn);
  assertEquals(f.unneeded, 0);
  // Frozen head: forward and dH.
  assertEquals(f.head, 2 * HEAD);
});

Deno.test("composite attention computes dK, dQ, dP when only v needs a gradient", () => {
  const roles = grownStageRoles(2, 6, 0, {
    placement: "upper",
    seed: 0,
    targets: ["v"],
    trainEmbeddings: false,
  });
  const f = executedFlopsPerToken(input({ roles, adapterRank: 2 }));
  // Layer 0: only v depends (dV needed, dP, dQ, dK not); layers above get every input gradient.
  assertEquals(f.unneeded, 3 * 2 * SEQ * H);
  assertEquals(f.attention, 6 * (ATT_FWD + ATT_BWD));
});

Deno.test("lossChunk: the head's logits once more, and nothing else", () => {
  for (
    const roles of [
      firstStageRoles(6),
      grownStageRoles(2, 3, 3, {
        placement: "upper",
        seed: 0,
        targets: ["q"],
        trainEmbeddings: false,
      }),
    ]
  ) {
    const whole = executedFlopsPerToken(input({ roles, adapterRank: 2 }));
    const chunked = executedFlopsPerToken(input({ roles, adapterRank: 2, lossChunk: 7 }));
    assertEquals(chunked.total - whole.total, HEAD);
    assertEquals(chunked.recompute, HEAD);
    assertEquals(chunked.head, whole.head);
    // A chunk as large as the micro-batch is the unchunked path.
    const one = executedFlopsPerToken(
      input({ roles, adapterRank: 2, lossChunk: 64, microBatch: 2 }),
    );
    assertEquals(one, whole);
  }
});

Deno.test("paperFlopsPerToken is stageFlopsPerToken for every STEP stage", () => {
  const shape = completeShape({ hidden: 1536, intermediate: 4096, heads: 12, layers: 24 } as never);
  for (const split of [[14, 10], [11, 8, 5], [6, 6, 6, 6]]) {
    for (const targets of [PROJECTIONS, ["q", "v"] as const]) {
      const roles = splitRoles(split, (stage) => ({
        placement: "upper",
        seed: stage,
        targets,
        trainEmbeddings: false,
      }));
      const problem = { shape, adapter: { rank: 128, targets }, assumptions: PAPER_ASSUMPTIONS };
      roles.forEach((r, i) =>
        assertEquals(paperFlopsPerToken(shape, r, 128), stageFlopsPerToken(problem, split, i + 1))
      );
    }
  }
});

Deno.test("executed vs paper for the paper's 680M STEP stage 2 {14, 10}", () => {
  // What the difference is made of, at the paper's scale: the frozen layers above the lowest new
  // layer pay their input gradient, and attention and the head come on top. Upper placement puts
  // the new layers among the top ones, so the frozen layers below them, adapted, need a backward.
  const shape = completeShape(
    { hidden: 1536, intermediate: 4096, heads: 12, layers: 24, vocab: 50257 } as never,
  );
  const roles = grownStageRoles(2, 14, 10, {
    placement: "upper",
    seed: 0,
    targets: PROJECTIONS,
    trainEmbeddings: false,
  });
  const f = executedFlopsPerToken({
    shape,
    roles,
    adapterRank: 128,
    seqLen: 1024,
    recompute: "none",
  });
  const paper = paperFlopsPerToken(shape, roles, 128);
  const P = paramCounts(shape).perLayer;
  const layerPart = f.forward + f.inputGrad + f.weightGrad;
  // Above the paper by about 2 per frozen weight (14 frozen layers), less layer 0's q/k/v input
  // gradients and the norms the paper counts.
  assert(layerPart > paper + 2 * 13 * (P - 2 * 1536), `${layerPart} vs ${paper}`);
  assert(layerPart < paper + 2 * 14 * P);
  assertEquals(f.unneeded, 0);
});

Deno.test("executedStageFlops scales every term by the stage's tokens", () => {
  const i = input({ roles: firstStageRoles(6) });
  const per = executedFlopsPerToken(i);
  const stage = executedStageFlops(i, { steps: 3, batchTokens: 128 });
  for (const k of Object.keys(per) as (keyof typeof per)[]) assertEquals(stage[k], per[k] * 384);
});

Deno.test("galoreStepExtraFlops: 4·m·n·r per targeted matrix per layer, r capped at min(m, n)", () => {
  assertEquals(galoreStepExtraFlops(SHAPE, 6, { rank: 8, targets: PROJECTIONS }), 6 * 4 * 8 * W);
  // k and v are 64 × 16: a rank of 32 is capped at 16 there.
  assertEquals(
    galoreStepExtraFlops(SHAPE, 1, { rank: 32, targets: ["q", "k"] }),
    4 * H * H * 32 + 4 * H * KV * KV,
  );
  assertEquals(galoreStepExtraFlops(SHAPE, 6, { rank: 8, targets: [] }), 0);
});
