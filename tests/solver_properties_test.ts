/**
 * Property tests of the memory model and the integer program against the
 * exhaustive reference solver, on random models and assumptions.
 */
import fc from "fast-check";
import * as E from "fp-ts/lib/Either.js";
import { loadHighs } from "../solvers/highs_loader.ts";
import { assert, assertEquals } from "./assert.ts";
import { completeShape, type Projection, PROJECTIONS } from "../base/llama_shape.ts";
import {
  type MemoryProblem,
  peakBytes,
  stageMemories,
  standardBytes,
} from "../solvers/memory_model.ts";
import { byteUnit, layerVariable, splitProgram, toLpFormat } from "../solvers/integer_program.ts";
import { layerOfName, layerWeightNames, paramShapes } from "../base/param_names.ts";
import { adaptedWeights, splitRoles } from "../base/stage_roles.ts";
import {
  compositionCount,
  type HighsSolver,
  solveExhaustive,
  solveWithHighs,
} from "../solvers/split_solver.ts";
import { makePlan, peakMonotoneInStages } from "../solvers/planner.ts";

const highs: HighsSolver = await loadHighs();

const targetsArb: fc.Arbitrary<Projection[]> = fc.subarray([...PROJECTIONS], { minLength: 1 });

/** Random LLaMA problems small enough for the exhaustive solver. */
const problemArb: fc.Arbitrary<MemoryProblem> = fc.record({
  heads: fc.constantFrom(1, 2, 4),
  headDim: fc.constantFrom(2, 4, 8, 16, 32),
  kvDiv: fc.constantFrom(1, 2),
  intermediate: fc.integer({ min: 1, max: 3000 }),
  layers: fc.integer({ min: 1, max: 14 }),
  vocab: fc.integer({ min: 2, max: 5000 }),
  tied: fc.boolean(),
  rank: fc.integer({ min: 1, max: 64 }),
  targets: targetsArb,
  precision: fc.constantFrom("mixed" as const, "fp32" as const),
  embeddings: fc.boolean(),
  trainEmb: fc.boolean(),
  activations: fc.option(
    fc.record({
      microBatch: fc.integer({ min: 1, max: 8 }),
      seqLen: fc.integer({ min: 1, max: 512 }),
      recompute: fc.boolean(),
    }),
    { nil: undefined },
  ),
}).map((r) => ({
  shape: completeShape({
    hidden: r.heads * r.headDim,
    intermediate: r.intermediate,
    heads: r.heads,
    kvHeads: r.heads % r.kvDiv === 0 ? r.heads / r.kvDiv : r.heads,
    layers: r.layers,
    vocab: r.vocab,
    tiedEmbeddings: r.tied,
  } as never),
  adapter: { rank: r.rank, targets: r.targets },
  assumptions: {
    precision: r.precision,
    embeddings: r.embeddings,
    trainEmbeddingsAfterStage1: r.trainEmb,
    activations: r.activations,
  },
}));

const withStages = problemArb.chain((p) =>
  fc.record({
    problem: fc.constant(p),
    stages: fc.integer({ min: 1, max: Math.min(p.shape.layers, 5) }),
    minLayers: fc.constantFrom(1, 1, 2),
  })
).filter(({ problem, stages, minLayers }) => stages * minLayers <= problem.shape.layers);

Deno.test("HiGHS equals the exhaustive solver (split and peak, tie rule included)", () => {
  fc.assert(
    fc.property(withStages, ({ problem, stages, minLayers }) => {
      const a = solveWithHighs(highs, problem, { stages, minLayers });
      const b = solveExhaustive(problem, { stages, minLayers });
      assert(E.isRight(a) && E.isRight(b));
      assertEquals(a.right.split, b.right.split);
      assertEquals(a.right.peakBytes, b.right.peakBytes);
    }),
    { numRuns: 150, seed: 20261128 },
  );
});

