/**
 * Instruction tuning (issue #13): full-parameter fine-tuning of a checkpoint on Alpaca-format
 * records, the loss counted on the response tokens only. The settings default to the paper's
 * (AdamW β = 0.9/0.95, peak LR 1e-4, cosine with 100 warmup steps, 2 epochs) and the rest to
 * Stanford Alpaca's (weight decay 0, gradient clip 1.0).
 *
 * A fine-tuning run is a stage graph run by the interpreter's machinery
 * (`pipeline/finetune_run.ts`): one `train` node over the base, trained by the same fold as
 * pre-training's stages, on a data effect over the instruction examples (`instruction_data.ts`).
 * It lives in a run directory like pre-training's (`openRunDir`: lock, fresh / resume /
 * replace): `metrics.jsonl`, `checkpoint/` every `checkpointEvery` steps, `final/` (our format,
 * with the base's tokeniser recorded) and `report.json`, which sums up `metrics.jsonl`. Which
 * examples a step trains on and its learning rate follow from the step number, and the checkpoint
 * holds AdamW's moments, so a resumed run repeats the uninterrupted one bit for bit.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import { describeUnknown, ioFailed, type PipelineError } from "../base/mod.ts";
import { checkOutput, RUN_DIR, RUN_OUTPUTS, tokenizerFiles } from "../checkpoint/mod.ts";
import type { TokenizerSpec } from "../data/mod.ts";
import {
  type ClockEffect,
  decodeMetricLines,
  type Engine,
  type Env,
  type FinetuneMetric,
  FinetuneMetricCodec,
  type FinetuneOutcome,
  type FinetuneRecord,
  type FinetuneSettings,
  type FinetuneSummary,
  finetuneSummary,
  runFinetune,
} from "../pipeline/mod.ts";
import { prepare, type Prepared } from "./_finetune_prepare.ts";
import { instructionData } from "./instruction_data.ts";
import { processMemory } from "./process_memory.ts";
import { openRunDir, type RunDir, type RunDirMode } from "./run_dir.ts";

/** Options of {@link finetune}. */
export interface FinetuneOptions {
  /** The checkpoint to start from (anything `loadModel` opens). */
  readonly base: string;
  /** Alpaca records: a JSON array or JSONL. */
  readonly data: string;
  /** The run directory. */
  readonly out: string;
  readonly mode: RunDirMode;
  /** The engine, on a started backend (`createEngine`). */
  readonly engine: Engine;
  readonly settings: FinetuneSettings;
  /** The base's tokeniser, when its checkpoint does not say (`--tokenizer`). */
  readonly tokenizer?: TokenizerSpec;
  /** The shape of a bare `checkpoint/` directory (`--shape`). */
  readonly shapeFile?: string;
  /** Stop after this many steps of this session, with a checkpoint to `--resume` from. */
  readonly stopAfter?: number;
  readonly print: (line: string) => void;
  readonly clock?: ClockEffect;
}

/** `report.json` of a fine-tuning run: its inputs and settings, and what its records sum up to. */
export interface FinetuneReport extends FinetuneSummary {
  readonly kind: "finetune";
  readonly base: string;
  /** The base's tokeniser (its `name`), which the output carries. */
  readonly tokenizer: string;
  readonly tokenizerHow: string;
  readonly data: string;
  readonly maxSeqLen: number;
  readonly records: number;
  /** Examples trained on, held out, dropped (prompt longer than the context), and cut. */
  readonly examples: {
    readonly train: number;
    readonly heldOut: number;
    readonly dropped: number;
    readonly truncated: number;
  };
  readonly settings: FinetuneRecord & {
    readonly warmupUsed: number;
    readonly logEvery: number;
  };
  readonly steps: number;
  readonly mergedAdapters: number;
  readonly final: string;
  readonly backend: string;
  /** This process's time: a resumed run's earlier sessions are not in it. */
  readonly wallSeconds: number;
  readonly resumedFrom: number | null;
}

