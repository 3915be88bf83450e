import { assert, assertAlmostEquals, assertEquals } from "../tests/assert.ts";
import {
  adapterParamsPerLayer,
  completeShape,
  paramCounts,
  PROJECTIONS,
} from "../base/llama_shape.ts";
import { firstStageRoles, grownStageRoles } from "../base/stage_roles.ts";
import {
  type ActivationAssumptions,
  type MemoryProblem,
  PAPER_ASSUMPTIONS,
  peakBytes,
  stageLinearForms,
  stageMemories,
  standardBytes,
  sumTerms,
} from "./memory_model.ts";
import { galoreMemory, galoreStateElements } from "./baselines.ts";
import { engineStepMemory, FUSIBLE_OPS, kernelTraits } from "./engine_memory.ts";

function paperProblem(hidden: number, intermediate: number, layers: number): MemoryProblem {
  const shape = completeShape({
    hidden,
    intermediate,
    heads: hidden / 128,
    layers,
    vocab: 50257,
  } as never);
  return { shape, adapter: { rank: 128, targets: PROJECTIONS }, assumptions: PAPER_ASSUMPTIONS };
}

const GB = 1e9;

Deno.test("paramCounts() gives P_layer = 4h² + 3hf + 2h for multi-head attention", () => {
  for (const [h, f] of [[1536, 4096], [2048, 5461], [64, 172]] as const) {
    const shape = completeShape(
      { hidden: h, intermediate: f, heads: 4, layers: 2, vocab: 100 } as never,
    );
    assertEquals(paramCounts(shape).perLayer, 4 * h * h + 3 * h * f + 2 * h);
  }
});

Deno.test("paramCounts() shrinks k and v under grouped-query attention", () => {
  const shape = completeShape(
    { hidden: 64, intermediate: 100, heads: 8, kvHeads: 2, layers: 1, vocab: 10 } as never,
  );
  // q, o: 64×64; k, v: 64×16 (2 kv heads of dim 8); MLP 3·64·100; two norms.
  assertEquals(paramCounts(shape).perLayer, 2 * 64 * 64 + 2 * 64 * 16 + 3 * 64 * 100 + 2 * 64);
});

Deno.test("adapterParamsPerLayer() on all seven projections is r(11h + 3f)", () => {
  const p = paperProblem(1536, 4096, 24);
  assertEquals(adapterParamsPerLayer(p.shape, 128, PROJECTIONS), 128 * (11 * 1536 + 3 * 4096));
});

Deno.test("paramCounts() ties the LM head to the embedding when asked", () => {
  const untied = paramCounts(
    completeShape({ hidden: 8, intermediate: 16, heads: 2, layers: 1, vocab: 50 } as never),
  );
  const tied = paramCounts(
    completeShape(
      {
        hidden: 8,
        intermediate: 16,
        heads: 2,
        layers: 1,
        vocab: 50,
        tiedEmbeddings: true,
      } as never,
    ),
  );
  assertEquals(untied.lmHead, 400);
  assertEquals(tied.lmHead, 0);
  assertEquals(untied.total - tied.total, 400);
});

Deno.test("Eq. 1 and Eq. 2 reproduce the paper's Table 2 peaks", () => {
  const p680 = paperProblem(1536, 4096, 24);
  assertAlmostEquals(standardBytes(p680) / GB, 10.87, 0.005);
  assertAlmostEquals(peakBytes(p680, [14, 10]) / GB, 6.34, 0.005);
  const p12 = paperProblem(2048, 5461, 24);
  assertAlmostEquals(standardBytes(p12) / GB, 19.33, 0.005);
  assertAlmostEquals(peakBytes(p12, [11, 8, 5]) / GB, 8.86, 0.005);
  const p368 = paperProblem(1536, 4608, 12);
  assertAlmostEquals(standardBytes(p368) / GB, 5.89, 0.005);
  assertAlmostEquals(peakBytes(p368, [7, 5]) / GB, 3.43, 0.01);
});

