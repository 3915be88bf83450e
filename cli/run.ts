/**
 * `deno task run PIPELINE [--out DIR] [--resume | --force] [--dry-run] [--backend NAME]`
 *
 * PIPELINE is a stage graph — a TypeScript module exporting `pipeline`, or a
 * YAML/JSON file such as `deno task plan --emit` writes — or a plain config
 * (`model:`, `training:`, `data:` and no `nodes:`), which runs as standard
 * pre-training: one `train` node of the full depth.
 *
 * The composition root of training: decodes and validates the graph before
 * any tensor exists, wires the effects (`effects/env.ts`), runs the
 * interpreter, writes the report.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { dirname } from "node:path";
import YAML from "yaml";
import {
  configInvalid,
  exitCode,
  NonNegativeInt,
  type PipelineError,
  renderError,
} from "../base/mod.ts";
import { checkOutput, RUN_DIR, RUN_OUTPUTS } from "../checkpoint/mod.ts";
import { graphMemoryFit, readMetrics, type RunDirMode, wireRun } from "../effects/mod.ts";
import {
  type BackendName,
  BACKENDS,
  describeGraph,
  encodePipeline,
  type EngineName,
  ENGINES,
  type Env,
  fitProblem,
  fitText,
  methodLabel,
  runFlops,
  runPipeline,
  validateGraph,
  type ValidGraph,
} from "../pipeline/mod.ts";
import { lossChartSvg, memoryChartSvg, runReportJson, runSummary } from "../report/mod.ts";
import {
  backendFlag,
  booleanFlag,
  engineFlag,
  field,
  intFlag,
  onePositional,
  parseCommand,
  runDirModeFlag,
  stringFlag,
} from "./_args.ts";
import { loadPipelineFile } from "./_pipeline_file.ts";
import { exitWithParent } from "./_parent_watch.ts";

const USAGE = `Usage: deno task run PIPELINE [options]

Runs a STEP stage graph (train → grow → attachPET → continue …) or, given a plain config,
standard pre-training.

PIPELINE  a .ts module exporting \`pipeline\`, a stage-graph .yaml/.json (\`deno task plan --emit\`),
          or a config .yaml with model/training/data sections (standard pre-training)

Options:
  --out DIR        run directory (default runs/<name>): metrics, checkpoint, final model, report
  --resume         continue the run in DIR from its checkpoint
  --force          replace the earlier run in DIR (without it, a used DIR is refused)
  --dry-run        print the graph and each stage's predicted memory, then stop
  --backend NAME   ${BACKENDS.join(" | ")} (overrides training.backend)
  --engine NAME    ${
  ENGINES.join(" | ")
} (overrides training.engine; torch launches PyTorch for each
                   train/continue node, as training.torch says)
  -h, --help       show this help`;

interface RunArgs {
  readonly file: string;
  readonly out?: string;
  readonly mode: RunDirMode;
  readonly dryRun: boolean;
  readonly backend?: BackendName;
  readonly engine?: EngineName;
  readonly nodeRank?: number;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, RunArgs | "help"> {
  const parsed = parseCommand(argv, {
    out: { type: "string" },
    resume: { type: "boolean", default: false },
    force: { type: "boolean", default: false },
    "dry-run": { type: "boolean", default: false },
    backend: { type: "string" },
    engine: { type: "string" },
    "node-rank": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  if (booleanFlag(cmd, "help")) return E.right("help");
  const file = onePositional(cmd, "PIPELINE file", USAGE);
  if (E.isLeft(file)) return file;
  const backend = backendFlag(cmd);
  if (E.isLeft(backend)) return backend;
  const engine = engineFlag(cmd);
  if (E.isLeft(engine)) return engine;
  const nodeRank = intFlag(cmd, "node-rank", 0);
  if (E.isLeft(nodeRank)) return nodeRank;
  const mode = runDirModeFlag(cmd);
  if (E.isLeft(mode)) return mode;
  const out = stringFlag(cmd, "out");
  if (out !== undefined && out.trim() === "") {
    return E.left(configInvalid("--out", "is empty: name the run directory"));
  }
  return E.right({
    file: file.right,
    mode: mode.right,
    dryRun: booleanFlag(cmd, "dry-run"),
    ...field("out", out),
    ...field("backend", backend.right),
    ...field("engine", engine.right),
    ...field("nodeRank", nodeRank.right),
  });
}

/**
 * The graph with `--engine` and `--node-rank` in its training settings. Its fingerprint is
 * unchanged: a checkpoint resumes on either engine, on any node.
 */
function withOverrides(g: ValidGraph, args: RunArgs): ValidGraph {
  const t = g.training;
  return {
    ...g,
    training: {
      ...t,
      engine: args.engine ?? t.engine,
      torch: {
        ...t.torch,
        nodeRank: NonNegativeInt.is(args.nodeRank) ? args.nodeRank : t.torch.nodeRank,
      },
    },
  };
}

/**
 * What a run writes into its folder. A resumed run leaves out `pipeline.yaml`: it rewrites it
 * with the graph that ran, so `run RUN/pipeline.yaml --out RUN --resume` may read it.
 */
function rewritten(mode: RunDirMode): readonly string[] {
  return mode === "resume" ? RUN_OUTPUTS.filter((n) => n !== RUN_DIR.pipeline) : RUN_OUTPUTS;
}

