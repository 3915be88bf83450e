/**
 * `deno task run PIPELINE [--out DIR] [--resume] [--dry-run] [--backend NAME]`
 *
 * PIPELINE is a stage graph — a TypeScript module exporting `pipeline`, or a
 * YAML/JSON file such as `deno task plan --emit` writes — or a plain config
 * (`model:`, `training:`, `data:` and no `nodes:`), which runs as standard
 * pre-training: one `train` node of the full depth.
 *
 * The composition root of training: decodes and validates the graph before
 * any tensor exists, wires the effects, runs the interpreter, writes the
 * report.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { type BackendName, BACKENDS, parseConfig } from "../pipeline/config.ts";
import {
  type ConfigInvalid,
  configInvalid,
  describeUnknown,
  exitCode,
  ioFailed,
  type PipelineError,
  renderError,
} from "../pipeline/errors.ts";
import type { Env } from "../pipeline/effects.ts";
import { runPipeline, trainingSettings } from "../pipeline/interpreter.ts";
import { describeGraph } from "../pipeline/predict.ts";
import { lossChartSvg, memoryChartSvg, runReportJson, runSummary } from "../pipeline/run_report.ts";
import { decodePipeline, encodePipeline, type Pipeline } from "../pipeline/stage_graph.ts";
import { validateGraph, type ValidGraph } from "../pipeline/validate_graph.ts";
import { loadCorpus } from "../data/corpus.ts";
import { dataEffect } from "../data/data_effect.ts";
import type { DataSource } from "../data/sources.ts";
import { createEngine } from "../kernels/engine.ts";
import { readMetrics, runDirLog, runDirStore } from "./run_dir.ts";
import { booleanFlag, field, parseCommand, stringFlag } from "./_args.ts";
import { readText } from "./_files.ts";

const USAGE = `Usage: deno task run PIPELINE [options]

Runs a STEP stage graph (train → grow → attachPET → continue …) or, given a plain config,
standard pre-training.

PIPELINE  a .ts module exporting \`pipeline\`, a stage-graph .yaml/.json (\`deno task plan --emit\`),
          or a config .yaml with model/training/data sections (standard pre-training)

Options:
  --out DIR        run directory (default runs/<name>): metrics, checkpoint, final model, report
  --resume         continue from DIR's checkpoint
  --dry-run        print the graph and each stage's predicted memory, then stop
  --backend NAME   ${BACKENDS.join(" | ")} (overrides training.backend)
  -h, --help       show this help`;

interface RunArgs {
  readonly file: string;
  readonly out?: string;
  readonly resume: boolean;
  readonly dryRun: boolean;
  readonly backend?: BackendName;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, RunArgs | "help"> {
  const parsed = parseCommand(argv, {
    out: { type: "string" },
    resume: { type: "boolean", default: false },
    "dry-run": { type: "boolean", default: false },
    backend: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  const positionals = cmd.positionals;
  if (booleanFlag(cmd, "help")) return E.right("help");
  if (positionals.length !== 1) {
    return E.left(
      configInvalid(
        "command line",
        `expected one PIPELINE file, got ${positionals.length}\n\n${USAGE}`,
      ),
    );
  }
  const backend = stringFlag(cmd, "backend");
  if (backend !== undefined && !(BACKENDS as readonly string[]).includes(backend)) {
    return E.left(configInvalid(
      "--backend",
      `unknown backend "${backend}": expected one of ${BACKENDS.join(", ")}`,
    ));
  }
  return E.right({
    file: positionals[0] ?? "",
    resume: booleanFlag(cmd, "resume"),
    dryRun: booleanFlag(cmd, "dry-run"),
    ...field("out", stringFlag(cmd, "out")),
    ...field("backend", backend as BackendName | undefined),
  });
}

/** A config without `nodes:` runs as standard pre-training: one train node of full depth. */
function standardGraph(text: string, file: string): E.Either<ConfigInvalid, Pipeline> {
  const config = parseConfig(text, file);
  if (E.isLeft(config)) return config;
  const c = config.right;
  return decodePipeline({
    version: 1,
    name: c.name,
    model: { ...c.shape },
    training: { ...c.training },
    data: {
      source: c.data.source,
      tokenizer: c.data.tokenizer,
      textField: c.data.textField,
      valFraction: c.data.valFraction,
      cacheDir: c.data.cacheDir,
      builtinBytes: c.data.builtinBytes,
      ...(c.data.validation === undefined ? {} : { validation: c.data.validation }),
    },
    nodes: [{ op: "train", id: "standard", layers: c.shape.layers, steps: c.training.steps }],
  }, file);
}

async function loadGraph(file: string): Promise<E.Either<PipelineError, Pipeline>> {
  if (file.endsWith(".ts")) {
    let mod: Record<string, unknown>;
    try {
      mod = await import(new URL(file, `file://${Deno.cwd()}/`).href);
    } catch (e) {
      return E.left(ioFailed(file, `cannot import the pipeline module: ${describeUnknown(e)}`));
    }
    const exported = mod.pipeline;
    const value = typeof exported === "function" ? await (exported as () => unknown)() : exported;
    if (value === undefined) {
      return E.left(configInvalid(file, "the module does not export `pipeline`"));
    }
    // Builders return Either; a hand-written object is decoded like a YAML document.
    if (typeof value === "object" && value !== null && "_tag" in value) {
      return value as E.Either<PipelineError, Pipeline>;
    }
    return decodePipeline(value, file);
  }
  const text = await readText(file)();
  if (E.isLeft(text)) return text;
  let doc: unknown;
  try {
    doc = YAML.parse(text.right, { uniqueKeys: true });
  } catch (e) {
    return E.left(configInvalid(file, `not valid YAML: ${describeUnknown(e).split("\n")[0]}`));
  }
  const isGraph = typeof doc === "object" && doc !== null && "nodes" in doc;
  return isGraph ? decodePipeline(doc, file) : standardGraph(text.right, file);
}