/** What {@link finetune} returns: the report, or where a run stopped early by `stopAfter`. */
export type FinetuneResult =
  | { readonly finished: true; readonly report: FinetuneReport }
  | { readonly finished: false; readonly step: number; readonly steps: number };

/**
 * Fine-tunes `base` on `data` into the run directory `out` (written where the output
 * rule says: `checkOutput`, which refuses an input, a folder inside or holding one, and a used
 * folder without `--force`). The rule and every input (records, base, settings) are checked
 * before the directory is opened, so a refused command writes nothing.
 *
 * @example
 * ```ts
 * import { finetune } from "./finetune.ts";
 * import { FINETUNE_DEFAULTS } from "../pipeline/mod.ts";
 * import { createEngine } from "./tfjs_engine.ts";
 * const engine = await createEngine("cpu")();
 * if (engine._tag === "Right") {
 *   const r = await finetune({
 *     base: "/no/such/final", data: "/no/such/alpaca.json", out: "/tmp/never-written",
 *     mode: "fresh", engine: engine.right, settings: FINETUNE_DEFAULTS, print: console.log,
 *   })();
 *   console.assert(r._tag === "Left");
 * }
 * ```
 */
export function finetune(given: FinetuneOptions): TE.TaskEither<PipelineError, FinetuneResult> {
  return async () => {
    const t0 = performance.now();
    const allowed = await outputAllowed(given);
    if (E.isLeft(allowed)) return allowed;
    const options = { ...given, out: allowed.right };
    const prepared = await prepare(options);
    if (E.isLeft(prepared)) return prepared;
    const p = prepared.right;
    const existed = await Deno.lstat(options.out).then(() => true, () => false);
    const opened = await openRunDir(options.out, {
      mode: options.mode,
      print: options.print,
      tokenizer: tokenizerFiles(p.loaded.tokenizerSpec, p.loaded.tokenizer),
      shape: p.loaded.model.shape,
      tensorboard: options.settings.tensorboard,
    })();
    if (E.isLeft(opened)) {
      p.loaded.dispose();
      return opened;
    }
    const dir = opened.right;
    // A base found broken only once it computes (finite weights, non-finite loss) is bad input:
    // like every refusal, it leaves nothing behind.
    let broken = false;
    try {
      describe(options, p);
      const ran = await runFinetune(p.job, {
        resume: options.mode === "resume",
        ...(options.stopAfter === undefined ? {} : { stopAfter: options.stopAfter }),
      })(runEnv(options, p, dir))();
      broken = E.isLeft(ran) && ran.left._tag === "ContentInvalid" && options.mode !== "resume";
      if (E.isLeft(ran)) return ran;
      if (!ran.right.finished) return E.right(ran.right);
      return await finish(options, { p, dir, t0 }, ran.right);
    } finally {
      // A resumed run starts from its checkpoint and never needed the base's tensors.
      p.loaded.dispose();
      dir.release();
      if (broken) await discardRun(options.out, existed);
    }
  };
}

/** `--out` as the output rule allows it, given the inputs it must not touch. */
function outputAllowed(o: FinetuneOptions): Promise<E.Either<PipelineError, string>> {
  return checkOutput(
    {
      kind: "into",
      flag: "--out",
      path: o.out,
      what: "fine-tuning run",
      names: RUN_OUTPUTS,
      mode: o.mode,
    },
    [
      { what: "the base checkpoint", path: o.base, checkpoint: true },
      { what: "the --data file", path: o.data },
      ...(o.shapeFile === undefined ? [] : [{ what: "the --shape file", path: o.shapeFile }]),
    ],
  );
}

/** The run's effects: the given engine, the instruction examples, the run directory. */
function runEnv(o: FinetuneOptions, p: Prepared, dir: RunDir): Env {
  return {
    engine: o.engine,
    data: instructionData(p.set, p.job.plan, p.loaded.tokenizer),
    store: dir.store,
    log: dir.log,
    clock: o.clock ?? { now: () => performance.now() },
    processMemory: processMemory(),
  };
}

