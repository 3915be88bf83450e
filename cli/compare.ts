/**
 * `deno task compare CONFIG [--out DIR] [--seeds N] [--methods a,b,…] [--backend NAME] [--dry-run]`
 *
 * STEP's claim, tested on the user's model, budget and corpus: standard pre-training, ReLoRA,
 * GaLore and STEP with K stages, every one given the same compute, each run an ordinary resumable
 * run directory (`DIR/runs/<method>-s<seed>/`, run by `deno task run` in its own process, so the
 * OS's peak resident size is the run's own). A finished run is never run again; an interrupted
 * one resumes from its checkpoint. One comparison writes `DIR` at a time (its lock), and the
 * runs and evaluations it starts end when it ends, however it ends. At the end
 * `DIR/report.json`, `DIR/report.md`, `DIR/loss_vs_flops.svg` and `DIR/memory.svg`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import {
  configInvalid,
  describeUnknown,
  exitCode,
  graphInvalid,
  ioFailed,
  kernelFailed,
  type PipelineError,
  renderError,
} from "../base/mod.ts";
import { checkOutput, exists, RUN_DIR } from "../checkpoint/mod.ts";
import { readMetrics } from "../effects/mod.ts";
import {
  type BackendName,
  BACKENDS,
  type CompareEvalSettings,
  type CompareMethod,
  type ComparePlan,
  comparePlan,
  type CompareRun,
  type Config,
  encodePipeline,
  graphFileVerdict,
  methodName,
  parseConfig,
  parseMethods,
} from "../pipeline/mod.ts";
import {
  compareMemorySvg,
  compareReportJson,
  compareReportMarkdown,
  lossVsFlopsSvg,
  type RunOutcome,
  runRow,
} from "../report/mod.ts";
import { baselines, loadHighs, makePlan } from "../solvers/mod.ts";
import { lockDir } from "../store/mod.ts";
import {
  backendFlag,
  booleanFlag,
  field,
  intFlag,
  onePositional,
  parseCommand,
  stringFlag,
} from "./_args.ts";
import { graphEvidence, graphFingerprint, readRunReport, waitForHolder } from "./_compare_runs.ts";
import { readText, writeAllOrNothing } from "./_files.ts";
import { exitWithParentSpawn } from "./_parent_watch.ts";

const USAGE = `Usage: deno task compare CONFIG [options]

Runs standard pre-training, ReLoRA, GaLore and STEP at the same compute on one model and corpus,
then writes a comparison (report.md, report.json, loss_vs_flops.svg, memory.svg).

Options:
  --out DIR          comparison directory (default runs/compare-<name>); run again to resume
  --seeds N          seeds per method (default compare.seeds: a count, or one per method)
  --methods a,b,…    standard, relora, galore, step-K (default compare.methods)
  --accounting A     paper | executed: how a token is charged (overrides budget.accounting)
  --backend NAME     ${BACKENDS.join(" | ")} (overrides training.backend)
  --dry-run          print the runs and their compute, then stop
  -h, --help         show this help`;

interface CompareArgs {
  readonly config: string;
  readonly out?: string;
  readonly seeds?: number;
  readonly methods?: readonly string[];
  readonly backend?: BackendName;
  readonly accounting?: "paper" | "executed";
  readonly dryRun: boolean;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, CompareArgs | "help"> {
  const parsed = parseCommand(argv, {
    out: { type: "string" },
    seeds: { type: "string" },
    methods: { type: "string" },
    backend: { type: "string" },
    accounting: { type: "string" },
    "dry-run": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  if (booleanFlag(cmd, "help")) return E.right("help");
  const config = onePositional(cmd, "CONFIG file", USAGE);
  if (E.isLeft(config)) return config;
  const seeds = intFlag(cmd, "seeds", 1);
  if (E.isLeft(seeds)) return seeds;
  const backend = backendFlag(cmd);
  if (E.isLeft(backend)) return backend;
  const out = stringFlag(cmd, "out");
  if (out !== undefined && out.trim() === "") {
    return E.left(configInvalid("--out", "is empty: name the comparison directory"));
  }
  const accounting = stringFlag(cmd, "accounting");
  if (accounting !== undefined && accounting !== "paper" && accounting !== "executed") {
    return E.left(configInvalid(
      "--accounting",
      `unknown accounting "${accounting}": expected paper or executed`,
    ));
  }
  const methods = stringFlag(cmd, "methods")?.split(",").map((m) => m.trim());
  return E.right({
    config: config.right,
    dryRun: booleanFlag(cmd, "dry-run"),
    ...field("out", out),
    ...field("seeds", seeds.right),
    ...field("methods", methods),
    ...field("backend", backend.right),
    ...field("accounting", accounting as "paper" | "executed" | undefined),
  });
}

/** What the planner says before anything runs: STEP's splits and every method's peak. */
interface Planned {
  /** STEP's split for every K the methods name. */
  readonly splits: Map<number, readonly number[]>;
  /** The planner's peak per method name (the config's `memory:` assumptions). */
  readonly peaks: Map<string, number>;
}

