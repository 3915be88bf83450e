/**
 * `deno task plan CONFIG.yaml [--stages K] [--split a,b,c] [--budget 24GB]
 * [--json] [--emit FILE] [--svg FILE] [--modules]`
 *
 * The composition root of planning: reads the config, loads HiGHS, plans,
 * prints, and writes the optional files only when everything succeeded.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { resolve } from "node:path";
import YAML from "yaml";
import {
  type BackendName,
  type Config,
  decodePipeline,
  encodePipeline,
  fitText,
  type MemoryFit,
  parseConfig,
  planToGraph,
  stageModules,
  stageModulesText,
  validateGraph,
  type ValidGraph,
} from "../pipeline/mod.ts";
import {
  configInvalid,
  describeUnknown,
  exitCode,
  kernelFailed,
  parseBytes,
  type PipelineError,
  renderError,
} from "../base/mod.ts";
import { checkOutput } from "../checkpoint/mod.ts";
import { graphMemoryFit } from "../effects/mod.ts";
import { planJson, planSvg, planText } from "../report/mod.ts";
import {
  type HighsSolver,
  loadHighs as instantiateHighs,
  makePlan,
  type Plan,
  type PlanMode,
} from "../solvers/mod.ts";
import { backendFlag, booleanFlag, field, parseCommand, stringFlag } from "./_args.ts";
import { readText, writeAllOrNothing } from "./_files.ts";

const USAGE = `Usage: deno task plan CONFIG.yaml [options]

Plans STEP stages so that the largest per-stage memory is as small as possible.

Options:
  --stages K      optimise a K-stage split (default: plan.stages in the config, else 2)
  --split a,b,c   evaluate this split instead of optimising (must add up to model.layers)
  --budget SIZE   find the fewest stages whose peak fits SIZE (e.g. 24GB, 16GiB)
  --json          print one JSON object instead of tables
  --emit FILE     write the plan as a stage graph (YAML) for \`deno task run\`
  --svg FILE      draw memory per stage beside the baselines (the paper's Fig. 2)
  --modules       list each stage's trainable, frozen and adapted modules (PyTorch names)
  --backend NAME  the backend whose memory on this machine each stage is checked against
                  (default: training.backend, or the torch engine when training.engine says so)
  -h, --help      show this help`;

interface PlanArgs {
  readonly config: string;
  readonly stages?: string;
  readonly split?: string;
  readonly budget?: string;
  readonly json: boolean;
  readonly emit?: string;
  readonly svg?: string;
  readonly modules: boolean;
  readonly backend?: BackendName;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, PlanArgs | "help"> {
  const parsed = parseCommand(argv, {
    stages: { type: "string" },
    split: { type: "string" },
    budget: { type: "string" },
    json: { type: "boolean", default: false },
    emit: { type: "string" },
    svg: { type: "string" },
    modules: { type: "boolean", default: false },
    backend: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  const positionals = cmd.positionals;
  if (booleanFlag(cmd, "help")) return E.right("help");
  if (positionals.length !== 1) {
    return E.left(configInvalid(
      "command line",
      `expected exactly one CONFIG file, got ${positionals.length}\n\n${USAGE}`,
    ));
  }
  const backend = backendFlag(cmd);
  if (E.isLeft(backend)) return backend;
  const [emit, svg] = [stringFlag(cmd, "emit"), stringFlag(cmd, "svg")];
  if (emit !== undefined && svg !== undefined && resolve(emit) === resolve(svg)) {
    return E.left(configInvalid("--emit/--svg", `both name "${emit}": give each its own file`));
  }
  return E.right({
    config: positionals[0] ?? "",
    json: booleanFlag(cmd, "json"),
    modules: booleanFlag(cmd, "modules"),
    ...field("stages", stringFlag(cmd, "stages")),
    ...field("split", stringFlag(cmd, "split")),
    ...field("budget", stringFlag(cmd, "budget")),
    ...field("emit", emit),
    ...field("svg", svg),
    ...field("backend", backend.right),
  });
}

function positiveInt(text: string, where: string): E.Either<PipelineError, number> {
  const n = Number(text);
  return Number.isInteger(n) && n >= 1 && /^\s*\d+\s*$/.test(text)
    ? E.right(n)
    : E.left(configInvalid(where, `expected a positive integer, got "${text}"`));
}

/** Flags override the config's `plan:` section; conflicting flags are an error. */
export function planMode(args: PlanArgs, config: Config): E.Either<PipelineError, PlanMode> {
  const chosen = [args.split, args.budget].filter((x) => x !== undefined).length;
  if (chosen > 1) return E.left(configInvalid("--split/--budget", "give one of them, not both"));
  if (args.split !== undefined) {
    const parts = args.split.split(",").map((s, i) => positiveInt(s, `--split (stage ${i + 1})`));
    const bad = parts.find(E.isLeft);
    if (bad !== undefined) return bad as E.Either<PipelineError, never>;
    const split = parts.map((p) => (p as E.Right<number>).right);
    if (args.stages !== undefined && Number(args.stages) !== split.length) {
      return E.left(configInvalid(
        "--stages",
        `${args.stages} stages disagree with --split, which has ${split.length}`,
      ));
    }
    return E.right({ kind: "split", split });
  }
  if (args.budget !== undefined) {
    const bytes = parseBytes(args.budget);
    return bytes === undefined
      ? E.left(configInvalid("--budget", `cannot read "${args.budget}" as a size (e.g. 24GB)`))
      : E.right({ kind: "budget", bytes });
  }
  if (args.stages !== undefined) {
    return E.map((stages: number) => ({ kind: "optimal", stages }) as PlanMode)(
      positiveInt(args.stages, "--stages"),
    );
  }
  if (config.plan.split !== undefined) return E.right({ kind: "split", split: config.plan.split });
  if (config.plan.budget !== undefined) {
    return E.right({ kind: "budget", bytes: config.plan.budget });
  }
  return E.right({ kind: "optimal", stages: config.plan.stages });
}

