/**
 * Instruction tuning (issue #13): full-parameter fine-tuning of a checkpoint on Alpaca-format
 * records, the loss counted on the response tokens only. The settings default to the paper's
 * (AdamW β = 0.9/0.95, peak LR 1e-4, cosine with 100 warmup steps, 2 epochs) and the rest to
 * Stanford Alpaca's (weight decay 0, gradient clip 1.0).
 *
 * The run lives in a run directory like pre-training's (`openRunDir`: lock, fresh / resume /
 * replace): `metrics.jsonl`, `checkpoint/` every `checkpointEvery` steps, `final/` (our format,
 * with the base's tokeniser recorded) and `report.json`. Which examples a step trains on and its
 * learning rate follow from the step number (`pipeline/finetune_plan.ts`), and the checkpoint
 * holds AdamW's moments, so a resumed run repeats the uninterrupted one bit for bit.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import {
  configInvalid,
  contentInvalid,
  hashString,
  isAdapterName,
  type LlamaShape,
  type PipelineError,
} from "../base/mod.ts";
import { momentName, RUN_DIR } from "../checkpoint/mod.ts";
import {
  type AlpacaRecord,
  encodeAlpacaSet,
  readAlpaca,
  type SftSet,
  type Tokenizer,
  type TokenizerName,
} from "../data/mod.ts";
import { exportParams } from "../kernels/mod.ts";
import {
  type ClockEffect,
  type Engine,
  type EngineSnapshot,
  type EngineState,
  type FinetunePlan,
  finetunePlan,
} from "../pipeline/mod.ts";
import type { FinetuneSettingsRecord } from "./_finetune_progress.ts";
import { type LoopResult, trainLoop } from "./_finetune_loop.ts";
import { type LoadedModel, loadModel } from "./load_model.ts";
import { openRunDir, type RunDir, type RunDirMode } from "./run_dir.ts";

/** The knobs of a fine-tuning run. */
export interface FinetuneSettings {
  readonly epochs: number;
  /** Peak learning rate. */
  readonly lr: number;
  /** Linear warmup steps (clamped to the run's length − 1). */
  readonly warmup: number;
  /** Examples per optimizer step. */
  readonly batch: number;
  /** Examples per forward pass; a step accumulates the gradients of `batch / microBatch`. */
  readonly microBatch: number;
  /** Use only the first `limit` records of the file. */
  readonly limit?: number;
  /** Records held out to measure the response loss before and after; default a tenth, at most 32. */
  readonly evalExamples?: number;
  readonly checkpointEvery: number;
  readonly logEvery: number;
  readonly seed: number;
  readonly weightDecay: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly clip: number;
  /** Steps in a row with a non-finite loss or gradient (skipped) that stop the run. */
  readonly maxSkippedSteps: number;
}

/**
 * The paper's fine-tuning settings (AdamW 0.9/0.95, LR 1e-4, cosine, 100 warmup steps,
 * 2 epochs); weight decay 0 and clip 1.0 as in Stanford Alpaca's training script. The batch of 8
 * is this project's choice for a CPU (Alpaca's global batch of 128 is a GPU cluster's).
 */
export const FINETUNE_DEFAULTS: FinetuneSettings = {
  epochs: 2,
  lr: 1e-4,
  warmup: 100,
  batch: 8,
  microBatch: 8,
  checkpointEvery: 100,
  logEvery: 10,
  seed: 0,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  clip: 1.0,
  maxSkippedSteps: 3,
};

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
  readonly tokenizer?: TokenizerName;
  /** The shape of a bare `checkpoint/` directory (`--shape`). */
  readonly shapeFile?: string;
  /** Stop after this many steps of this session, with a checkpoint to `--resume` from. */
  readonly stopAfter?: number;
  readonly print: (line: string) => void;
  readonly clock?: ClockEffect;
}