/**
 * STEP's split for every K the methods name (the config's `plan.split` when it has K stages),
 * and the planner's peak of every method: Eq. 1–2 and the baselines' formulas, with the terms
 * the config's `memory:` section switches on.
 */
async function planned(
  config: Config,
  methods: readonly CompareMethod[],
): Promise<E.Either<PipelineError, Planned>> {
  const splits = new Map<number, readonly number[]>();
  const problem = { shape: config.shape, adapter: config.pet, assumptions: config.memory };
  const b = baselines(problem, config.galore);
  const peaks = new Map<string, number>([
    ["standard", b.standard],
    ["relora", b.relora.bytes],
    ["galore", b.galore.bytes],
  ]);
  const ks = methods.flatMap((m) => m.kind === "step" ? [m.stages] : []);
  if (ks.length === 0) return E.right({ splits, peaks });
  let highs;
  try {
    highs = await loadHighs();
  } catch (e) {
    return E.left(kernelFailed(`cannot load the HiGHS solver: ${describeUnknown(e)}`));
  }
  for (const k of ks) {
    const given = config.plan.split;
    const plan = makePlan(highs, {
      problem: { shape: config.shape, adapter: config.pet, assumptions: config.memory },
      galore: config.galore,
      minLayers: config.plan.minLayers,
      mode: given !== undefined && given.length === k
        ? { kind: "split", split: given }
        : { kind: "optimal", stages: k },
    });
    if (E.isLeft(plan)) return plan;
    splits.set(k, plan.right.split);
    peaks.set(`step-${k}`, plan.right.peakBytes);
  }
  return E.right({ splits, peaks });
}

const RUN_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "run.ts");
const EVAL_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "eval.ts");

/** Each run's evaluation, beside its report (`deno task eval --out`). */
export const EVAL_FILE = "eval.json";

/** The built-in tasks `compare.eval` asks for, in order (WikiText last). */
function evalTasks(e: CompareEvalSettings): string[] {
  return [...e.tasks, ...(e.wikitext ? ["wikitext"] : [])];
}

/** Whether an earlier `eval.json` measured what the config now asks for. */
async function evaluatedAlready(path: string, e: CompareEvalSettings): Promise<boolean> {
  try {
    const json = JSON.parse(await Deno.readTextFile(path)) as {
      limit?: unknown;
      tasks?: Record<string, unknown>;
    };
    const had = Object.keys(json.tasks ?? {}).sort().join(",");
    return json.limit === e.limit && had === evalTasks(e).sort().join(",");
  } catch {
    return false;
  }
}

/**
 * Evaluates a finished run's final model in its own `deno task eval` process (as runs are run),
 * writing `DIR/eval.json`; resolves to the exit code.
 */