/** Removes what a refused run wrote in `dir` (the folder too, when this run made it). */
async function discardRun(dir: string, existed: boolean): Promise<void> {
  for (const name of [...RUN_OUTPUTS, RUN_DIR.lock]) {
    await Deno.remove(`${dir}/${name}`, { recursive: true }).catch(() => {});
  }
  // Only an empty folder goes: anything else in it was there before.
  if (!existed) await Deno.remove(dir).catch(() => {});
}

function describe(o: FinetuneOptions, p: Prepared): void {
  const { set, loaded } = p;
  const { plan } = p.job;
  const S = o.settings;
  const shape = loaded.model.shape;
  o.print(
    `Base: ${loaded.source} (${loaded.format}, ${shape.layers} layers, width ${shape.hidden}, context ${shape.maxSeqLen}); tokenizer ${loaded.tokenizer.name} (${loaded.tokenizerHow})`,
  );
  o.print(
    `Data: ${o.data}: ${p.records.length} records; ${set.examples.length} fit the context ` +
      `(${set.dropped.length} dropped: prompt longer than ${shape.maxSeqLen} tokens; ` +
      `${set.truncated} responses cut); ${plan.train.length} train, ${plan.heldOut.length} held out`,
  );
  const clamped = plan.warmup < S.warmup
    ? ` (asked ${S.warmup}, clamped to the run's length − 1)`
    : "";
  o.print(
    `Plan: ${S.epochs} epochs × ${plan.stepsPerEpoch} steps of ${S.batch} examples = ` +
      `${plan.steps} steps; LR ${S.lr} cosine to 0, warmup ${plan.warmup}${clamped}; AdamW β ` +
      `${S.beta1}/${S.beta2}, weight decay ${S.weightDecay}, clip ${S.clip}; backend ${o.engine.backend.description}`,
  );
  if (p.adapters > 0) {
    o.print(
      `The base has ${p.adapters} LoRA adapters: merged into their weights before full fine-tuning`,
    );
  }
  o.print(`Run directory: ${o.out}`);
}

/** The records of the run's `metrics.jsonl`, each decoded. */
async function finetuneRecords(dir: RunDir): Promise<E.Either<PipelineError, FinetuneMetric[]>> {
  const path = `${dir.dir}/${RUN_DIR.metrics}`;
  try {
    return decodeMetricLines(FinetuneMetricCodec, await Deno.readTextFile(path), path);
  } catch (e) {
    return E.left(ioFailed(path, describeUnknown(e)));
  }
}

/** Writes `report.json`, which sums up the run's `metrics.jsonl` (the resumed sessions' too). */
async function finish(
  o: FinetuneOptions,
  run: { readonly p: Prepared; readonly dir: RunDir; readonly t0: number },
  r: Extract<FinetuneOutcome, { readonly finished: true }>,
): Promise<E.Either<PipelineError, FinetuneResult>> {
  const { p, dir } = run;
  const { plan, record } = p.job;
  const records = await finetuneRecords(dir);
  if (E.isLeft(records)) return records;
  const report: FinetuneReport = {
    kind: "finetune",
    base: p.loaded.source,
    tokenizer: p.loaded.tokenizer.name,
    tokenizerHow: p.loaded.tokenizerHow,
    data: o.data,
    maxSeqLen: p.loaded.model.shape.maxSeqLen,
    records: p.records.length,
    examples: {
      train: plan.train.length,
      heldOut: plan.heldOut.length,
      dropped: p.set.dropped.length,
      truncated: p.set.truncated,
    },
    settings: { ...record, warmupUsed: plan.warmup, logEvery: o.settings.logEvery },
    steps: plan.steps,
    ...finetuneSummary(records.right),
    mergedAdapters: p.adapters,
    final: r.final,
    backend: o.engine.backend.description,
    wallSeconds: (performance.now() - run.t0) / 1000,
    resumedFrom: r.resumedFrom,
  };
  const written = await dir.store.writeText(RUN_DIR.report, JSON.stringify(report, null, 2))();
  if (E.isLeft(written)) return written;
  o.print(`Report: ${written.right}`);
  return E.right({ finished: true, report });
}