/**
 * Before planning: `--emit` and `--svg` are never the config and their folders take files;
 * where each is written.
 */
function outputsWritable(
  args: PlanArgs,
): TE.TaskEither<PipelineError, { emit?: string; svg?: string }> {
  const config = [{ what: "the CONFIG file", path: args.config }];
  const file = (
    flag: string,
    path: string | undefined,
  ): TE.TaskEither<PipelineError, string | undefined> =>
    path === undefined
      ? TE.right(undefined)
      : () => checkOutput({ kind: "file", flag, path }, config);
  return pipe(
    TE.Do,
    TE.bind("emit", () => file("--emit", args.emit)),
    TE.bind("svg", () => file("--svg", args.svg)),
    TE.map(({ emit, svg }) => ({ ...field("emit", emit), ...field("svg", svg) })),
  );
}

function loadHighs(): TE.TaskEither<PipelineError, HighsSolver> {
  return TE.tryCatch(
    () => instantiateHighs(),
    (e) => kernelFailed(`cannot load the HiGHS solver: ${describeUnknown(e)}`),
  );
}

/**
 * The plan's stages as `run` would train them (the emitted graph: fp32 Adam, activations as the
 * engine holds them) against the backend's memory on this machine; Left says why the config's
 * training settings make no runnable graph. A plan is not refused for not fitting here: it may
 * be meant for a larger machine.
 */
function machineFit(
  config: Config,
  plan: Plan,
  backend: BackendName | undefined,
): E.Either<string, { graph: ValidGraph; fit: MemoryFit }> {
  const graph = pipe(
    decodePipeline(encodePipeline(planToGraph(config, plan)), config.name),
    E.chainW(validateGraph),
  );
  if (E.isLeft(graph)) {
    return E.left(
      `Memory on this machine: not checked (the plan as a graph: ${renderError(graph.left)})`,
    );
  }
  const g = graph.right;
  return E.right({ graph: g, fit: graphMemoryFit(g, backend ?? g.training.backend) });
}

