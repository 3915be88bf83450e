/**
 * A run that reads its corpus from token shards, killed with SIGKILL between two checkpoints,
 * resumes to exactly the batches the uninterrupted run read: every training loss and validation
 * loss equal, and the data position in the final checkpoint equal. Once for one source, once for
 * two weighted sources (a mixture, whose position is one `{ epoch, cursor }` per source).
 */
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main } from "../cli/run.ts";
import { stopAtCheckpoint } from "./kill_run.ts";
import { ofType, runMetrics } from "./metrics.ts";

const STEPS = 60;

function graph(source: unknown, cacheDir: string): unknown {
  return {
    version: 1,
    name: "tiny-data-resume",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 32 },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 4,
      batchTokens: 128,
      lr: 0.01,
      warmup: 3,
      evalEvery: 10,
      evalBatches: 2,
      checkpointEvery: 5,
      logEvery: 10,
      seed: 5,
    },
    data: { source, builtinBytes: 20000, cacheDir },
    nodes: [{ op: "train", id: "t", layers: 2, steps: STEPS }],
  };
}

async function run(...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(args, (l) => lines.push(l));
  return { code, out: lines.join("\n") };
}

async function finalPosition(dir: string): Promise<unknown> {
  const state = JSON.parse(await Deno.readTextFile(`${dir}/checkpoint/state.json`));
  return state.progress.data;
}

const SOURCES: [string, unknown][] = [
  ["one source", "builtin"],
  ["two weighted sources", [
    { builtin: { seed: 1, bytes: 20000 }, weight: 3 },
    { builtin: { seed: 2, bytes: 6000 }, weight: 1 },
  ]],
];

for (const [name, source] of SOURCES) {
  Deno.test({
    name:
      `run: a shard-backed run (${name}) killed between checkpoints resumes to the same batches`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "step-data-resume-" });
      try {
        const file = `${dir}/g.yaml`;
        await Deno.writeTextFile(file, YAML.stringify(graph(source, `${dir}/tokens`)));
        const whole = await run(file, "--out", `${dir}/whole`);
        assertEquals(whole.code, 0, whole.out);
        if (Array.isArray(source)) assertStringIncludes(whole.out, "2 sources mixed 3:1");

        const { at } = await stopAtCheckpoint(
          [file, "--out", `${dir}/killed`],
          `${dir}/killed`,
          { nodeIndex: 0, minStep: 10 },
        );
        assert(at >= 10 && at < STEPS, `killed at step ${at}`);
        const resumed = await run(file, "--out", `${dir}/killed`, "--resume");
        assertEquals(resumed.code, 0, resumed.out);
        assertStringIncludes(resumed.out, "Resumed at node");

        const a = await runMetrics(`${dir}/whole`);
        const b = await runMetrics(`${dir}/killed`);
        const train = (m: typeof a) => ofType(m, "train").map((r) => [r.step, r.loss]);
        const evals = (m: typeof a) => ofType(m, "eval").map((r) => [r.globalStep, r.valLoss]);
        assertEquals(train(b), train(a));
        assertEquals(train(a).length, STEPS);
        assertEquals(evals(b), evals(a));
        assertEquals(await finalPosition(`${dir}/killed`), await finalPosition(`${dir}/whole`));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
