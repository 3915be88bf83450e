/**
 * The README's main job on the torch engine against the bare PyTorch loop for the same steps:
 * `deno task run examples/pipeline.ts --engine torch` timed as a user times it (the whole
 * command: start-up, planning, data, every stage's launch, evaluations, checkpoints, the final
 * merge), then `bench/bare_loop_torch.py` once per stage for exactly that stage's steps: the
 * stage's model (its depth; for the last stage its frozen weights, adapters and trainable set,
 * read from the run's last exchange directory), the same rows per step, micro-batches and
 * sequence length, the run's own token file (the first its training split's segment table
 * names), timed as a process from start to exit. The bare
 * loop neither evaluates nor saves: the difference is everything the engine does around its
 * steps.
 *
 * Run: `deno run -A --unstable-webgpu bench/torch_job_bench.ts [--rounds N]` (default 1 round;
 * with more, rounds alternate the sides and the medians are printed).
 *
 * @module
 */
import { runOrThrow } from "./peer.ts";
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import { parseArgs } from "node:util";
import YAML from "yaml";
import { median } from "../base/mod.ts";
import { initialSnapshot } from "../checkpoint/mod.ts";
import { findTorchPython, writeExchange } from "../effects/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BARE_LOOP = new URL("./bare_loop_torch.py", import.meta.url).pathname;

/** What report.json says of a stage (the fields read here). */
interface StageReport {
  readonly stage: number;
  readonly layers: number;
  readonly steps: number;
  readonly wallSeconds: number;
  readonly trainableParams: number;
  readonly frozenParams: number;
  readonly adapterParams: number;
}

/** The bare loop's reading: its loop's time and its model's parameters by role. */
interface BareResult {
  readonly stepMs: number;
  readonly trainableParams: number;
  readonly frozenParams: number;
  readonly adapterParams: number;
}

/** One round: the job's wall time and each stage's, and the bare loop's per stage. */
export interface JobRound {
  readonly engineSeconds: number;
  readonly engineStageSeconds: readonly number[];
  readonly bareSeconds: number;
  readonly bareStageSeconds: readonly number[];
  readonly bareLoopSeconds: readonly number[];
}

async function runJob(out: string): Promise<{ seconds: number; stages: StageReport[] }> {
  const { seconds } = await runOrThrow("the README's job", Deno.execPath(), [
    ...["run", "--allow-all", "--unstable-webgpu", path.join(ROOT, "cli/run.ts")],
    ...[path.join(ROOT, "examples/pipeline.ts"), "--engine", "torch", "--out", out],
  ]);
  const report = JSON.parse(await Deno.readTextFile(path.join(out, "report.json"))) as {
    stages?: StageReport[];
  };
  if (!Array.isArray(report.stages) || report.stages.length === 0) {
    throw new Error(`${out}/report.json has no stages`);
  }
  return { seconds, stages: report.stages };
}

async function bareStage(
  python: string,
  init: string,
  tokens: string,
  dtype: string,
  t: { rows: number; micro: number; seq: number; steps: number },
  adapters: { rank: number; scale: number } | undefined,
  threads: number,
): Promise<{ seconds: number; loopSeconds: number; result: BareResult }> {
  const { lastLine, seconds } = await runOrThrow("bare_loop_torch.py", python, [
    BARE_LOOP,
    ...["--init", init, "--tokens", tokens, "--dtype", dtype, "--batch", String(t.rows)],
    ...["--micro", String(t.micro), "--seq", String(t.seq), "--steps", String(t.steps)],
    ...["--warmup", "0", "--threads", String(threads)],
    ...(adapters === undefined
      ? []
      : ["--adapt-frozen", String(adapters.rank), "--lora-scale", String(adapters.scale)]),
  ], { OMP_NUM_THREADS: String(threads) });
  const result = JSON.parse(lastLine) as BareResult;
  return { seconds, loopSeconds: (result.stepMs * t.steps) / 1000, result };
}