/** `report.json` of a fine-tuning run. */
export interface FinetuneReport {
  readonly kind: "finetune";
  readonly base: string;
  readonly tokenizer: TokenizerName;
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
  readonly settings: FinetuneSettingsRecord & {
    readonly warmupUsed: number;
    readonly logEvery: number;
  };
  readonly steps: number;
  readonly responseTokens: number;
  /** Response loss (nats/token) of the first and the last step, and the mean of each epoch. */
  readonly firstLoss: number | null;
  readonly lastLoss: number | null;
  readonly epochLoss: readonly number[];
  /** Response loss on the held-out examples before and after (null without held-out ones). */
  readonly heldOut: { readonly before: number; readonly after: number } | null;
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

/** The tokeniser's name as a checkpoint records it. */
function recordedName(t: Tokenizer): TokenizerName {
  return t.name === "bytes" ? "bytes" : "gpt2";
}

/** Everything decided before the run directory is touched. */
interface Prepared {
  readonly loaded: LoadedModel;
  /** LoRA adapter pairs in the base, merged before training. */
  readonly adapters: number;
  readonly records: readonly AlpacaRecord[];
  readonly set: SftSet;
  readonly plan: FinetunePlan;
  readonly settings: FinetuneSettingsRecord;
}

async function prepare(o: FinetuneOptions): Promise<E.Either<PipelineError, Prepared>> {
  const S = o.settings;
  if (S.limit !== undefined && !(Number.isSafeInteger(S.limit) && S.limit >= 1)) {
    return E.left(configInvalid("--limit", `must be a positive integer, got ${S.limit}`));
  }
  const read = await readAlpaca(o.data)();
  if (E.isLeft(read)) return read;
  const records = S.limit === undefined ? read.right : read.right.slice(0, S.limit);
  const base = await Deno.realPath(o.base).catch(() => o.base);
  const loaded = await loadModel(o.base, {
    ...(o.tokenizer === undefined ? {} : { tokenizer: o.tokenizer }),
    ...(o.shapeFile === undefined ? {} : { shapeFile: o.shapeFile }),
  })();
  if (E.isLeft(loaded)) return loaded;
  const { shape } = loaded.right.model;
  const set = encodeAlpacaSet(records, {
    tokenizer: loaded.right.tokenizer,
    maxSeqLen: shape.maxSeqLen,
  });
  const fail = (e: PipelineError) => {
    loaded.right.dispose();
    return E.left(e);
  };
  const n = set.examples.length;
  if (n < 2) {
    return fail(contentInvalid(
      o.data,
      `${n} of ${records.length} records fit the model's context of ${shape.maxSeqLen} tokens ` +
        "with room for a response (the prompt is kept whole); fine-tuning needs at least 2",
    ));
  }
  const heldOut = S.evalExamples ?? Math.min(32, Math.floor(n / 10));
  const plan = finetunePlan({
    examples: n,
    heldOut,
    epochs: S.epochs,
    batch: S.batch,
    microBatch: S.microBatch,
    seed: S.seed,
    lr: S.lr,
    warmup: S.warmup,
  });
  if (E.isLeft(plan)) return fail(plan.left);
  return E.right({
    loaded: loaded.right,
    adapters: [...loaded.right.model.params.keys()].filter(isAdapterName).length / 2,
    records,
    set,
    plan: plan.right,
    settings: {
      base,
      dataHash: hashString(JSON.stringify(records)).toString(16).padStart(8, "0"),
      records: records.length,
      limit: S.limit ?? null,
      heldOut,
      epochs: S.epochs,
      batch: S.batch,
      microBatch: S.microBatch,
      lr: S.lr,
      warmup: S.warmup,
      seed: S.seed,
      weightDecay: S.weightDecay,
      beta1: S.beta1,
      beta2: S.beta2,
      eps: S.eps,
      clip: S.clip,
    },
  });
}

/**
 * The base's weights as the engine's starting state: every parameter trainable, fresh moments;
 * LoRA adapters (a ReLoRA or PEFT checkpoint) are merged into their weights first, since full
 * fine-tuning trains the plain model. Consumes `loaded`'s tensors.
 */
async function baseState(
  engine: Engine,
  loaded: LoadedModel,
): Promise<E.Either<PipelineError, EngineState>> {
  const { shape, loraScale } = loaded.model;
  const params = await exportParams(loaded.model.params);
  loaded.dispose();
  const names = params.map((p) => p.name);
  const zeros = (kind: "m" | "v") =>
    params.map((p) => ({
      name: momentName(kind, p.name),
      shape: p.shape,
      data: new Float32Array(p.data.length),
    }));
  const snapshot: EngineSnapshot = {
    params,
    moments: [...zeros("m"), ...zeros("v")],
    meta: { trainable: names, loraScale, adamStep: 0 },
  };
  const restored = await engine.restore(shape, snapshot)();
  if (E.isLeft(restored) || !names.some(isAdapterName)) return restored;
  return await engine.mergeAll(restored.right)();
}

/**
 * Fine-tunes `options.base` on `options.data` into the run directory `options.out`. Every
 * input is checked (records, base, settings) before the directory is opened, so a refused
 * command writes nothing.
 *
 * @example
 * ```ts
 * import { finetune, FINETUNE_DEFAULTS } from "./finetune.ts";
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
export function finetune(options: FinetuneOptions): TE.TaskEither<PipelineError, FinetuneResult> {
  return async () => {
    const t0 = performance.now();
    const prepared = await prepare(options);
    if (E.isLeft(prepared)) return prepared;
    const p = prepared.right;
    const tokenizer = recordedName(p.loaded.tokenizer);
    const opened = await openRunDir(options.out, {
      mode: options.mode,
      print: options.print,
      tokenizer,
    })();
    if (E.isLeft(opened)) {
      p.loaded.dispose();
      return opened;
    }
    const dir = opened.right;
    const shape = p.loaded.model.shape;
    try {
      describe(options, p);
      const ran = await trainLoop({
        engine: options.engine,
        dir,
        plan: p.plan,
        set: p.set,
        shape,
        settings: p.settings,
        limits: options.settings,
        pad: p.loaded.tokenizer.eot,
        resume: options.mode === "resume",
        stopAfter: options.stopAfter,
        clock: options.clock ?? { now: () => performance.now() },
        fresh: () => baseState(options.engine, p.loaded),
      });
      if (E.isLeft(ran) || !ran.right.finished) return E.map(unfinished)(ran);
      return await finish(options, { p, dir, shape, tokenizer, t0 }, ran.right);
    } finally {
      // A resumed run starts from its checkpoint and never needed the base's tensors.
      p.loaded.dispose();
      dir.release();
    }
  };
}

function unfinished(r: LoopResult): FinetuneResult {
  return { finished: false, step: r.step, steps: r.steps };
}

function describe(o: FinetuneOptions, p: Prepared): void {
  const { plan, set, loaded } = p;
  const shape = loaded.model.shape;
  o.print(
    `Base: ${loaded.source} (${loaded.format}, ${shape.layers} layers, width ${shape.hidden}, context ${shape.maxSeqLen}); tokenizer ${loaded.tokenizer.name} (${loaded.tokenizerHow})`,
  );
  o.print(
    `Data: ${o.data}: ${p.records.length} records; ${set.examples.length} fit the context ` +
      `(${set.dropped.length} dropped: prompt longer than ${shape.maxSeqLen} tokens; ` +
      `${set.truncated} responses cut); ${plan.train.length} train, ${plan.heldOut.length} held out`,
  );
  const clamped = plan.schedule.warmup < o.settings.warmup
    ? ` (asked ${o.settings.warmup}, clamped to the run's length − 1)`
    : "";
  o.print(
    `Plan: ${plan.options.epochs} epochs × ${plan.stepsPerEpoch} steps of ${plan.options.batch} ` +
      `examples = ${plan.steps} steps; LR ${plan.options.lr} cosine to 0, warmup ` +
      `${plan.schedule.warmup}${clamped}; AdamW β ${o.settings.beta1}/${o.settings.beta2}, ` +
      `weight decay ${o.settings.weightDecay}, clip ${o.settings.clip}; backend ${o.engine.backend}`,
  );
  if (p.adapters > 0) {
    o.print(
      `The base has ${p.adapters} LoRA adapters: merged into their weights before full fine-tuning`,
    );
  }
  o.print(`Run directory: ${o.out}`);
}

async function finish(
  o: FinetuneOptions,
  run: {
    readonly p: Prepared;
    readonly dir: RunDir;
    readonly shape: LlamaShape;
    readonly tokenizer: TokenizerName;
    readonly t0: number;
  },
  r: LoopResult,
): Promise<E.Either<PipelineError, FinetuneResult>> {
  const { p, dir } = run;
  const g = r.progress;
  const before = g.heldOutBefore;
  const report: FinetuneReport = {
    kind: "finetune",
    base: p.loaded.source,
    tokenizer: run.tokenizer,
    tokenizerHow: p.loaded.tokenizerHow,
    data: o.data,
    maxSeqLen: run.shape.maxSeqLen,
    records: p.records.length,
    examples: {
      train: p.plan.train.length,
      heldOut: p.plan.heldOut.length,
      dropped: p.set.dropped.length,
      truncated: p.set.truncated,
    },
    settings: { ...p.settings, warmupUsed: p.plan.schedule.warmup, logEvery: o.settings.logEvery },
    steps: g.step,
    responseTokens: g.responseTokens,
    firstLoss: g.firstLoss,
    lastLoss: g.lastLoss,
    epochLoss: g.epochs.map((e) => e.lossSum / Math.max(1, e.tokens)),
    heldOut: before === null || r.heldOutAfter === null ? null : { before, after: r.heldOutAfter },
    mergedAdapters: p.adapters,
    final: r.final,
    backend: o.engine.backend,
    wallSeconds: (performance.now() - run.t0) / 1000,
    resumedFrom: r.resumedFrom,
  };
  const written = await dir.store.writeText(RUN_DIR.report, JSON.stringify(report, null, 2))();
  if (E.isLeft(written)) return written;
  o.print(`Report: ${written.right}`);
  return E.right({ finished: true, report });
}