function machineJson(
  machine: E.Either<string, { graph: ValidGraph; fit: MemoryFit }>,
): Record<string, unknown> {
  if (E.isLeft(machine)) return { checked: false, why: machine.left };
  const { fit } = machine.right;
  return {
    checked: true,
    on: fit.on,
    limitBytes: fit.limit.kind === "bytes" ? fit.limit.bytes : null,
    limit: fit.limit.what,
    stages: fit.stages,
    largestDepth: fit.largestDepth ?? null,
  };
}

/** Runs the plan command; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = parseCli(argv);
  if (E.isRight(cli) && cli.right === "help") {
    console.log(USAGE);
    return 0;
  }
  const program = pipe(
    TE.fromEither(cli as E.Either<PipelineError, PlanArgs>),
    TE.bindTo("args"),
    TE.bindW("text", ({ args }) => readText(args.config)),
    TE.bindW("targets", ({ args }) => outputsWritable(args)),
    TE.bindW("config", ({ args, text }) => TE.fromEither(parseConfig(text, args.config))),
    TE.bindW("mode", ({ args, config }) => TE.fromEither(planMode(args, config))),
    TE.bindW("highs", () => loadHighs()),
    TE.bindW("plan", ({ config, mode, highs }) =>
      TE.fromEither(makePlan(highs, {
        problem: { shape: config.shape, adapter: config.pet, assumptions: config.memory },
        galore: config.galore,
        minLayers: config.plan.minLayers,
        mode,
        budget: config.budget,
      }))),
    TE.bindW("files", ({ args, config, plan, targets }) => {
      const files: { path: string; text: string }[] = [];
      if (targets.emit !== undefined) {
        const graph = planToGraph(config, plan);
        // Round-trip through the codec and validator: what we write is what `run` accepts.
        const checked = pipe(
          decodePipeline(encodePipeline(graph), targets.emit),
          E.chainW(validateGraph),
        );
        if (E.isLeft(checked)) return TE.left(checked.left as PipelineError);
        files.push({
          path: targets.emit,
          text: `# STEP stage graph emitted by \`deno task plan ${args.config}\`\n` +
            YAML.stringify(encodePipeline(checked.right.pipeline)),
        });
      }
      if (targets.svg !== undefined) files.push({ path: targets.svg, text: planSvg(plan, config) });
      return TE.right(files);
    }),
    TE.chainFirstW(({ files }) => writeAllOrNothing(files)),
  );
  const result = await program();
  if (E.isLeft(result)) {
    console.error(renderError(result.left));
    return exitCode(result.left);
  }
  const { args, plan, config, files } = result.right;
  const machine = machineFit(config, plan, args.backend);
  const modules = args.modules
    ? stageModules(plan.split, {
      placement: config.plan.placement,
      // The run grows with the node's seed, which defaults to training.seed.
      seed: config.training.seed,
      targets: config.pet.targets,
      rank: config.pet.rank,
      alpha: config.pet.alpha,
      trainEmbeddingsAfterStage1: config.memory.trainEmbeddingsAfterStage1,
      tiedEmbeddings: config.shape.tiedEmbeddings,
    })
    : undefined;
  if (args.json) {
    const json = { ...planJson(plan, config), thisMachine: machineJson(machine) };
    console.log(JSON.stringify(modules === undefined ? json : { ...json, modules }, null, 2));
  } else {
    console.log(planText(plan, config));
    console.log(
      `\n${E.isRight(machine) ? fitText(machine.right.graph, machine.right.fit) : machine.left}`,
    );
    if (modules !== undefined) console.log(`\n${stageModulesText(modules)}`);
  }
  if (!args.json) { for (const f of files) console.log(`wrote ${f.path}`); }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