async function buildData(g: ValidGraph): Promise<E.Either<PipelineError, Env["data"]>> {
  const T = trainingSettings(g);
  const d = g.pipeline.data ?? {};
  const source = d.source ?? "builtin";
  const sources: DataSource[] = source === "builtin"
    ? [{ builtin: { seed: T.seed + 1, bytes: d.builtinBytes ?? 400_000 } }]
    : [{ path: source, ...(d.textField === undefined ? {} : { field: d.textField }) }];
  const corpus = await loadCorpus({
    sources,
    tokenizer: d.tokenizer ?? "bytes",
    seed: T.seed,
    validation: d.validation === undefined
      ? { fraction: d.valFraction ?? 0.05, by: "auto" }
      : { sources: [d.validation] },
  }, { cacheDir: d.cacheDir ?? ".cache/tokens" })();
  if (E.isLeft(corpus)) return corpus;
  if (corpus.right.tokenizer.vocabSize > g.shape.vocab) {
    return E.left(configInvalid(
      "model.vocab",
      `${g.shape.vocab} is smaller than the ${corpus.right.tokenizer.name} tokenizer's ${corpus.right.tokenizer.vocabSize} tokens`,
    ));
  }
  return dataEffect(corpus.right, { batch: T.microBatch, seq: T.seqLen, seed: T.seed });
}

/** Runs the run command; resolves to the process exit code. */
export async function main(
  argv: readonly string[],
  print: (line: string) => void = console.log,
): Promise<number> {
  const fail = (e: PipelineError): number => {
    console.error(renderError(e));
    return exitCode(e);
  };
  const cli = parseCli(argv);
  if (E.isLeft(cli)) return fail(cli.left);
  if (cli.right === "help") {
    print(USAGE);
    return 0;
  }
  const args = cli.right;
  const loaded = await loadGraph(args.file);
  if (E.isLeft(loaded)) return fail(loaded.left);
  const graph = validateGraph(loaded.right);
  if (E.isLeft(graph)) return fail(graph.left);
  const g = graph.right;
  const T = trainingSettings(g);
  if (T.seqLen > g.shape.maxSeqLen) {
    return fail(
      configInvalid(
        "training.seqLen",
        `${T.seqLen} exceeds model.maxSeqLen = ${g.shape.maxSeqLen}`,
      ),
    );
  }
  if (T.batchTokens % (T.microBatch * T.seqLen) !== 0) {
    return fail(
      configInvalid(
        "training.batchTokens",
        `${T.batchTokens} is not a multiple of microBatch × seqLen = ${T.microBatch * T.seqLen}`,
      ),
    );
  }
  print(describeGraph(g));
  if (args.dryRun) return 0;

  const data = await buildData(g);
  if (E.isLeft(data)) return fail(data.left);
  const engine = await createEngine(args.backend ?? T.backend)();
  if (E.isLeft(engine)) return fail(engine.left);
  const name = g.pipeline.name ?? args.file.replace(/^.*\//, "").replace(/\.[a-z]+$/, "");
  const out = args.out ?? `runs/${name}`;
  try {
    await Deno.mkdir(out, { recursive: true });
    if (!args.resume) await Deno.remove(`${out}/metrics.jsonl`).catch(() => {});
  } catch (e) {
    return fail(ioFailed(out, `cannot create the run directory: ${describeUnknown(e)}`));
  }
  print(`Backend: ${engine.right.backend}`);
  print(
    `Data: ${data.right.description}${
      data.right.floorNats === undefined
        ? ""
        : `; floor ${data.right.floorNats.toFixed(3)} nats/token`
    }${
      data.right.unigramNats === undefined
        ? ""
        : `; unigram entropy ${data.right.unigramNats.toFixed(3)}`
    }`,
  );
  print(`Run directory: ${out}`);
  const env: Env = {
    engine: engine.right,
    data: data.right,
    store: runDirStore(out),
    log: runDirLog(out, print),
    clock: { now: () => performance.now() },
  };
  const result = await runPipeline(g, { resume: args.resume })(env)();
  if (E.isLeft(result)) return fail(result.left);
  const r = result.right;
  const report = runReportJson(g, r, {
    backend: engine.right.backend,
    data: data.right.description,
    floorNats: data.right.floorNats ?? null,
    unigramNats: data.right.unigramNats ?? null,
  });
  const metrics = await readMetrics(out);
  const files: [string, string][] = [
    ["report.json", JSON.stringify(report, null, 2)],
    ["loss.svg", lossChartSvg(`${name}: loss`, metrics, data.right.floorNats)],
    ["memory.svg", memoryChartSvg(`${name}: model state per stage, measured vs predicted`, r)],
    ["pipeline.yaml", YAML.stringify(encodePipeline(g.pipeline))],
  ];
  for (const [file, text] of files) {
    const w = await env.store.writeText(file, text)();
    if (E.isLeft(w)) return fail(w.left);
  }
  print(runSummary(r));
  print(`Report: ${out}/report.json, ${out}/loss.svg, ${out}/memory.svg`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
