/**
 * `deno task compare` end to end on `examples/configs/compare-smoke.yaml`: every method runs in
 * its own process at the same compute, the report has what it must, a second call runs nothing
 * again, an interrupted run resumes, and bad input stops before anything trains.
 */
import { dirname, join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { capture } from "./cli_capture.ts";
import { main } from "../cli/compare.ts";
import type { RunRow } from "../report/mod.ts";

const SMOKE = "examples/configs/compare-smoke.yaml";
/** The smoke config's `compare.eval.dataDir` (the default), relative to the working directory. */
const HAVE_SHARED = await Deno.stat("../shared/data").then((s) => s.isDirectory, () => false);
const METHODS = ["standard", "relora", "galore", "step-2", "step-3"];

type Row = RunRow;

async function report(dir: string): Promise<{ runs: Row[]; summary: { method: string }[] }> {
  return JSON.parse(await Deno.readTextFile(join(dir, "report.json")));
}

async function mtime(path: string): Promise<number> {
  return (await Deno.stat(path)).mtime?.getTime() ?? 0;
}

Deno.test({
  name: "compare runs every method at equal compute, resumes, and never reruns a finished run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "compare-" });
    try {
      const first = await capture(main, [SMOKE, "--out", dir]);
      assertEquals(first.code, 0, first.err);
      const r = await report(dir);
      assertEquals(r.runs.map((x) => x.method), METHODS);
      assertEquals(r.summary.map((x) => x.method), METHODS);
      const C = r.runs[0]!.flops;
      for (const row of r.runs) {
        // Matched to within a few steps' worth (steps are whole numbers per stage).
        assert(Math.abs(row.flopsPaper - C) / C < 0.03, `${row.method}: ${row.flopsPaper} vs ${C}`);
        assert(row.flopsExecuted > row.flopsPaper, `${row.method}: executed counts more`);
        for (const k of ["valLoss", "secondPerplexity", "measuredPeakBytes", "wallSeconds"]) {
          const v = row[k as keyof Row];
          assert(typeof v === "number" && v > 0 && Number.isFinite(v), `${row.method}.${k} = ${v}`);
        }
        assert(
          Math.abs(row.predictedPeakBytes! / row.measuredPeakBytes! - 1) < 0.05,
          `${row.method}: predicted ${row.predictedPeakBytes}, measured ${row.measuredPeakBytes}`,
        );
      }
      const by = (m: string) => r.runs.find((x) => x.method === m)!;
      // Memory as the methods promise it: GaLore's and STEP's model state below standard's.
      const state = (m: string) => by(m).accountedStateBytes!;
      assert(state("galore") < state("standard") && state("step-2") < state("standard"));
      assert(by("relora").tokens > by("standard").tokens);
      for (const f of ["report.md", "loss_vs_flops.svg", "memory.svg"]) {
        assert((await Deno.stat(join(dir, f))).size > 0, f);
      }
      assertStringIncludes(await Deno.readTextFile(join(dir, "report.md")), "| step-2 | 1 |");
      // Zero-shot tasks and WikiText on each final model, where the shared data is.
      if (HAVE_SHARED) {
        for (const row of r.runs) {
          assertEquals(Object.keys(row.zeroShot ?? {}).sort(), [
            "arc_easy",
            "hellaswag",
            "lambada",
            "piqa",
          ]);
          assert(row.zeroShotMean! >= 0 && row.zeroShotMean! <= 1, `${row.method} zero-shot`);
          // PIQA 1/2, HellaSwag 1/4, ARC-Easy about 1/4, LAMBADA 0.
          assert(Math.abs(row.zeroShotChance! - 0.25) < 0.01, `${row.method} chance`);
          assert(
            row.wikitextPerplexity! > 1 && row.wikitextBitsPerByte! > 0,
            `${row.method} wikitext`,
          );
        }
      } else {
        assertStringIncludes(first.out, "Zero-shot evaluation skipped");
        assert(r.runs.every((x) => x.zeroShotMean === null && x.wikitextPerplexity === null));
      }

      // A second call runs nothing again.
      const metrics = join(dir, "runs", "standard-s0", "metrics.jsonl");
      const before = await mtime(metrics);
      const again = await capture(main, [SMOKE, "--out", dir]);
      assertEquals(again.code, 0, again.err);
      assertEquals((again.out.match(/finished earlier, not run again/g) ?? []).length, 5);
      if (HAVE_SHARED) {
        assertEquals((again.out.match(/evaluated earlier, not evaluated again/g) ?? []).length, 5);
      }
      assertEquals(await mtime(metrics), before);

      // A run interrupted after its last checkpoint resumes from it.
      const step2 = join(dir, "runs", "step-2-s0");
      await Deno.remove(join(step2, "report.json"));
      await Deno.remove(join(step2, "final"), { recursive: true });
      const resumed = await capture(main, [SMOKE, "--out", dir]);
      assertEquals(resumed.code, 0, resumed.err);
      assertStringIncludes(resumed.out, "=== step-2-s0: resuming");
      if (HAVE_SHARED) assertStringIncludes(resumed.out, "=== step-2-s0: evaluating");
      assertEquals((await report(dir)).runs.map((x) => x.valLoss), r.runs.map((x) => x.valLoss));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("compare refuses bad input before anything trains, writing nothing", async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "compare-bad-" }), "out");
  const cases: [string[], string][] = [
    [["--methods", "standard,lora"], 'unknown method "lora"'],
    [["--methods", "step-9"], "STEP needs 2 to 4 stages"],
    [["--seeds", "0"], "--seeds: expected an integer ≥ 1"],
    [["--accounting", "wallclock"], 'unknown accounting "wallclock"'],
  ];
  for (const [flags, fragment] of cases) {
    const r = await capture(main, [SMOKE, "--out", dir, ...flags]);
    assert(r.code !== 0, flags.join(" "));
    assertStringIncludes(r.err, fragment);
  }
  const tiny = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(
    tiny,
    (await Deno.readTextFile(SMOKE)).replace("standardSteps: 40", "flops: 1.0e+6"),
  );
  const r = await capture(main, [tiny, "--out", dir]);
  assert(r.code !== 0);
  assertStringIncludes(r.err, "less than one step");
  await Deno.remove(tiny);
  let exists = true;
  await Deno.stat(dir).catch(() => (exists = false));
  assert(!exists, "nothing is written for bad input");
  await Deno.remove(dirname(dir), { recursive: true });
});