Deno.test("Eq. 2 stage 2 of the 680M split equals 188·P + 224·E", () => {
  const p = paperProblem(1536, 4096, 24);
  const P = paramCounts(p.shape).perLayer;
  const E = adapterParamsPerLayer(p.shape, 128, PROJECTIONS);
  const [, s2] = stageMemories(p, [14, 10]);
  assertEquals(s2?.bytes, 188 * P + 224 * E);
  assertEquals(s2?.terms.frozenLayers, 2 * 14 * P);
  assertEquals(s2?.terms.adapters, 16 * 14 * E);
});

Deno.test("GaLore memory reproduces the paper's Table 2 (6.0G, 10.4G, 3.3G)", () => {
  const galore = { rank: 128, targets: PROJECTIONS };
  assertAlmostEquals(galoreMemory(paperProblem(1536, 4096, 24), galore).bytes / GB, 6.0, 0.05);
  assertAlmostEquals(galoreMemory(paperProblem(2048, 5461, 24), galore).bytes / GB, 10.4, 0.05);
  assertAlmostEquals(galoreMemory(paperProblem(1536, 4608, 12), galore).bytes / GB, 3.3, 0.05);
});

Deno.test("galoreStateElements() keeps m·r + 2·n·r with m ≤ n, and plain Adam at full rank", () => {
  assertEquals(galoreStateElements(1536, 4096, 128), 1536 * 128 + 2 * 4096 * 128);
  assertEquals(galoreStateElements(4096, 1536, 128), 1536 * 128 + 2 * 4096 * 128);
  assertEquals(galoreStateElements(16, 32, 16), 2 * 16 * 32);
});

Deno.test("fp32 regime charges 16 B per trained and 4 B per frozen parameter", () => {
  const p = paperProblem(1536, 4096, 4);
  const fp32 = { ...p, assumptions: { ...PAPER_ASSUMPTIONS, precision: "fp32" as const } };
  const P = paramCounts(p.shape).perLayer;
  const E = adapterParamsPerLayer(p.shape, 128, PROJECTIONS);
  const [, s2] = stageMemories(fp32, [3, 1]);
  assertEquals(s2?.bytes, 16 * P + 4 * 3 * P + 16 * 3 * E);
});

Deno.test("embeddings are trained in stage 1 and frozen later unless told otherwise", () => {
  const base = paperProblem(1536, 4096, 4);
  const emb = 50257 * 1536 * 2 + 1536;
  const counted = { ...base, assumptions: { ...PAPER_ASSUMPTIONS, embeddings: true } };
  const [s1, s2] = stageMemories(counted, [2, 2]);
  assertEquals(s1?.terms.embeddings, 16 * emb);
  assertEquals(s2?.terms.embeddings, 2 * emb);
  const trained = {
    ...base,
    assumptions: { ...counted.assumptions, trainEmbeddingsAfterStage1: true },
  };
  assertEquals(stageMemories(trained, [2, 2])[1]?.terms.embeddings, 16 * emb);
});

Deno.test("recomputation lowers the activation term", () => {
  const base = paperProblem(1536, 4096, 24);
  const act = { microBatch: 4, seqLen: 1024, recompute: false };
  const full = { ...base, assumptions: { ...PAPER_ASSUMPTIONS, activations: act } };
  const rec = {
    ...base,
    assumptions: { ...PAPER_ASSUMPTIONS, activations: { ...act, recompute: true } },
  };
  const a = stageMemories(full, [24])[0]?.terms.activations ?? 0;
  const b = stageMemories(rec, [24])[0]?.terms.activations ?? 0;
  assert(b > 0 && b < a, `recompute ${b} should be below ${a}`);
});

Deno.test("stageLinearForms() agree with the direct evaluation of every stage", () => {
  const base = paperProblem(1536, 4096, 12);
  const withState = (activations: ActivationAssumptions | undefined): MemoryProblem => ({
    ...base,
    assumptions: {
      precision: "fp32" as const,
      embeddings: true,
      trainEmbeddingsAfterStage1: false,
      activations,
    },
  });
  const split = [5, 4, 3];
  // Model state only: one form, Eq. 2 term by term.
  const state = withState(undefined);
  stageMemories(state, split).forEach((s, i) => {
    const forms = stageLinearForms(state, i + 1);
    assertEquals(forms.length, 1);
    const f = forms[0]!;
    const before = split.slice(0, i).reduce((a, b) => a + b, 0);
    assertEquals(s.bytes, f.perNew * s.added + f.perOld * before + f.constant);
    assertEquals(s.bytes, sumTerms(s.terms));
  });
  // With activations the stage is its largest moment, never below its model state.
  for (const recompute of [false, true]) {
    const act = withState({ microBatch: 2, seqLen: 256, recompute });
    const plain = stageMemories(state, split);
    stageMemories(act, split).forEach((s, i) => {
      const before = split.slice(0, i).reduce((a, b) => a + b, 0);
      const values = stageLinearForms(act, i + 1).map((f) =>
        f.perNew * s.added + f.perOld * before + f.constant
      );
      assertEquals(s.bytes, Math.max(...values));
      assert(s.terms.activations > 0);
      assertEquals(s.bytes - s.terms.activations, plain[i]!.bytes);
    });
  }
});