async function evaluateOne(
  id: string,
  dir: string,
  e: CompareEvalSettings,
  backend: BackendName | undefined,
): Promise<number> {
  const path = join(dir, EVAL_FILE);
  if (await evaluatedAlready(path, e)) {
    console.log(`${id}: evaluated earlier, not evaluated again`);
    return 0;
  }
  console.log(`\n=== ${id}: evaluating ${evalTasks(e).join(", ")} (first ${e.limit} items) ===`);
  return await runChild([
    "run",
    "--allow-all",
    "--unstable-webgpu",
    EVAL_SCRIPT,
    join(dir, RUN_DIR.final),
    "--tasks",
    evalTasks(e).join(","),
    "--limit",
    String(e.limit),
    "--batch",
    String(e.batch),
    "--data-dir",
    e.dataDir,
    "--out",
    path,
    ...(backend === undefined ? [] : ["--backend", backend]),
  ]);
}

/** Runs (or resumes) one run in its own `deno task run` process; resolves to its exit code. */
async function runOne(
  run: CompareRun,
  paths: { readonly graph: string; readonly dir: string },
  backend: BackendName | undefined,
): Promise<number> {
  const resume = await exists(join(paths.dir, RUN_DIR.checkpoint));
  const used = await exists(paths.dir);
  const mode = resume ? ["--resume"] : used ? ["--force"] : [];
  const args = [
    "run",
    "--allow-all",
    "--unstable-webgpu",
    RUN_SCRIPT,
    paths.graph,
    "--out",
    paths.dir,
    ...mode,
    ...(backend === undefined ? [] : ["--backend", backend]),
  ];
  console.log(
    `\n=== ${run.id}: ${resume ? "resuming" : "starting"} (${run.flops.steps} steps, ${
      run.flops.tokens.toLocaleString("en-US")
    } tokens) ===`,
  );
  return await runChild(args);
}

/**
 * Runs `deno ARGS` as a child process, its output forwarded line by line through the console so
 * its progress shows as it comes; resolves to its exit code.
 */
async function runChild(args: readonly string[]): Promise<number> {
  // The stdin pipe, never written, is how the child learns that this process has ended
  // (`_parent_watch.ts`): it stays open until the child is done.
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args],
    ...exitWithParentSpawn,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await Promise.all([
    forwardLines(child.stdout, (l) => console.log(l)),
    forwardLines(child.stderr, (l) => console.error(l)),
  ]);
  const status = await child.status;
  await child.stdin.close().catch(() => {});
  return status.code;
}

async function forwardLines(
  stream: ReadableStream<Uint8Array>,
  print: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) print(line);
  }
  if (rest !== "") print(rest);
}

