import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import {
  attachPET,
  continueTraining,
  decodePipeline,
  evaluate,
  grow,
  pipeline,
  type StageNode,
  train,
} from "./stage_graph.ts";
import { graphSplit, methodLabel, validateGraph } from "./validate_graph.ts";

const MODEL = { hidden: 32, intermediate: 64, heads: 2, layers: 6, vocab: 257 };

function check(nodes: StageNode[]) {
  const p = pipeline({ model: MODEL }, nodes);
  assert(E.isRight(p), JSON.stringify(p));
  return validateGraph(p.right);
}

function expectError(nodes: StageNode[], node: string, fragment: string): void {
  const r = check(nodes);
  assert(E.isLeft(r) && r.left._tag === "GraphInvalid", "expected the graph to be rejected");
  assertEquals(r.left.node, node);
  assertStringIncludes(r.left.message, fragment);
}

Deno.test("pipeline() numbers builder nodes by stage and validateGraph() lists the stages", () => {
  const r = check([
    train({ layers: 3, steps: 40, scheduleSteps: 53 }),
    grow({ add: 2 }),
    attachPET({ kind: "relora", rank: 4 }),
    continueTraining({ steps: 20 }),
    grow({ add: 1 }),
    attachPET({ kind: "relora", rank: 4 }),
    continueTraining({ steps: 10 }),
    evaluate(),
  ]);
  assert(E.isRight(r));
  assertEquals(r.right.pipeline.nodes.map((n) => n.id), [
    "s1.train",
    "s2.grow",
    "s2.attachPET",
    "s2.continue",
    "s3.grow",
    "s3.attachPET",
    "s3.continue",
    "s3.eval",
  ]);
  assertEquals(graphSplit(r.right), [3, 2, 1]);
  assertEquals(r.right.stages.map((s) => s.layers), [3, 5, 6]);
  assertEquals(r.right.stages[1]?.pet?.alpha, 32);
  assertEquals(r.right.stages[1]?.growth?.placement, "upper");
  assertEquals(r.right.stages[0]?.scheduleSteps, 53);
});

Deno.test("validateGraph() rejects depth beyond the target, naming the node", () => {
  expectError(
    [train({ layers: 4, steps: 5 }), grow({ add: 3 }), continueTraining({ steps: 5 })],
    "s2.grow",
    "gives 7, the target depth is 6",
  );
});

Deno.test("validateGraph() rejects a continue without a growth", () => {
  expectError(
    [train({ layers: 6, steps: 5 }), continueTraining({ steps: 5 })],
    "s1.continue",
    "must follow a `grow`",
  );
});

Deno.test("validateGraph() reads attachPET straight after a stage as ReLoRA: every layer adapted", () => {
  const r = check([
    train({ layers: 6, steps: 10, scheduleSteps: 40 }),
    attachPET({ kind: "relora", rank: 2, trainEmbeddings: true, trainNorms: true }),
    continueTraining({ steps: 30, scheduleSteps: 40, scheduleOffset: 10 }),
  ]);
  assert(E.isRight(r), JSON.stringify(r));
  assertEquals(r.right.pipeline.nodes.map((n) => n.id), [
    "s1.train",
    "s2.attachPET",
    "s2.continue",
  ]);
  assertEquals(graphSplit(r.right), [6, 0]);
  const lora = r.right.stages[1]!;
  assertEquals(lora.roles.frozenLayers, [0, 1, 2, 3, 4, 5]);
  assertEquals(lora.roles.newLayers, []);
  assert(lora.roles.frozenNormsTrain && lora.roles.embeddingsTrain);
  assertEquals([lora.scheduleOffset, lora.scheduleSteps, lora.growth], [10, 40, undefined]);
});

Deno.test("validateGraph() rejects attachPET before any model, and adapters never trained", () => {
  expectError([attachPET({ kind: "relora", rank: 2 })], "s2.attachPET", "before any `train`");
  expectError(
    [train({ layers: 6, steps: 5 }), attachPET({ kind: "relora", rank: 2 })],
    "s2.attachPET",
    "ends after `attachPET`",
  );
  expectError(
    [
      train({ layers: 6, steps: 5 }),
      attachPET({ kind: "relora", rank: 2 }),
      continueTraining({ steps: 5, scheduleSteps: 8, scheduleOffset: 5 }),
    ],
    "s2.continue",
    "from step 5 of its schedule, which is only 8 long",
  );
});

Deno.test("validateGraph() keeps GaLore to one full-depth stage", () => {
  const ok = check([train({ layers: 6, steps: 5, galore: { rank: 4 } })]);
  assert(E.isRight(ok));
  assertEquals<unknown>(ok.right.stages[0]?.galore, {
    rank: 4,
    updateEvery: 200,
    scale: 0.25,
    targets: ["q", "k", "v", "o", "gate", "up", "down"],
  });
  const p = pipeline({ model: MODEL }, [
    train({ layers: 4, steps: 5, galore: { rank: 4 } }),
    grow({ add: 2 }),
    continueTraining({ steps: 5 }),
  ]);
  assert(E.isRight(p));
  const r = validateGraph(p.right);
  assert(E.isLeft(r) && r.left._tag === "GraphInvalid");
  assertEquals(r.left.node, "s2.grow");
  assertStringIncludes(r.left.message, "GaLore trains one stage");
  expectError(
    [train({ layers: 6, steps: 5, galore: { rank: 4, targets: [] } })],
    "s1.train",
    "is empty",
  );
});

Deno.test("validateGraph() rejects a graph that stops short of the target depth", () => {
  expectError(
    [train({ layers: 4, steps: 5 })],
    "s1.train",
    "reaches 4 layers, the target depth is 6",
  );
});