/** The paths a graph's data sources read; a glob stands for the folder its fixed part names. */
function dataPaths(g: ValidGraph): string[] {
  const evals = g.pipeline.nodes.flatMap((n) =>
    n.op === "eval" && n.source !== undefined ? [n.source] : []
  );
  return [g.data.source, g.data.validation, ...evals]
    .flatMap((s) => (s === undefined ? [] : Array.isArray(s) ? s : [s]))
    .flatMap((src) =>
      typeof src === "string" ? (src === "builtin" ? [] : [src]) : "path" in src ? [src.path] : []
    )
    .map((p) => {
      const glob = p.search(/[*?[\]{}]/);
      return glob < 0 ? p : dirname(`${p.slice(0, glob)}x`);
    });
}

/** Runs the run command; resolves to the process exit code. */
export async function main(
  argv: readonly string[],
  print: (line: string) => void = console.log,
): Promise<number> {
  const cli = parseCli(argv);
  if (E.isLeft(cli)) return fail(cli.left);
  if (cli.right === "help") {
    print(USAGE);
    return 0;
  }
  const args = cli.right;
  const loaded = await loadPipelineFile(args.file);
  if (E.isLeft(loaded)) return fail(loaded.left);
  const graph = validateGraph(loaded.right);
  if (E.isLeft(graph)) return fail(graph.left);
  const g = withOverrides(graph.right, args);
  const backend = args.backend ?? g.training.backend;
  print(describeGraph(g, backend));
  const fit = graphMemoryFit(g, backend);
  print(fitText(g, fit));
  // A dry run answers whether the run would start, so a stage that does not fit fails it too.
  const tooBig = fitProblem(g, fit);
  if (args.dryRun) return tooBig === undefined ? 0 : fail(tooBig);

  const name = g.pipeline.name ?? args.file.replace(/^.*\//, "").replace(/\.[a-z]+$/, "");
  const allowed = await checkOutput(
    {
      kind: "into",
      flag: "--out",
      path: args.out ?? `runs/${name}`,
      what: "run",
      names: rewritten(args.mode),
      mode: args.mode,
    },
    [
      { what: "the PIPELINE file", path: args.file },
      ...dataPaths(g).map((path) => ({ what: "a data source", path })),
    ],
  );
  if (E.isLeft(allowed)) return fail(allowed.left);
  const out = allowed.right;
  const wired = await wireRun(g, {
    out,
    mode: args.mode,
    print,
    configFile: args.file,
    memoryFit: fit,
    ...field("backend", args.backend),
  })();
  if (E.isLeft(wired)) return fail(wired.left);
  try {
    const env = wired.right.env;
    return await runAndReport(g, { name, out, resume: args.mode === "resume", env }, print);
  } finally {
    await wired.right.release();
  }
}

async function runAndReport(
  g: ValidGraph,
  run: { readonly name: string; readonly out: string; readonly resume: boolean; readonly env: Env },
  print: (line: string) => void,
): Promise<number> {
  const { env, out, name } = run;
  print(`Backend: ${env.engine.backend.description}`);
  print(
    `Data: ${env.data.description}${
      env.data.floorNats === undefined ? "" : `; floor ${env.data.floorNats.toFixed(3)} nats/token`
    }${
      env.data.unigramNats === undefined
        ? ""
        : `; unigram entropy ${env.data.unigramNats.toFixed(3)}`
    }`,
  );
  print(`Run directory: ${out}`);
  const t0 = performance.now();
  const result = await runPipeline(g, { resume: run.resume })(env)();
  if (E.isLeft(result)) return fail(result.left);
  const wallSeconds = (performance.now() - t0) / 1000;
  const r = result.right;
  const flops = runFlops(g, "paper");
  const report = runReportJson(g, r, {
    flopsPaper: flops.paper,
    flopsExecuted: flops.executed,
    // This process's time: a resumed run's earlier sessions are not in it.
    wallSeconds,
    backend: env.engine.backend.description,
    data: env.data.description,
    floorNats: env.data.floorNats ?? null,
    unigramNats: env.data.unigramNats ?? null,
  });
  const metrics = await readMetrics(out);
  if (E.isLeft(metrics)) return fail(metrics.left);
  const files: [string, string][] = [
    [RUN_DIR.report, JSON.stringify(report, null, 2)],
    [RUN_DIR.lossChart, lossChartSvg(`${name}: loss`, metrics.right, env.data.floorNats)],
    [
      RUN_DIR.memoryChart,
      memoryChartSvg(
        `${name}: peak memory per stage, measured (by role) vs predicted`,
        r,
        g.pipeline.memoryBudget,
      ),
    ],
    [RUN_DIR.pipeline, YAML.stringify(encodePipeline(g.pipeline))],
  ];
  for (const [file, text] of files) {
    const w = await env.store.writeText(file, text)();
    if (E.isLeft(w)) return fail(w.left);
  }
  const onCpuTrainer = g.training.engine === "torch" && g.training.torch.device === "cpu";
  print(
    runSummary(
      r,
      g.pipeline.memoryBudget,
      methodLabel(g),
      onCpuTrainer ? "trainer process" : "engine",
    ),
  );
  print(
    `Compute: ${flops.paper.toExponential(3)} FLOPs by the paper's rule, ${
      flops.executed.toExponential(3)
    } executed; ${wallSeconds.toFixed(0)} s${run.resume ? " in this session" : ""}`,
  );
  print(
    `Report: ${out}/${RUN_DIR.report}, ${out}/${RUN_DIR.lossChart}, ${out}/${RUN_DIR.memoryChart}`,
  );
  // The folder above the run, so the dashboard lists it beside the runs it is compared with.
  print(`Dashboard of it and the runs beside it: deno task serve ${dirname(out)}`);
  return 0;
}

function fail(e: PipelineError): number {
  console.error(renderError(e));
  return exitCode(e);
}

if (import.meta.main) {
  // Started by `deno task compare`: ends when compare ends (cli/_parent_watch.ts).
  exitWithParent();
  Deno.exit(await main(Deno.args));
}
