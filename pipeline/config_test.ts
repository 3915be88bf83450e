import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { type Config, parseConfig } from "./config.ts";
import { graphId } from "./interpreter.ts";
import { standardGraph } from "./plan_to_graph.ts";
import { decodePipeline, encodePipeline } from "./stage_graph.ts";
import { validateGraph } from "./validate_graph.ts";

const MODEL = "model: { hidden: 64, intermediate: 176, heads: 4, layers: 4, vocab: 257 }\n";

function config(text: string, file = "tiny.yaml"): Config {
  const c = parseConfig(text, file);
  assert(E.isRight(c), JSON.stringify(c));
  return c.right;
}

function problem(text: string): string {
  const c = parseConfig(text, "c.yaml");
  assert(E.isLeft(c), "expected the config to be refused");
  return `${c.left.where}: ${c.left.message}`;
}

Deno.test("parseConfig() of a model alone gives the documented defaults", () => {
  const c = config(MODEL);
  assertEquals(c.name, "tiny");
  // The values the README and the sections' doc comments promise, written out here by hand.
  assertEquals<unknown>(c.training, {
    backend: "auto",
    seqLen: 128,
    batchTokens: 4096,
    microBatch: 8,
    lr: 3e-3,
    warmup: 20,
    minLrRatio: 0.1,
    weightDecay: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    clip: 1,
    steps: 200,
    evalEvery: 50,
    evalBatches: 8,
    checkpointEvery: 50,
    logEvery: 10,
    tensorboard: true,
    seed: 0,
    maxSkippedSteps: 3,
    recompute: "none",
    engine: "tfjs",
    torch: {
      nproc: 1,
      nnodes: 1,
      nodeRank: 0,
      device: "cpu",
      strategy: "ddp",
      precision: "fp32",
      launcher: "auto",
      pinCores: true,
    },
  });
  assertEquals<unknown>(c.pet, {
    kind: "relora",
    rank: 128,
    alpha: 32,
    targets: ["q", "k", "v", "o", "gate", "up", "down"],
    resetEvery: 5000,
    restartWarmup: 500,
    pruneRatio: 0.99,
  });
  assertEquals<unknown>(c.plan, { stages: 2, minLayers: 1, placement: "upper" });
  assertEquals<unknown>(c.budget, {
    total: { kind: "standardSteps", steps: 200 },
    batchTokens: 4096,
    share: "layers",
    growAt: 0.75,
    accounting: "paper",
  });
  assertEquals(c.compare.eval === false ? undefined : c.compare.eval.limit, 500);
  assertEquals(c.data.valFraction, 0.05);
  assertEquals(c.memory.activations, undefined);
});

Deno.test("parseConfig() keeps a section's given fields and defaults the others", () => {
  const c = config(
    MODEL + "training: { seqLen: 64, torch: { nproc: 2 }, lossChunk: 256 }\n" +
      "compare: { eval: false }\nplan: { budget: 1GB }\n",
  );
  assertEquals([c.training.seqLen, c.training.batchTokens, c.training.lossChunk], [64, 4096, 256]);
  assertEquals([c.training.torch.nproc, c.training.torch.nnodes], [2, 1]);
  assert(c.compare.eval === false, "compare.eval: false stays false");
  assertEquals(c.plan.budget, 1e9);
});

Deno.test("parseConfig() names the field path of what it refuses", () => {
  assertStringIncludes(
    problem(MODEL + "training: { seqLen: 0, torch: { nprocs: 2 } }\n"),
    'training.seqLen: expected a positive integer (got 0); training.torch.nprocs: unknown field "nprocs"',
  );
  assertStringIncludes(
    problem(MODEL + "compare: { eval: { limit: 0 } }\n"),
    "compare.eval.limit: expected a positive integer (got 0)",
  );
  assertStringIncludes(problem("training: {}\n"), "model: expected a mapping with fields hidden");
  assertEquals(
    problem(MODEL + "training: { seqLen: 64, microBatch: 3, batchTokens: 1000 }\n"),
    "c.yaml: training.batchTokens: 1000 is not a multiple of microBatch × seqLen = 192",
  );
});

Deno.test("standardGraph() is the decoded config's settings and one train node of full depth", () => {
  const c = config(MODEL + "training: { seqLen: 64, steps: 7 }\n");
  const g = standardGraph(c, "tiny.yaml");
  assert(E.isRight(g));
  assertEquals(g.right.training, c.training);
  assertEquals(g.right.data, c.data);
  assertEquals<unknown>(g.right.nodes, [{ op: "train", id: "standard", layers: 4, steps: 7 }]);
  // The file's name is the run's folder: it must be a plain one, as a `name:` must.
  const odd = standardGraph(config(MODEL, "my run.yaml"), "my run.yaml");
  assert(E.isLeft(odd));
  assertStringIncludes(odd.left.message, "name: expected a plain file name");
});

Deno.test("a graph that writes its defaults and one that leaves them out are the same graph", () => {
  const model = { hidden: 64, intermediate: 176, heads: 4, layers: 4, vocab: 257 };
  const nodes = [{ op: "train", id: "t", layers: 4, steps: 5 }];
  const terse = decodePipeline({ version: 1, model, training: { seqLen: 64 }, nodes }, "a");
  assert(E.isRight(terse));
  const written = encodePipeline(terse.right) as { training: Record<string, unknown> };
  assertEquals(written.training.batchTokens, 4096);
  const full = decodePipeline(written, "b");
  assert(E.isRight(full));
  assertEquals(full.right, terse.right);
  const [a, b] = [validateGraph(terse.right), validateGraph(full.right)];
  assert(E.isRight(a) && E.isRight(b));
  assertEquals(graphId(a.right), graphId(b.right));
});
