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
import type { LlamaShape, PipelineError } from "../base/mod.ts";
import { checkOutput, RUN_DIR, RUN_OUTPUTS } from "../checkpoint/mod.ts";
import type { TokenizerName } from "../data/mod.ts";
import type { ClockEffect, Engine, FinetuneSettings } from "../pipeline/mod.ts";
import type { FinetuneSettingsRecord } from "./_finetune_progress.ts";
import { type LoopResult, trainLoop } from "./_finetune_loop.ts";
import { baseState, prepare, type Prepared } from "./_finetune_prepare.ts";
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
    const allowed = await checkOutput(
      {
        kind: "into",
        flag: "--out",
        path: given.out,
        what: "fine-tuning run",
        names: RUN_OUTPUTS,
        mode: given.mode,
      },
      [
        { what: "the base checkpoint", path: given.base, checkpoint: true },
        { what: "the --data file", path: given.data },
        ...(given.shapeFile === undefined
          ? []
          : [{ what: "the --shape file", path: given.shapeFile }]),
      ],
    );
    if (E.isLeft(allowed)) return allowed;
    const options = { ...given, out: allowed.right };
    const prepared = await prepare(options);
    if (E.isLeft(prepared)) return prepared;
    const p = prepared.right;
    const tokenizer = p.loaded.tokenizerName;
    const existed = await Deno.lstat(options.out).then(() => true, () => false);
    const opened = await openRunDir(options.out, {
      mode: options.mode,
      print: options.print,
      tokenizer,
      shape: p.loaded.model.shape,
    })();
    if (E.isLeft(opened)) {
      p.loaded.dispose();
      return opened;
    }
    const dir = opened.right;
    const shape = p.loaded.model.shape;
    // A base found broken only once it computes (finite weights, non-finite loss) is bad input:
    // like every refusal, it leaves nothing behind.
    let broken = false;
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
      if (E.isLeft(ran) && ran.left._tag === "ContentInvalid" && options.mode !== "resume") {
        broken = true;
      }
      if (E.isLeft(ran) || !ran.right.finished) return E.map(unfinished)(ran);
      return await finish(options, { p, dir, shape, tokenizer, t0 }, ran.right);
    } finally {
      // A resumed run starts from its checkpoint and never needed the base's tensors.
      p.loaded.dispose();
      dir.release();
      if (broken) await discardRun(options.out, existed);
    }
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
    `Plan: ${o.settings.epochs} epochs × ${plan.stepsPerEpoch} steps of ${o.settings.batch} ` +
      `examples = ${plan.steps} steps; LR ${o.settings.lr} cosine to 0, warmup ` +
      `${plan.schedule.warmup}${clamped}; AdamW β ${o.settings.beta1}/${o.settings.beta2}, ` +
      `weight decay ${o.settings.weightDecay}, clip ${o.settings.clip}; backend ${o.engine.backend.description}`,
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
    backend: o.engine.backend.description,
    wallSeconds: (performance.now() - run.t0) / 1000,
    resumedFrom: r.resumedFrom,
  };
  const written = await dir.store.writeText(RUN_DIR.report, JSON.stringify(report, null, 2))();
  if (E.isLeft(written)) return written;
  o.print(`Report: ${written.right}`);
  return E.right({ finished: true, report });
}