Deno.test("validateGraph() rejects a growth that is never trained", () => {
  expectError(
    [train({ layers: 4, steps: 5 }), grow({ add: 2 })],
    "s2.grow",
    "ends after a growth",
  );
});

Deno.test("validateGraph() rejects inconsistent schedules", () => {
  expectError(
    [train({ layers: 6, steps: 50, scheduleSteps: 40 })],
    "s1.train",
    "schedule is only 40",
  );
  expectError([train({ layers: 6, steps: 50, warmup: 50 })], "s1.train", "warmup (50)");
});

Deno.test("validateGraph() rejects a rank above the adapted matrix's dimension", () => {
  expectError(
    [
      train({ layers: 4, steps: 5 }),
      grow({ add: 2 }),
      attachPET({ kind: "relora", rank: 33 }),
      continueTraining({ steps: 5 }),
    ],
    "s2.attachPET",
    "rank 33",
  );
});

Deno.test("decodePipeline() names an unknown op and a bad field", () => {
  const bad = decodePipeline(
    { version: 1, model: MODEL, nodes: [{ op: "shrink", id: "x" }] },
    "g.yaml",
  );
  assert(E.isLeft(bad));
  assertStringIncludes(bad.left.message, 'unknown op "shrink"');
  const neg = decodePipeline(
    { version: 1, model: MODEL, nodes: [{ op: "grow", id: "g", add: 0 }] },
    "g.yaml",
  );
  assert(E.isLeft(neg));
  assertStringIncludes(neg.left.message, "nodes[0].add");
});

Deno.test("validateGraph() checks the batch arithmetic a library caller could get wrong", () => {
  const nodes = [train({ layers: 6, steps: 5 })];
  const fractional = pipeline({
    model: MODEL,
    training: { seqLen: 16, microBatch: 3, batchTokens: 100 },
  }, nodes);
  assert(E.isRight(fractional));
  const r = validateGraph(fractional.right);
  assert(E.isLeft(r) && r.left._tag === "ConfigInvalid");
  assertEquals(r.left.where, "training.batchTokens");
  assertStringIncludes(r.left.message, "not a multiple of microBatch × seqLen = 48");
  const long = pipeline({ model: { ...MODEL, maxSeqLen: 32 }, training: { seqLen: 64 } }, nodes);
  assert(E.isRight(long));
  const l = validateGraph(long.right);
  assert(E.isLeft(l) && l.left._tag === "ConfigInvalid");
  assertEquals(l.left.where, "training.seqLen");
});

Deno.test("validateGraph() checks that the nodes add up to the declared FLOPs", () => {
  const nodes = [
    train({ layers: 4, steps: 40 }),
    grow({ add: 2 }),
    attachPET({ kind: "relora", rank: 4 }),
    continueTraining({ steps: 20 }),
  ];
  const training = { batchTokens: 1024, seqLen: 64, microBatch: 16 };
  const free = pipeline({ model: MODEL, training }, nodes);
  assert(E.isRight(free));
  const counted = validateGraph(free.right);
  assert(E.isRight(counted));
  // Independent count: 6·N_trained + 2·N_frozen per token with N from the layer formula.
  const P = 4 * 32 * 32 + 3 * 32 * 64 + 2 * 32;
  const adapters = 4 * (32 + 32) * 4 + 3 * 4 * (32 + 64);
  const perToken1 = 6 * 4 * P;
  const perToken2 = 6 * (2 * P + 4 * adapters) + 2 * 4 * P;
  const total = 1024 * (40 * perToken1 + 20 * perToken2);
  const declared = (flops: number) => pipeline({ model: MODEL, training, flops }, nodes);
  const ok = declared(total + 1024 * perToken2 * 0.9);
  assert(E.isRight(ok) && E.isRight(validateGraph(ok.right)));
  const off = declared(total * 1.5);
  assert(E.isRight(off));
  const r = validateGraph(off.right);
  assert(E.isLeft(r) && r.left._tag === "GraphInvalid");
  assertStringIncludes(r.left.message, `add up to ${total.toExponential(4)} FLOPs`);
});

Deno.test("validateGraph() gives growth the training seed unless the node names one", () => {
  const nodes = [
    train({ layers: 2, steps: 5 }),
    grow({ add: 2, placement: "random" }),
    continueTraining({ steps: 5 }),
    grow({ add: 2, placement: "random", seed: 9 }),
    continueTraining({ steps: 5 }),
  ];
  const p = pipeline({ model: MODEL, training: { seed: 41 } }, nodes);
  assert(E.isRight(p));
  const g = validateGraph(p.right);
  assert(E.isRight(g));
  assertEquals(g.right.stages.map((s) => s.growth?.seed), [undefined, 41, 9]);
});

Deno.test("methodLabel() names what a graph trains", () => {
  const label = (nodes: StageNode[]) => {
    const r = check(nodes);
    assert(E.isRight(r));
    return methodLabel(r.right);
  };
  assertEquals(label([train({ layers: 6, steps: 5 })]), "standard pre-training");
  assertEquals(label([train({ layers: 6, steps: 5, galore: { rank: 2 } })]), "GaLore");
  assertEquals(
    label([
      train({ layers: 6, steps: 5 }),
      attachPET({ kind: "relora", rank: 2 }),
      continueTraining({ steps: 5 }),
    ]),
    "ReLoRA",
  );
  assertEquals(
    label([train({ layers: 4, steps: 5 }), grow({ add: 2 }), continueTraining({ steps: 5 })]),
    "STEP",
  );
});
