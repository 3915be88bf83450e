import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { firstStageRoles } from "../base/mod.ts";
import { engineStepMemory } from "../solvers/mod.ts";
import { BACKEND_FUSED } from "./config.ts";
import { decodePipeline } from "./stage_graph.ts";
import { validateGraph, type ValidGraph } from "./validate_graph.ts";
import {
  backendLimit,
  EMSCRIPTEN_HEAP_CEILING,
  fitProblem,
  fitText,
  memoryFit,
  WASM_HEAP_FRAGMENTATION,
} from "./memory_fit.ts";

function graph(training: Record<string, unknown> = {}): ValidGraph {
  const g = E.flatMap(
    decodePipeline({
      version: 1,
      name: "fit",
      model: { hidden: 32, intermediate: 64, heads: 2, layers: 4, vocab: 300, maxSeqLen: 16 },
      training: { backend: "auto", seqLen: 16, microBatch: 2, batchTokens: 32, ...training },
      data: { source: "builtin" },
      nodes: [
        { op: "train", id: "s1.train", layers: 3, steps: 1 },
        { op: "grow", id: "s2.grow", add: 1 },
        { op: "attachPET", id: "s2.pet", kind: "relora", rank: 4 },
        { op: "continue", id: "s2.continue", steps: 1 },
      ],
    }, "fit"),
    validateGraph,
  );
  if (E.isLeft(g)) throw new Error(JSON.stringify(g.left));
  return g.right;
}

/** Standard pre-training's step peak at `layers`, straight from the replay. */
function replayedPeak(g: ValidGraph, layers: number): number {
  return engineStepMemory({
    shape: { ...g.shape, layers },
    roles: firstStageRoles(layers),
    rank: 0,
    microBatch: g.training.microBatch,
    seqLen: g.training.seqLen,
    accumulation: g.accumulation,
    fused: BACKEND_FUSED.auto,
    recompute: g.training.recompute,
  }).peakBytes;
}

Deno.test("the largest depth is what a scan of the replay at every depth finds", () => {
  const g = graph();
  for (const target of [1, 7, 40]) {
    // A limit a few bytes short of the next depth: only the exact answer passes.
    const limit = replayedPeak(g, target + 1) - 1;
    let scanned = 0;
    for (let layers = 1; layers <= 60; layers++) {
      if (replayedPeak(g, layers) <= limit) scanned = layers;
    }
    const fit = memoryFit(g, "auto", { kind: "bytes", bytes: limit, what: "test" });
    assertEquals(fit.largestDepth?.size, scanned, `target ${target}`);
    assertEquals(scanned, target);
    assertEquals(fit.largestDepth?.peak, replayedPeak(g, target));
  }
});

Deno.test("a stage fits at its predicted peak to the byte and not one byte below; the refusal names it", () => {
  const g = graph();
  const peaks = memoryFit(g, "auto", { kind: "bytes", bytes: 1e12, what: "lots" }).stages;
  assertEquals(peaks.map((s) => s.node), ["s1.train", "s2.continue"]);
  const worst = peaks.reduce((a, b) => (b.peakBytes > a.peakBytes ? b : a));
  const at = memoryFit(g, "auto", { kind: "bytes", bytes: worst.peakBytes, what: "exact" });
  assert(at.stages.every((s) => s.fits === true));
  assertEquals(fitProblem(g, at), undefined);
  const below = memoryFit(g, "auto", {
    kind: "bytes",
    bytes: worst.peakBytes - 1,
    what: "the test's",
  });
  assert(below.stages.find((s) => s.node === worst.node)?.fits === false);
  const problem = fitProblem(g, below);
  assert(problem !== undefined);
  assertEquals(problem._tag, "PlanInfeasible");
  assertStringIncludes(problem.message, `node ${worst.node}`);
  assertStringIncludes(problem.message, `(${worst.peakBytes} bytes)`);
  assertStringIncludes(problem.message, `(${worst.peakBytes - 1} bytes)`);
  assertStringIncludes(problem.message, "the test's");
  assertStringIncludes(fitText(g, below), "does not fit (1 B over)");
});

Deno.test("an unknown limit checks nothing and refuses nothing", () => {
  const g = graph();
  const fit = memoryFit(g, "webgpu", { kind: "unknown", what: "GPU" });
  assert(fit.stages.every((s) => s.fits === undefined) && fit.largestDepth === undefined);
  assertEquals(fitProblem(g, fit), undefined);
  assertStringIncludes(fitText(g, fit), "not checked before the run (GPU)");
});

Deno.test("each backend's limit: the wasm heap, the OS, torch ranks, GPUs unknown", () => {
  const heap = { maxBytes: 2 ** 32, initialBytes: 2 ** 24 };
  const machine = { availableBytes: 20e9, availableFrom: "test", wasmHeap: heap };
  const tfjs = { engine: "tfjs", torch: { device: "cpu", nproc: 1 } };
  const usable = EMSCRIPTEN_HEAP_CEILING - 2 ** 24 - WASM_HEAP_FRAGMENTATION;
  for (const b of ["auto", "wasm"] as const) {
    assertEquals(backendLimit(tfjs, b, machine), {
      kind: "bytes",
      bytes: usable,
      what: backendLimit(tfjs, b, machine).what,
    });
  }
  // A declared maximum below the ceiling is the one that counts.
  const small = backendLimit(tfjs, "wasm", {
    ...machine,
    wasmHeap: { ...heap, maxBytes: 2 ** 30 },
  });
  assert(small.kind === "bytes" && small.bytes === 2 ** 30 - 2 ** 24 - WASM_HEAP_FRAGMENTATION);
  // Less OS memory than heap: the OS's figure.
  const tight = backendLimit(tfjs, "auto", { ...machine, availableBytes: 1e9 });
  assert(tight.kind === "bytes" && tight.bytes === 1e9, JSON.stringify(tight));
  for (const b of ["cpu", "blas", "tensorflow"] as const) {
    const l = backendLimit(tfjs, b, machine);
    assert(l.kind === "bytes" && l.bytes === 20e9, b);
  }
  const noHeap = backendLimit(tfjs, "auto", { availableBytes: 20e9, availableFrom: "test" });
  assert(noHeap.kind === "bytes" && noHeap.bytes === 20e9);
  assertEquals(backendLimit(tfjs, "webgpu", machine).kind, "unknown");
  const ranks = backendLimit(
    { engine: "torch", torch: { device: "cpu", nproc: 3 } },
    "auto",
    machine,
  );
  assert(ranks.kind === "bytes" && ranks.bytes === Math.floor(20e9 / 3));
  assertStringIncludes(ranks.what, "3 ranks");
  const cuda = backendLimit(
    { engine: "torch", torch: { device: "cuda", nproc: 1 } },
    "auto",
    machine,
  );
  assertEquals(cuda.kind, "unknown");
  const blind = { availableBytes: Infinity, availableFrom: "unknown: nothing readable" };
  assertEquals(backendLimit(tfjs, "blas", blind).kind, "unknown");
});

Deno.test("the torch engine's stages are predicted with its composite ops, not the backend's", () => {
  const g = graph({ engine: "torch" });
  const limit = { kind: "bytes", bytes: 1e12, what: "lots" } as const;
  const torch = memoryFit(g, "auto", limit);
  const blas = memoryFit(graph(), "blas", limit);
  assertEquals(torch.on, "torch on cpu");
  assertEquals(torch.stages.map((s) => s.peakBytes), blas.stages.map((s) => s.peakBytes));
});
