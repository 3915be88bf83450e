/**
 * `deno task plan` end to end: the paper's figures through the CLI, the files
 * it writes, and its refusals of bad input.
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { assert, assertAlmostEquals, assertEquals, assertStringIncludes } from "./assert.ts";
import { main } from "../cli/plan.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { decodePipeline } from "../pipeline/stage_graph.ts";
import { graphSplit, validateGraph } from "../pipeline/validate_graph.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CONFIGS = `${ROOT}examples/configs`;

function plan(...args: string[]): Promise<Captured> {
  return capture(main, args);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("plan --json: 680M optimum is [14, 10] at 6.34 GB against 10.87 GB", async () => {
  const r = await plan(`${CONFIGS}/paper-680m.yaml`, "--json");
  assertEquals(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assertEquals(j.split, [14, 10]);
  assertAlmostEquals(j.peakBytes / 1e9, 6.34, 0.005);
  assertAlmostEquals(j.standardBytes / 1e9, 10.87, 0.005);
  assertAlmostEquals(j.reduction, 1 - j.peakBytes / j.standardBytes, 1e-12);
  assertEquals(j.stages.map((s: { layers: number }) => s.layers), [14, 24]);
  assertEquals(j.stages.map((s: { added: number }) => s.added), [14, 10]);
  assertEquals(j.baselines.standard, j.standardBytes);
  assertEquals(j.baselines.relora, j.standardBytes);
  assertAlmostEquals(j.baselines.galore / 1e9, 6.0, 0.05);
  assertEquals(j.solver.name, "highs");
  assertEquals(j.assumptions.precision, "mixed");
  assert(!j.assumptions.embeddings);
});

Deno.test("plan --split evaluates the paper's 1.2B [11, 8, 5] and 368M [7, 5]", async () => {
  const big = JSON.parse(
    (await plan(`${CONFIGS}/paper-1.2b.yaml`, "--split", "11,8,5", "--json")).out,
  );
  assertEquals(big.split, [11, 8, 5]);
  assertEquals(big.solver.name, "given");
  assertAlmostEquals(big.peakBytes / 1e9, 8.86, 0.005);
  assertAlmostEquals(big.standardBytes / 1e9, 19.33, 0.005);
  const small = JSON.parse(
    (await plan(`${CONFIGS}/paper-368m.yaml`, "--split", "7,5", "--json")).out,
  );
  assertAlmostEquals(small.peakBytes / 1e9, 3.43, 0.01);
  assertAlmostEquals(small.standardBytes / 1e9, 5.89, 0.005);
});

Deno.test("plan reports the true optimum of Eq. 3 for 1.2B: [13, 11] and [10, 8, 6]", async () => {
  const two = JSON.parse((await plan(`${CONFIGS}/paper-1.2b.yaml`, "--stages", "2", "--json")).out);
  assertEquals(two.split, [13, 11]);
  const three = JSON.parse(
    (await plan(`${CONFIGS}/paper-1.2b.yaml`, "--stages", "3", "--json")).out,
  );
  assertEquals(three.split, [10, 8, 6]);
  assert(three.peakBytes < 8.86e9);
});

Deno.test("plan --budget finds the fewest stages that fit", async () => {
  const r = JSON.parse((await plan(`${CONFIGS}/paper-1.2b.yaml`, "--budget", "9GB", "--json")).out);
  assertEquals(r.split.length, 3);
  assert(r.peakBytes <= 9e9);
  const probed = r.budgetSearch.find((p: { stages: number }) => p.stages === 2);
  assert(probed.peakBytes > 9e9, "two stages must not fit, or three would not be the fewest");
});

Deno.test("plan --emit writes a stage graph that decodes and validates to the same split", async () => {
  const dir = await Deno.makeTempDir();
  const r = await plan(
    `${CONFIGS}/paper-680m.yaml`,
    "--emit",
    `${dir}/g.yaml`,
    "--svg",
    `${dir}/m.svg`,
  );
  assertEquals(r.code, 0, r.err);
  const doc = YAML.parse(await Deno.readTextFile(`${dir}/g.yaml`));
  const graph = decodePipeline(doc, "g.yaml");
  assert(E.isRight(graph));
  const valid = validateGraph(graph.right);
  assert(E.isRight(valid));
  assertEquals(graphSplit(valid.right), [14, 10]);
  assertEquals(valid.right.stages[1]?.pet?.rank, 128);
  const svg = await Deno.readTextFile(`${dir}/m.svg`);
  assertStringIncludes(svg, "<svg");
  assertStringIncludes(svg, "stage 2 (24L)");
  assertStringIncludes(svg, "standard");
});

const MODEL = "model: {hidden: 64, intermediate: 172, heads: 4, layers: 6, vocab: 256}\n";

const BAD: readonly [string, string, string[], string][] = [
  ["malformed YAML", "model: [1, 2\n", [], "not valid YAML"],
  ["unknown field", MODEL + "plan: {stagez: 2}\n", [], 'unknown field "stagez"'],
  [
    "missing field",
    "model: {hidden: 64, intermediate: 172, heads: 4, vocab: 256}\n",
    [],
    "model.layers",
  ],
  ["negative size", MODEL.replace("hidden: 64", "hidden: -64"), [], "model.hidden"],
  ["non-integer size", MODEL.replace("layers: 6", "layers: 6.5"), [], "model.layers"],
  ["heads not dividing hidden", MODEL.replace("heads: 4", "heads: 5"), [], '"heads" (5)'],
  ["split not adding up", MODEL, ["--split", "2,3"], "adds up to 5 layers, the model has 6"],
  ["impossible budget", MODEL, ["--budget", "1MB"], "smallest achievable peak"],
  ["unreadable budget", MODEL, ["--budget", "lots"], '"lots"'],
  ["too many stages", MODEL, ["--stages", "7"], "between 1 and L = 6"],
  ["unknown flag", MODEL, ["--stagez", "2"], "stagez"],
];

for (const [what, text, flags, fragment] of BAD) {
  Deno.test(`plan rejects ${what} with a message naming it, and writes nothing`, async () => {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(`${dir}/c.yaml`, text);
    const r = await plan(
      `${dir}/c.yaml`,
      ...flags,
      "--emit",
      `${dir}/g.yaml`,
      "--svg",
      `${dir}/m.svg`,
    );
    assert(r.code !== 0, `exit code ${r.code}`);
    assertStringIncludes(r.err, fragment);
    assert(!(await exists(`${dir}/g.yaml`)));
    assert(!(await exists(`${dir}/m.svg`)));
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["c.yaml"]);
  });
}

Deno.test("plan refuses --emit and --svg naming the same file, and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/c.yaml`, MODEL);
  const r = await plan(`${dir}/c.yaml`, "--emit", `${dir}/out`, "--svg", `${dir}/./out`);
  assertEquals(r.code, 2);
  assertStringIncludes(r.err, "--emit/--svg");
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["c.yaml"]);
});

Deno.test("plan labels a split no solver chose: forced by one stage or by the minimum", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/c.yaml`, MODEL + "plan: {minLayers: 2}\n");
  for (const stages of ["1", "3"]) {
    const r = await plan(`${dir}/c.yaml`, "--stages", stages, "--json");
    assertEquals(r.code, 0, r.err);
    assertEquals(JSON.parse(r.out).solver.name, "forced", `${stages} stages`);
  }
  const solved = JSON.parse((await plan(`${dir}/c.yaml`, "--stages", "2", "--json")).out);
  assertEquals(solved.solver.name, "highs");
});

Deno.test("plan names a missing config file", async () => {
  const r = await plan("/nonexistent/plan.yaml");
  assertEquals(r.code, 4);
  assertStringIncludes(r.err, "/nonexistent/plan.yaml");
});

Deno.test("`deno task plan` runs as docs/planning.md writes it (task permissions included)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "plan", "examples/configs/paper-680m.yaml", "--json"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  assertEquals(JSON.parse(text.slice(text.indexOf("{"))).split, [14, 10]);
});

Deno.test("plan: a budget that is not a size is an input error naming plan.budget", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.yaml`;
  await Deno.writeTextFile(
    path,
    YAML.stringify({
      model: { hidden: 64, intermediate: 176, heads: 4, layers: 4, vocab: 257 },
      plan: { budget: "lots" },
    }),
  );
  const r = await plan(path);
  assertEquals(r.code, 2);
  assertStringIncludes(r.err, "plan.budget");
  assertStringIncludes(r.err, '"lots"');
});

Deno.test("plan: memory.activations: true counts the step the training section describes", async () => {
  const dir = await Deno.makeTempDir();
  const model = { hidden: 64, intermediate: 176, heads: 4, layers: 6, vocab: 257, maxSeqLen: 64 };
  const training = {
    seqLen: 32,
    microBatch: 2,
    batchTokens: 192,
    recompute: "layers",
    lossChunk: 16,
  };
  const write = async (name: string, activations: unknown) => {
    const path = `${dir}/${name}.yaml`;
    await Deno.writeTextFile(
      path,
      YAML.stringify({
        model,
        training,
        memory: { precision: "fp32", embeddings: true, activations },
      }),
    );
    return JSON.parse((await plan(path, "--json")).out);
  };
  const fromTraining = true;
  const implied = await write("implied", fromTraining);
  const spelled = await write("spelled", {
    microBatch: 2,
    seqLen: 32,
    recompute: true,
    lossChunk: 16,
    accumulation: 3,
    updateBuffers: 0,
  });
  assertEquals(implied.stages, spelled.stages);
  assertEquals(implied.assumptions, spelled.assumptions);
  // Without recomputation the same step holds more.
  const kept = await write("kept", { recompute: false });
  assert(kept.standardBytes > implied.standardBytes);
});