function planTable(runs: readonly CompareRun[]): string {
  const rows = [
    ["run", "steps", "tokens", "FLOPs (paper)", "FLOPs (executed)"],
    ...runs.map((r) => [
      r.id,
      String(r.flops.steps),
      String(r.flops.tokens),
      r.flops.paper.toExponential(3),
      r.flops.executed.toExponential(3),
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((x, c) => x.padEnd(widths[c]!)).join("  ")).join("\n");
}

/** Runs the compare command; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = parseCli(argv);
  if (E.isLeft(cli)) return fail(cli.left);
  if (cli.right === "help") {
    console.log(USAGE);
    return 0;
  }
  const args = cli.right;
  const text = await readText(args.config)();
  if (E.isLeft(text)) return fail(text.left);
  const parsed = parseConfig(text.right, args.config);
  if (E.isLeft(parsed)) return fail(parsed.left);
  const c0 = parsed.right;
  const allowed = await checkOutput({
    kind: "into",
    flag: "--out",
    path: args.out ?? `runs/compare-${c0.name}`,
    what: "comparison",
    names: [
      "graphs",
      "runs",
      "report.json",
      "report.md",
      "loss_vs_flops.svg",
      "memory.svg",
    ],
    mode: "resume",
  }, [{ what: "the CONFIG file", path: args.config }]);
  if (E.isLeft(allowed)) return fail(allowed.left);
  const config: Config = {
    ...c0,
    training: { ...c0.training, backend: args.backend ?? c0.training.backend },
    budget: { ...c0.budget, accounting: args.accounting ?? c0.budget.accounting },
  };
  const methods = parseMethods(
    args.methods ?? config.compare.methods,
    config.shape.layers,
    args.methods === undefined ? `${args.config}: compare.methods` : "--methods",
  );
  if (E.isLeft(methods)) return fail(methods.left);
  const pre = await planned(config, methods.right);
  if (E.isLeft(pre)) return fail(pre.left);
  const splits = pre.right.splits;
  const seeds = args.seeds ?? config.compare.seeds;
  const plan = comparePlan(config, { methods: methods.right, seeds, splits });
  if (E.isLeft(plan)) return fail(plan.left);
  const p = plan.right;
  console.log(
    `Comparison "${config.name}": ${p.runs.length} runs of ${
      methods.right.map(methodName).join(", ")
    }, ${p.flops.toExponential(3)} FLOPs each (${p.accounting} accounting)` +
      [...splits].map(([k, s]) => `; step-${k} split [${s.join(", ")}]`).join(""),
  );
  console.log(planTable(p.runs));
  if (args.dryRun) return 0;

  const out = args.out ?? `runs/compare-${config.name}`;
  try {
    await Deno.mkdir(out, { recursive: true });
  } catch (e) {
    return fail(ioFailed(out, describeUnknown(e)));
  }
  // Taken before anything in the folder is read or written: a second comparison stops here.
  const held = await lockDir(out, "comparison");
  if (E.isLeft(held)) return fail(held.left);
  try {
    return await compareIn(out, config, p, {
      backend: args.backend,
      plannerPeaks: pre.right.peaks,
    });
  } finally {
    held.right.release();
  }
}

/** Runs what is left of the comparison in `out` (whose lock this process holds), then reports. */
async function compareIn(
  out: string,
  config: Config,
  p: ComparePlan,
  at: {
    readonly backend: BackendName | undefined;
    readonly plannerPeaks: ReadonlyMap<string, number>;
  },
): Promise<number> {
  const graphsDir = join(out, "graphs");
  const runsDir = join(out, "runs");
  try {
    await Deno.mkdir(graphsDir, { recursive: true });
    await Deno.mkdir(runsDir, { recursive: true });
  } catch (e) {
    return fail(ioFailed(out, describeUnknown(e)));
  }
  const graphFiles = await settleGraphFiles(p.runs, { graphsDir, runsDir });
  if (E.isLeft(graphFiles)) return fail(graphFiles.left);
  for (const run of p.runs) {
    const dir = join(runsDir, run.id);
    if (!(await exists(join(dir, RUN_DIR.report)))) await waitForHolder(run.id, dir);
    if (await exists(join(dir, RUN_DIR.report))) {
      console.log(`${run.id}: finished earlier, not run again`);
      continue;
    }
    // The final model changes: its earlier evaluation, if any, no longer describes it.
    await Deno.remove(join(dir, EVAL_FILE)).catch(() => {});
    const code = await runOne(run, { graph: join(graphsDir, `${run.id}.yaml`), dir }, at.backend);
    if (code !== 0) {
      console.error(
        `${run.id} stopped with exit code ${code}; run the same command again to resume it`,
      );
      return code;
    }
  }
  const e = config.compare.eval;
  if (e !== false && !(await exists(e.dataDir))) {
    console.log(
      `\nZero-shot evaluation skipped: ${e.dataDir} (compare.eval.dataDir) does not exist; ` +
        "the report's zero-shot and WikiText columns stay empty",
    );
  } else if (e !== false) {
    for (const run of p.runs) {
      const code = await evaluateOne(run.id, join(runsDir, run.id), e, at.backend);
      if (code !== 0) {
        console.error(`${run.id}: evaluation stopped with exit code ${code}`);
        return code;
      }
    }
  }
  return await writeReport(config, p, { out, runsDir, ...at });
}

/**
 * Writes each run's graph file from the config, unless a run recorded another graph (the config
 * changed: refused, before any file is written); a damaged file is rebuilt, with a line naming it.
 */
async function settleGraphFiles(
  runs: readonly CompareRun[],
  dirs: { readonly graphsDir: string; readonly runsDir: string },
): Promise<E.Either<PipelineError, void>> {
  const writes: { readonly path: string; readonly text: string; readonly note?: string }[] = [];
  for (const run of runs) {
    const paths = {
      graphFile: join(dirs.graphsDir, `${run.id}.yaml`),
      runDir: join(dirs.runsDir, run.id),
    };
    const text = YAML.stringify(encodePipeline(run.graph));
    const now = graphFingerprint(text, paths.graphFile);
    if (E.isLeft(now)) return E.left(graphInvalid(run.id, now.left));
    const verdict = graphFileVerdict(await graphEvidence(paths, now.right));
    if (verdict.kind === "refuse") return E.left(verdict.error);
    if (verdict.kind === "write") {
      writes.push({ path: paths.graphFile, text, ...field("note", verdict.note) });
    }
  }
  for (const w of writes) if (w.note !== undefined) console.log(w.note);
  return await writeAllOrNothing(writes)();
}

async function writeReport(
  config: Config,
  p: ComparePlan,
  at: {
    readonly out: string;
    readonly runsDir: string;
    readonly backend: BackendName | undefined;
    readonly plannerPeaks: ReadonlyMap<string, number>;
  },
): Promise<number> {
  const outcomes: RunOutcome[] = [];
  let backend: string = at.backend ?? config.training.backend;
  for (const run of p.runs) {
    const dir = join(at.runsDir, run.id);
    const read = await readRunReport(dir);
    if (E.isLeft(read)) return fail(read.left);
    const report = read.right;
    const metrics = await readMetrics(dir);
    if (E.isLeft(metrics)) return fail(metrics.left);
    if (typeof report.backend === "string") backend = report.backend;
    let evaluation: Record<string, unknown> | undefined;
    try {
      evaluation = JSON.parse(await Deno.readTextFile(join(dir, EVAL_FILE)));
    } catch {
      evaluation = undefined; // not evaluated (compare.eval is false, or no data)
    }
    outcomes.push({
      run,
      report,
      metrics: metrics.right,
      ...(evaluation === undefined ? {} : { evaluation }),
    });
  }
  const second = config.compare.secondCorpus === undefined ? undefined : config.compare.secondLabel;
  const rows = outcomes.map((o) =>
    runRow(o, p.accounting, second, at.plannerPeaks.get(o.run.method) ?? null)
  );
  const facts = {
    config: config.name,
    accounting: p.accounting,
    flops: p.flops,
    backend,
    secondLabel: second,
    machine: `${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores`,
  };
  const files = [
    {
      path: join(at.out, "report.json"),
      text: JSON.stringify(compareReportJson(facts, rows), null, 2),
    },
    { path: join(at.out, "report.md"), text: compareReportMarkdown(facts, rows) },
    {
      path: join(at.out, "loss_vs_flops.svg"),
      text: lossVsFlopsSvg(`${config.name}: validation loss at equal compute`, outcomes),
    },
    {
      path: join(at.out, "memory.svg"),
      text: compareMemorySvg(`${config.name}: peak memory per method`, rows),
    },
  ];
  const w = await writeAllOrNothing(files)();
  if (E.isLeft(w)) return fail(w.left);
  console.log(`\n${compareReportMarkdown(facts, rows)}`);
  console.log(`Report: ${files.map((f) => f.path).join(", ")}`);
  return 0;
}

function fail(e: PipelineError): number {
  console.error(renderError(e));
  return exitCode(e);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
