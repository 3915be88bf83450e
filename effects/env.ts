/**
 * The one place a pre-training run's effects are wired together: the data stream from the
 * graph's `data:` section, the engine (tfjs on the chosen backend, or the torch engine with its
 * launches' files in the run directory), the run directory's store and log (locked), the clock
 * and the process's resident memory. The CLI and library callers both go through
 * {@link wireRun}; fine-tuning wires its own (`finetune.ts`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import { RUN_DIR, vocabProblem } from "../checkpoint/mod.ts";
import type * as TE from "fp-ts/lib/TaskEither.js";
import { configInvalid, graphInvalid, type PipelineError } from "../base/mod.ts";
import {
  type Batch,
  evalBatches,
  loadCorpus,
  loadTokenizer,
  progressPrinter,
  type Tokenizer,
} from "../data/mod.ts";
import {
  backendLimit,
  type BackendName,
  type Env,
  fitProblem,
  type MemoryFit,
  memoryFit,
  resolvedSources,
  runSeeds,
  torchProblem,
  type ValidGraph,
} from "../pipeline/mod.ts";
import { dataEffect } from "./data_effect.ts";
import { openRunDir, type RunDirMode } from "./run_dir.ts";
import { runTokenizer } from "./run_tokenizer.ts";
import { processMemory } from "./process_memory.ts";
import { machineMemory } from "./machine_memory.ts";
import { createEngine } from "./tfjs_engine.ts";
import { createTorchEngine } from "./torch_engine.ts";
import { findTorchPython, torchCapabilityProblem } from "./torch_launch.ts";

/**
 * The data effect of a graph: its corpus loaded (tokenised into token shards in `cacheDir` the
 * first time, a progress line every 10 s to `print` meanwhile), batched as its training says;
 * `tokenizer` is the run's (`runTokenizer`), loaded from `data.tokenizer` when not given.
 */
export function graphData(
  g: ValidGraph,
  tokenizer?: Tokenizer,
  print?: (line: string) => void,
): TE.TaskEither<PipelineError, Env["data"]> {
  return async () => {
    const T = g.training;
    const d = g.data;
    const seeds = runSeeds(T.seed);
    const how = { textField: d.textField, builtinBytes: d.builtinBytes, seed: seeds.builtinCorpus };
    const tok = tokenizer === undefined ? await loadTokenizer(d.tokenizer)() : E.right(tokenizer);
    if (E.isLeft(tok)) return tok;
    const problem = vocabProblem(tok.right, d.tokenizer, {
      vocab: g.shape.vocab,
      file: "model.vocab",
    });
    if (problem !== undefined) return E.left(problem);
    const progress = print === undefined
      ? {}
      : { progress: progressPrinter((line) => print(`Tokenising: ${line}`), 10_000) };
    const corpus = await loadCorpus({
      sources: resolvedSources(d.source, how),
      tokenizer: d.tokenizer,
      seed: seeds.dataOrder,
      validation: d.validation === undefined
        ? { fraction: d.valFraction, by: "auto" }
        : { sources: resolvedSources(d.validation, how) },
    }, { cacheDir: d.cacheDir, tokenizer: tok.right, ...progress })();
    if (E.isLeft(corpus)) return corpus;
    const data = dataEffect(corpus.right, {
      batch: T.microBatch,
      seq: T.seqLen,
      seed: seeds.dataOrder,
    });
    if (E.isLeft(data)) return data;
    const sets = await evaluationSets(g, how, corpus.right.tokenizer);
    if (E.isLeft(sets)) return sets;
    const byNode = sets.right;
    return E.right({
      ...data.right,
      evaluationSet: (nodeId: string, count: number) => byNode.get(nodeId)?.slice(0, count),
    });
  };
}

/**
 * The corpora of the `eval` nodes that name a `source`, tokenised like the run's data and cut
 * into the run's micro-batches (the first `batches` of them, always the same).
 */
async function evaluationSets(
  g: ValidGraph,
  how: Parameters<typeof resolvedSources>[1],
  tokenizer: Tokenizer,
): Promise<E.Either<PipelineError, Map<string, Batch[]>>> {
  const T = g.training;
  const sets = new Map<string, Batch[]>();
  for (const n of g.pipeline.nodes) {
    if (n.op !== "eval" || n.source === undefined) continue;
    const corpus = await loadCorpus({
      sources: resolvedSources(n.source, how),
      tokenizer: "bytes", // the loaded tokeniser below is the one used
      validation: { fraction: 0 },
    }, { cacheDir: g.data.cacheDir, tokenizer })();
    if (E.isLeft(corpus)) return corpus;
    const batches = evalBatches(corpus.right.train, {
      batch: T.microBatch,
      seq: T.seqLen,
      maxBatches: n.batches ?? T.evalBatches,
      where: `${n.id}.source`,
    });
    if (E.isLeft(batches)) return batches;
    sets.set(n.id, batches.right);
  }
  return E.right(sets);
}

/**
 * Each stage of `g` on `backend` against the memory this machine has for it now (read from the
 * OS and the wasm binary), as `run --dry-run` prints it and `wireRun` checks it.
 */
export function graphMemoryFit(g: ValidGraph, backend: BackendName): MemoryFit {
  return memoryFit(g, backend, backendLimit(g.training, backend, machineMemory()));
}