/** One round of both sides (`engineFirst` orders them). */
async function round(python: string, engineFirst: boolean): Promise<JobRound> {
  const dir = await Deno.makeTempDir({ prefix: "step-torch-job-" });
  try {
    const out = path.join(dir, "out");
    let job: { seconds: number; stages: StageReport[] } | undefined;
    if (engineFirst) job = await runJob(out);
    // The bare side needs the run's files (token file, graph, last exchange): a first run
    // provides them when the bare loop goes first, and the timed run follows it.
    const files = engineFirst ? out : path.join(dir, "files");
    if (!engineFirst) await runJob(files);
    const graph = YAML.parse(await Deno.readTextFile(path.join(files, "pipeline.yaml"))) as {
      training: { seqLen: number; microBatch: number; batchTokens: number };
      nodes: { op: string; rank?: number; alpha?: number }[];
    };
    const pet = graph.nodes.find((n) => n.op === "attachPET");
    const report = JSON.parse(await Deno.readTextFile(path.join(files, "report.json"))) as {
      stages: StageReport[];
    };
    const last = path.join(files, "torch", "exchange", "in");
    const shape = JSON.parse(await Deno.readTextFile(path.join(last, "state.json"))).shape;
    const { seqLen, microBatch, batchTokens } = graph.training;
    // The run's training tokens: the first file its segment table names (a token shard, or the
    // split written from memory), read whole by the bare loop.
    const table = JSON.parse(
      await Deno.readTextFile(path.join(files, "torch", "data", "train.segments.json")),
    ) as { files: { path: string; dtype: string }[] };
    const tokenFile = table.files[0];
    if (tokenFile === undefined) throw new Error(`${files}: the training split has no token file`);
    const dtype = tokenFile.dtype === "<u4" ? "uint32" : "uint16";
    const threads = navigator.hardwareConcurrency;
    const bare: { seconds: number; loopSeconds: number }[] = [];
    for (const [i, st] of report.stages.entries()) {
      // The last stage from the run's last exchange directory: the final merge's model, whose
      // trainable set is the stage's full-rank one; adapters go back on its frozen projections
      // (the README's graph adapts every frozen layer). The parameter counts are checked
      // against the run's report below, so a stage built otherwise is an error, not a figure.
      let init = last;
      const adapted = i === report.stages.length - 1 && st.adapterParams > 0;
      if (adapted && (pet?.rank === undefined || pet.alpha === undefined)) {
        throw new Error(
          `${files}/pipeline.yaml: stage ${st.stage} has adapters but no attachPET rank`,
        );
      }
      if (i < report.stages.length - 1) {
        // Earlier stages train every weight of a fresh model of their depth (STEP's first
        // stage; the graph's later stages start from surgery and are read from the run).
        init = path.join(dir, `stage-${st.stage}`);
        const written = await writeExchange(init, initialSnapshot(shape, st.layers, 1), shape)();
        if (E.isLeft(written)) throw new Error(written.left.message);
      }
      const b = await bareStage(
        python,
        init,
        tokenFile.path,
        dtype,
        {
          rows: batchTokens / seqLen,
          micro: microBatch,
          seq: seqLen,
          steps: st.steps,
        },
        adapted ? { rank: pet!.rank!, scale: pet!.alpha! / pet!.rank! } : undefined,
        threads,
      );
      for (const role of ["trainableParams", "frozenParams", "adapterParams"] as const) {
        if (b.result[role] !== st[role]) {
          throw new Error(
            `stage ${st.stage}: the bare loop's model has ${b.result[role]} ${role}, the run's ` +
              `report ${st[role]}: not the same model`,
          );
        }
      }
      bare.push(b);
    }
    if (!engineFirst) job = await runJob(out);
    return {
      engineSeconds: job!.seconds,
      engineStageSeconds: job!.stages.map((s) => s.wallSeconds),
      bareSeconds: bare.reduce((a, b) => a + b.seconds, 0),
      bareStageSeconds: bare.map((b) => b.seconds),
      bareLoopSeconds: bare.map((b) => b.loopSeconds),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string", default: "1" }, python: { type: "string" } },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    console.error(`torch_job_bench: --rounds must be a positive integer, got ${values.rounds}`);
    Deno.exit(2);
  }
  const found = await findTorchPython(values.python);
  if (E.isLeft(found)) {
    console.error(`torch_job_bench: ${found.left.message}`);
    Deno.exit(2);
  }
  const results: JobRound[] = [];
  for (let r = 0; r < rounds; r++) {
    const x = await round(found.right.python, r % 2 === 0);
    results.push(x);
    const s = (v: readonly number[]) => v.map((n) => n.toFixed(1)).join(" + ");
    console.log(
      `round ${r + 1}: engine ${x.engineSeconds.toFixed(1)} s (stages ${
        s(x.engineStageSeconds)
      } s), bare loop ${x.bareSeconds.toFixed(1)} s (processes ${s(x.bareStageSeconds)} s; ` +
        `loops ${s(x.bareLoopSeconds)} s), engine/bare ${
          (x.engineSeconds / x.bareSeconds).toFixed(2)
        }`,
    );
  }
  const engine = median(results.map((x) => x.engineSeconds));
  const bare = median(results.map((x) => x.bareSeconds));
  console.log(
    `torch ${found.right.version}: README job --engine torch ${engine.toFixed(1)} s, bare loop ` +
      `${bare.toFixed(1)} s for the same steps, ratio ${
        (engine / bare).toFixed(2)
      } (median of ${rounds})`,
  );
}