Deno.test("HiGHS equals the exhaustive solver when ties are structural (no adapters cost)", () => {
  // fp32 with rank 1 on one small projection makes many splits tie closely; exact ties too.
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 1, max: 4 }), (L, K) => {
      const problem: MemoryProblem = {
        shape: completeShape(
          { hidden: 8, intermediate: 8, heads: 2, layers: L, vocab: 4 } as never,
        ),
        adapter: { rank: 1, targets: ["q"] },
        assumptions: {
          precision: "mixed",
          embeddings: false,
          trainEmbeddingsAfterStage1: false,
          activations: undefined,
        },
      };
      const stages = Math.min(K, L);
      const a = solveWithHighs(highs, problem, { stages, minLayers: 1 });
      const b = solveExhaustive(problem, { stages, minLayers: 1 });
      assert(E.isRight(a) && E.isRight(b));
      assertEquals(a.right.split, b.right.split);
    }),
    { numRuns: 40, seed: 7 },
  );
});

Deno.test("every optimal split adds up to L and respects the minimum per stage", () => {
  fc.assert(
    fc.property(withStages, ({ problem, stages, minLayers }) => {
      const a = solveWithHighs(highs, problem, { stages, minLayers });
      assert(E.isRight(a));
      assertEquals(a.right.split.reduce((x, y) => x + y, 0), problem.shape.layers);
      assertEquals(a.right.split.length, stages);
      assert(a.right.split.every((n) => n >= minLayers));
    }),
    { numRuns: 80, seed: 11 },
  );
});

Deno.test("one stage is standard pre-training: HiGHS on the one-stage program returns all L layers", () => {
  fc.assert(
    fc.property(problemArb, (problem) => {
      // The solver skips HiGHS when only one split exists; here the program goes to HiGHS as is.
      const ip = splitProgram(problem, { stages: 1, minLayers: 1, unit: byteUnit(problem, 1) });
      const result = highs.solve(toLpFormat(ip), {});
      assertEquals(result.Status, "Optimal");
      assertEquals(Math.round(result.Columns[layerVariable(1)]!.Primal), problem.shape.layers);
      const planned = solveWithHighs(highs, problem, { stages: 1, minLayers: 1 });
      assert(E.isRight(planned));
      assertEquals(planned.right.solver, "forced");
      assertEquals(planned.right.peakBytes, standardBytes(problem));
      const bare = { ...problem, assumptions: { ...problem.assumptions, activations: undefined } };
      assertEquals(standardBytes(bare), countedBytes(bare, [problem.shape.layers], 1));
    }),
    { numRuns: 50, seed: 3 },
  );
});

Deno.test("the optimum never rises as K grows, when an adapted frozen layer costs no more than a new one", () => {
  fc.assert(
    fc.property(problemArb.filter((p) => peakMonotoneInStages(p, 1)), (problem) => {
      let previous = Infinity;
      for (let K = 1; K <= Math.min(problem.shape.layers, 5); K++) {
        const s = solveExhaustive(problem, { stages: K, minLayers: 1 });
        assert(E.isRight(s));
        assert(s.right.peakBytes <= previous, `K=${K}: ${s.right.peakBytes} > ${previous}`);
        previous = s.right.peakBytes;
      }
    }),
    { numRuns: 60, seed: 5 },
  );
});

/**
 * Model-state bytes of stage `stage` counted tensor by tensor: every weight of the model (names
 * and shapes from `paramShapes`), every adapter matrix on the frozen layers, each at the spec's
 * bytes for its role — independent of the per-layer formulas the memory model uses.
 */
function countedBytes(problem: MemoryProblem, split: readonly number[], stage: number): number {
  const { shape, adapter, assumptions: a } = problem;
  // Spec §2: mixed precision keeps 2 (weight) + 2 (gradient) + 12 (fp32 master, m, v) bytes per
  // trained parameter and 2 per frozen one; fp32 keeps 4 + 4 + 8 and 4.
  const [trained, frozen] = a.precision === "mixed" ? [16, 2] : [16, 4];
  const roles = splitRoles(split, () => ({
    placement: "upper",
    seed: 0,
    targets: adapter.targets,
    trainEmbeddings: a.trainEmbeddingsAfterStage1,
  }))[stage - 1]!;
  const shapes = new Map(paramShapes(shape, roles.layers));
  const size = (dims: readonly number[]) => dims.reduce((x, y) => x * y, 1);
  const newWeights = new Set(roles.newLayers.flatMap(layerWeightNames));
  let bytes = 0;
  for (const [name, dims] of shapes) {
    if (layerOfName(name) === undefined) {
      if (a.embeddings) bytes += size(dims) * (roles.embeddingsTrain ? trained : frozen);
    } else {
      bytes += size(dims) * (newWeights.has(name) ? trained : frozen);
    }
  }
  for (const w of adaptedWeights(roles)) {
    const [rows, cols] = shapes.get(w)!;
    bytes += trained * adapter.rank * (rows! + cols!);
  }
  return bytes;
}

