import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { type Config, parseConfig } from "./config.ts";
import {
  comparePlan,
  type CompareRun,
  type GraphFileState,
  graphFileVerdict,
  parseMethods,
  type RunGraphEvidence,
} from "./compare_plan.ts";
import { flopsAtStep, stagePricesPerToken } from "./run_flops.ts";
import { validateGraph } from "./validate_graph.ts";

const YAML_TEXT = `
name: cmp
model: { hidden: 64, intermediate: 176, heads: 4, layers: 6, vocab: 257, maxSeqLen: 64 }
pet: { rank: 8, resetEvery: 20, restartWarmup: 4 }
galore: { rank: 8, updateEvery: 10 }
budget: { standardSteps: 60 }
training: { seqLen: 64, microBatch: 8, batchTokens: 512, warmup: 5 }
compare: { secondCorpus: { builtin: { seed: 7 } }, secondLabel: other }
`;

function config(extra = ""): Config {
  const c = parseConfig(YAML_TEXT + extra, "cmp.yaml");
  assert(E.isRight(c), JSON.stringify(c));
  return c.right;
}

function plan(c: Config, names: string[], splits: [number, number[]][] = []): CompareRun[] {
  const methods = parseMethods(names, c.shape.layers, "test");
  assert(E.isRight(methods));
  const p = comparePlan(c, { methods: methods.right, seeds: 2, splits: new Map(splits) });
  assert(E.isRight(p), JSON.stringify(p));
  return [...p.right.runs];
}

Deno.test("comparePlan() gives every method the same compute, within one step per stage", () => {
  for (const accounting of ["paper", "executed"] as const) {
    const c = config();
    const cc: Config = { ...c, budget: { ...c.budget, accounting } };
    const runs = plan(cc, ["standard", "relora", "galore", "step-2", "step-3"], [[2, [4, 2]], [
      3,
      [3, 2, 1],
    ]]);
    assertEquals(runs.length, 10);
    assertEquals(runs.map((r) => r.id).slice(0, 3), ["standard-s0", "standard-s1", "relora-s0"]);
    const standard = runs.find((r) => r.method === "standard")!;
    const C = accounting === "paper" ? standard.flops.paper : standard.flops.executed;
    for (const r of runs) {
      const g = validateGraph(r.graph);
      assert(E.isRight(g));
      const prices = stagePricesPerToken(g.right, accounting);
      const oneStepEach = prices.reduce((a, p) => a + p * 512, 0);
      const spent = accounting === "paper" ? r.flops.paper : r.flops.executed;
      assert(
        Math.abs(spent - C) <= oneStepEach,
        `${r.id} (${accounting}): ${spent} vs ${C}, one step per stage ${oneStepEach}`,
      );
      // The last stage end is the whole run's compute in the matched accounting.
      assertEquals(r.flops.stageEnds.at(-1)?.flops, spent);
      assertEquals(flopsAtStep(r.flops, r.flops.steps), spent);
    }
    // Cheaper steps buy ReLoRA and STEP more tokens than standard training.
    const tokens = (m: string) => runs.find((r) => r.method === m)!.flops.tokens;
    assert(tokens("relora") > tokens("standard") && tokens("step-2") > tokens("standard"));
  }
});

Deno.test("comparePlan() builds ReLoRA as warm start + adapters on every layer on one cosine", () => {
  const c = config();
  const [r] = plan(c, ["relora"]);
  const g = validateGraph(r!.graph);
  assert(E.isRight(g));
  const [warm, lora] = g.right.stages;
  assertEquals([warm!.layers, lora!.added], [6, 0]);
  assertEquals(lora!.roles.frozenLayers.length, 6);
  assert(lora!.roles.embeddingsTrain && lora!.roles.frozenNormsTrain);
  assertEquals(lora!.scheduleOffset, warm!.steps);
  assertEquals(lora!.scheduleSteps, warm!.steps + lora!.steps);
  // A quarter of the compute goes to the warm start (the default).
  const prices = stagePricesPerToken(g.right, "paper");
  const warmShare = prices[0]! * warm!.steps / (r!.flops.paper / 512);
  assert(Math.abs(warmShare - 0.25) < 0.02, `warm start share ${warmShare}`);
  // The last node evaluates on the second corpus.
  const last = r!.graph.nodes.at(-1)!;
  assert(last.op === "eval" && last.label === "other");
});