Deno.test("the planner's phases follow the engine's buffer replay within 10%", () => {
  // The replay walks every buffer of a step; the planner's few linear forms must track it on
  // shapes from a tiny vocabulary to GPT-2's, with and without recomputation, summing one or
  // two micro-batches, with auto's kernels, webgpu's (AdamW into new buffers) and wasm's
  // (composite attention).
  const shapes = [
    [64, 4, 4, 4, 257, 64, 16],
    [128, 2, 4, 2, 257, 128, 4],
    [128, 2, 4, 4, 4096, 64, 4],
    [64, 2, 2, 1, 50257, 64, 2],
    [512, 8, 8, 8, 50257, 256, 1],
    [256, 4, 4, 4, 32000, 128, 4],
  ] as const;
  const kernels = [
    { fused: FUSIBLE_OPS },
    { fused: FUSIBLE_OPS.filter((o) => o !== "adamwInPlace" && o !== "productSums") },
    { fused: FUSIBLE_OPS.filter((o) => o !== "attention" && o !== "productSums") },
    { fused: FUSIBLE_OPS.filter((o) => o !== "sumSquares") },
  ].map((k) => ({ ...k, ...kernelTraits(k.fused) }));
  for (const k of kernels) {
    for (const accumulation of [1, 2]) {
      for (const recompute of [false, true]) {
        for (const [hidden, layers, heads, kvHeads, vocab, seqLen, microBatch] of shapes) {
          const shape = completeShape({
            hidden,
            intermediate: Math.ceil(8 * hidden / 3 / 32) * 32,
            heads,
            kvHeads,
            layers,
            vocab,
            maxSeqLen: seqLen,
          } as never);
          const problem: MemoryProblem = {
            shape,
            adapter: { rank: 8, targets: PROJECTIONS },
            assumptions: {
              precision: "fp32",
              embeddings: true,
              trainEmbeddingsAfterStage1: false,
              activations: {
                microBatch,
                seqLen,
                recompute,
                accumulation,
                updateBuffers: k.updateBuffers,
                attention: k.attention,
                gradientNorm: k.gradientNorm,
                productSums: k.productSums,
              },
            },
          };
          const first = Math.ceil(layers / 2);
          const planned = stageMemories(problem, [first, layers - first]);
          const step = { microBatch, seqLen, accumulation, fused: k.fused, rank: 8 };
          const mode = recompute ? "layers" as const : "none" as const;
          const replayed = [
            engineStepMemory({ ...step, shape, roles: firstStageRoles(first), recompute: mode }),
            engineStepMemory({
              ...step,
              shape,
              recompute: mode,
              roles: grownStageRoles(2, first, layers - first, {
                placement: "upper",
                seed: 0,
                targets: PROJECTIONS,
                trainEmbeddings: false,
              }),
            }),
          ];
          planned.forEach((s, i) => {
            const ratio = s.bytes / replayed[i]!.peakBytes;
            assert(
              Math.abs(ratio - 1) < 0.1,
              `${[hidden, layers, heads, kvHeads, vocab, seqLen, microBatch]} ${k.attention} ` +
                `attention, ${k.updateBuffers} update buffers, ${k.gradientNorm} norm, sums in products ` +
                `${k.productSums}, ${accumulation} micro-batches, ` +
                `recompute ${recompute}, stage ${i + 1}: planner ${s.bytes} vs replay ${
                  replayed[i]!.peakBytes
                }`,
            );
          });
        }
      }
    }
  }
});