const splitArb = problemArb.chain((p) =>
  fc.record({
    problem: fc.constant({ ...p, assumptions: { ...p.assumptions, activations: undefined } }),
    cuts: fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, p.shape.layers - 1) }), {
      maxLength: Math.min(4, p.shape.layers - 1),
    }),
  })
).map(({ problem, cuts }) => {
  const at = [0, ...[...cuts].sort((x, y) => x - y), problem.shape.layers];
  return { problem, split: at.slice(1).map((c, i) => c - at[i]!) };
});

Deno.test("every stage's model state equals its tensors counted one by one at the spec's bytes per role", () => {
  fc.assert(
    fc.property(splitArb, ({ problem, split }) => {
      const mem = stageMemories(problem, split);
      mem.forEach((m, i) => {
        assertEquals(m.bytes, countedBytes(problem, split, i + 1), `stage ${i + 1} of [${split}]`);
        assertEquals(m.layers, split.slice(0, i + 1).reduce((x, y) => x + y, 0));
      });
    }),
    { numRuns: 200, seed: 13 },
  );
});

Deno.test("the budget mode finds the fewest stages that fit, or reports the smallest peak", () => {
  fc.assert(
    fc.property(problemArb, fc.double({ min: 0.05, max: 1.2, noNaN: true }), (problem, frac) => {
      const budget = Math.round(standardBytes(problem) * frac);
      const plan = makePlan(highs, {
        problem,
        galore: { rank: 8, targets: PROJECTIONS },
        minLayers: 1,
        mode: { kind: "budget", bytes: budget },
      });
      // Reference: scan K = 1..L with the exhaustive solver.
      let fewest: number | undefined;
      let smallest = Infinity;
      for (let K = 1; K <= problem.shape.layers; K++) {
        if (compositionCount(problem.shape.layers, { stages: K, minLayers: 1 }) > 5000) continue;
        const s = solveExhaustive(problem, { stages: K, minLayers: 1 });
        assert(E.isRight(s));
        smallest = Math.min(smallest, s.right.peakBytes);
        if (fewest === undefined && s.right.peakBytes <= budget) fewest = K;
      }
      if (E.isRight(plan)) {
        assert(plan.right.peakBytes <= budget);
        if (fewest !== undefined) assertEquals(plan.right.split.length, fewest);
      } else {
        assertEquals(fewest, undefined);
        assert(plan.left.message.includes("smallest achievable peak"));
      }
    }),
    { numRuns: 60, seed: 17 },
  );
});

Deno.test("a given split is evaluated, not optimised, and checked against L", () => {
  const problem: MemoryProblem = {
    shape: completeShape(
      { hidden: 64, intermediate: 172, heads: 4, layers: 6, vocab: 256 } as never,
    ),
    adapter: { rank: 4, targets: PROJECTIONS },
    assumptions: {
      precision: "fp32",
      embeddings: true,
      trainEmbeddingsAfterStage1: false,
      activations: undefined,
    },
  };
  const mk = (split: number[]) =>
    makePlan(highs, {
      problem,
      galore: { rank: 4, targets: PROJECTIONS },
      minLayers: 1,
      mode: { kind: "split", split },
    });
  const ok = mk([1, 5]);
  assert(E.isRight(ok));
  assertEquals(ok.right.peakBytes, peakBytes(problem, [1, 5]));
  assertEquals(ok.right.solver.name, "given");
  const bad = mk([2, 3]);
  assert(E.isLeft(bad));
  assert(bad.left.message.includes("adds up to 5 layers, the model has 6"));
});