Deno.test("comparePlan() trains GaLore with the configured projector at training.lr / scale", () => {
  const c = config();
  const [r] = plan(c, ["galore"]);
  const node = r!.graph.nodes[0]!;
  assert(node.op === "train" && node.galore !== undefined);
  assertEquals(node.galore.rank, 8);
  assertEquals(node.lr, c.training.lr / 0.25);
});

Deno.test("parseMethods() and comparePlan() refuse bad input before anything trains", () => {
  const bad = (names: string[], fragment: string) => {
    const r = parseMethods(names, 6, "--methods");
    assert(E.isLeft(r));
    assertEquals(r.left.where, "--methods");
    assertStringIncludes(r.left.message, fragment);
  };
  bad(["standard", "lora"], 'unknown method "lora"');
  bad(["step-7"], "STEP needs 2 to 6 stages");
  bad(["step-1"], "STEP needs 2 to 6 stages");
  bad(["galore", "galore"], "listed twice");
  const c = config();
  const tiny: Config = { ...c, budget: { ...c.budget, total: { kind: "flops", flops: 1e6 } } };
  const methods = parseMethods(["standard"], 6, "m");
  assert(E.isRight(methods));
  const r = comparePlan(tiny, { methods: methods.right, seeds: 1, splits: new Map() });
  assert(E.isLeft(r));
  assertStringIncludes(r.left.message, "less than one step");
});

Deno.test("comparePlan() runs the seeds each method is given", () => {
  const c = config();
  const methods = parseMethods(["standard", "galore", "step-2"], 6, "m");
  assert(E.isRight(methods));
  const p = comparePlan(c, {
    methods: methods.right,
    seeds: { standard: 3, "step-2": 2 },
    splits: new Map([[2, [4, 2]]]),
  });
  assert(E.isRight(p));
  assertEquals(p.right.runs.map((r) => r.id), [
    "standard-s0",
    "standard-s1",
    "standard-s2",
    "galore-s0",
    "step-2-s0",
    "step-2-s1",
  ]);
  assertEquals(p.right.runs.map((r) => Number(r.graph.training?.seed)), [0, 1, 2, 0, 0, 1]);
});

Deno.test("graphFileVerdict() lets the run's own record tell a changed config from a damaged file", () => {
  const damaged: GraphFileState = { kind: "damaged", reason: "not valid YAML" };
  const at = (x: Partial<RunGraphEvidence>): RunGraphEvidence => ({
    graphFile: "o/graphs/r.yaml",
    graphFileState: { kind: "graph", graphId: "aaaa" },
    runDir: "o/runs/r",
    started: true,
    now: "aaaa",
    ...x,
  });
  const ckpt = (graphId: string) => ({ graphId, file: "o/runs/r/checkpoint/state.json" });
  const kind = (x: Partial<RunGraphEvidence>) => graphFileVerdict(at(x)).kind;

  // The record differs from the config's graph: the config changed, whatever the file holds.
  for (const graphFileState of [damaged, { kind: "graph", graphId: "aaaa" } as const]) {
    const v = graphFileVerdict(at({ recorded: ckpt("bbbb"), graphFileState }));
    assert(v.kind === "refuse");
    assertStringIncludes(v.error.message, "o/runs/r/checkpoint/state.json records graph bbbb");
    assertStringIncludes(v.error.message, "the config changed since");
  }
  // No record yet: the file it was started from speaks for it.
  assertEquals(kind({ graphFileState: { kind: "graph", graphId: "bbbb" } }), "refuse");
  assertEquals(
    kind({ started: false, graphFileState: { kind: "graph", graphId: "bbbb" } }),
    "write",
  );
  // A damaged file is rebuilt, named, with or without a record that matches.
  for (const recorded of [ckpt("aaaa"), undefined]) {
    const v = graphFileVerdict(at({ graphFileState: damaged, ...(recorded ? { recorded } : {}) }));
    assert(v.kind === "write");
    assertStringIncludes(v.note ?? "", "o/graphs/r.yaml is damaged (not valid YAML)");
  }
  assertEquals(
    kind({ recorded: ckpt("aaaa"), graphFileState: { kind: "graph", graphId: "cccc" } }),
    "write",
  );
  assertEquals(kind({ recorded: ckpt("aaaa") }), "keep");
  assertEquals(kind({ started: false, graphFileState: { kind: "absent" } }), "write");
});