/**
 * The torch engine for a graph: the interpreter that imports torch (a named error saying what
 * to install when none does), its files in the run directory's `torch/`.
 */
async function torchEngine(
  g: ValidGraph,
  data: Env["data"],
  out: string,
): Promise<E.Either<PipelineError, Env["engine"]>> {
  const s = g.training.torch;
  const problem = torchProblem(s, g.training.batchTokens / g.training.seqLen, {
    cores: navigator.hardwareConcurrency,
  });
  if (problem !== undefined) {
    return E.left(configInvalid(`training.torch.${problem.field}`, problem.message));
  }
  const galore = g.stages.find((st) => st.galore !== undefined);
  if (galore !== undefined) {
    return E.left(
      graphInvalid(
        galore.trainNodeId,
        "GaLore runs on the tfjs engine only (training.engine: tfjs)",
      ),
    );
  }
  const found = await findTorchPython(s.python);
  if (E.isLeft(found)) return found;
  const unable = torchCapabilityProblem(s, found.right);
  if (unable !== undefined) return E.left(unable);
  return E.right(createTorchEngine({
    settings: s,
    python: found.right.python,
    torchVersion: found.right.version,
    workDir: path.join(out, RUN_DIR.torch),
    tokens: data.tokenStreams,
    threads: s.threads ?? Math.max(1, Math.floor(navigator.hardwareConcurrency / s.nproc)),
  }));
}

/** Options of {@link wireRun}. */
export interface WireOptions {
  /** The run directory. */
  readonly out: string;
  readonly mode: RunDirMode;
  /** Overrides `training.backend`. */
  readonly backend?: BackendName;
  /** Where progress lines go. */
  readonly print: (line: string) => void;
  /** The config or pipeline file the graph came from, for messages (`FILE: model.vocab`). */
  readonly configFile?: string;
  /** {@link graphMemoryFit} of the graph on this backend, where the caller has read it already. */
  readonly memoryFit?: MemoryFit;
}

/**
 * A run's effects and the lock on its directory: release it when the run ends (it also stops
 * whatever the engine runs outside this process).
 */
export interface WiredRun {
  readonly env: Env;
  readonly release: () => Promise<void>;
}

/**
 * Wires the effects of a run of `g` into `options.out`: data first (the slowest to fail), then
 * the engine, then the locked run directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { wireRun } from "./env.ts";
 * import { decodePipeline, validateGraph } from "../pipeline/mod.ts";
 * const graph = E.flatMap(decodePipeline({
 *   version: 1,
 *   model: { hidden: 16, intermediate: 32, heads: 2, layers: 1, vocab: 257, maxSeqLen: 16 },
 *   training: { backend: "cpu", seqLen: 16, microBatch: 2, batchTokens: 32 },
 *   data: { source: "builtin", builtinBytes: 5000 },
 *   nodes: [{ op: "train", id: "t", layers: 1, steps: 1 }],
 * }, "example"), validateGraph);
 * const out = await Deno.makeTempDir();
 * if (E.isRight(graph)) {
 *   const wired = await wireRun(graph.right, { out, mode: "replace", print: () => {} })();
 *   if (E.isRight(wired)) {
 *     assert(wired.right.env.data.vocabSize === 257);
 *     await wired.right.release();
 *   }
 * }
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export function wireRun(
  g: ValidGraph,
  options: WireOptions,
): TE.TaskEither<PipelineError, WiredRun> {
  return async () => {
    const backend = options.backend ?? g.training.backend;
    const onTorch = g.training.engine === "torch";
    // Before any tensor, file or process: a stage past the backend's memory would otherwise
    // fail mid-run (on wasm, a bare `Aborted()` from the full heap).
    const tooBig = fitProblem(g, options.memoryFit ?? graphMemoryFit(g, backend));
    if (tooBig !== undefined) return E.left(tooBig);
    // The tokeniser first: a vocabulary that cannot hold its ids is refused before any data is read.
    const at = (field: string) =>
      options.configFile === undefined ? field : `${options.configFile}: ${field}`;
    const tok = await runTokenizer(g.data.tokenizer, {
      out: options.out,
      resume: options.mode === "resume",
      model: { vocab: g.shape.vocab, file: at("model.vocab") },
      where: at("data.tokenizer"),
    });
    if (E.isLeft(tok)) return tok;
    options.print(
      `Tokenizer: ${tok.right.tokenizer.name} (${tok.right.tokenizer.vocabSize} ids; ${tok.right.how})`,
    );
    const data = await graphData(g, tok.right.tokenizer, options.print)();
    if (E.isLeft(data)) return data;
    const engine = onTorch
      ? await torchEngine(g, data.right, options.out)
      : await createEngine(backend)();
    if (E.isLeft(engine)) return engine;
    const dir = await openRunDir(options.out, {
      mode: options.mode,
      print: options.print,
      tokenizer: tok.right.files,
      tensorboard: g.training.tensorboard,
    })();
    if (E.isLeft(dir)) {
      await engine.right.shutdown?.();
      return dir;
    }
    return E.right({
      env: {
        engine: engine.right,
        data: data.right,
        store: dir.right.store,
        log: dir.right.log,
        clock: { now: () => performance.now() },
        processMemory: processMemory(),
      },
      release: async () => {
        try {
          await engine.right.shutdown?.();
        } finally {
          dir.right.release();
        }
      },
    });
  };
}
