/**
 * `deno task finetune CHECKPOINT --data FILE [--out DIR] [options]`
 *
 * Instruction tuning (Alpaca): full-parameter fine-tuning of a checkpoint on Alpaca records
 * with the loss on the responses only; the composition root of `effects/finetune.ts`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  exitCode,
  type PipelineError,
  renderError,
} from "../base/mod.ts";
import type { TokenizerSpec } from "../data/mod.ts";
import { createEngine, finetune, type FinetuneReport, type RunDirMode } from "../effects/mod.ts";
import {
  type BackendName,
  BACKENDS,
  decodeFinetune,
  FINETUNE_DEFAULTS,
  type FinetuneSettings,
} from "../pipeline/mod.ts";
import {
  backendFlag,
  booleanFlag,
  field,
  intFlag,
  numberFlag,
  onePositional,
  parseCommand,
  type ParsedCommand,
  runDirModeFlag,
  stringFlag,
  tokenizerFlag,
} from "./_args.ts";

const D = FINETUNE_DEFAULTS;

const USAGE = `Usage: deno task finetune CHECKPOINT --data FILE [options]

Instruction tuning: trains every weight of CHECKPOINT on Alpaca records (Stanford Alpaca's
prompt template, with and without "input"), the loss counted on the response tokens only.

CHECKPOINT          a run's final/ or checkpoint/, or a Hugging Face LLaMA directory
--data FILE         Alpaca records: a JSON array or JSONL of {instruction, input?, output}

Options (defaults: the paper's fine-tuning settings, then Stanford Alpaca's):
  --out DIR             run directory (default runs/<base>-sft): metrics, checkpoint/, final/,
                        report.json
  --epochs N            passes over the training examples (default ${D.epochs})
  --lr X                peak learning rate of the cosine schedule, decaying to 0 (default ${D.lr})
  --warmup N            linear warmup steps, clamped to the run's length − 1 (default ${D.warmup})
  --batch N             examples per optimizer step (default ${D.batch})
  --micro-batch N       examples per forward pass; gradients accumulate (default: --batch)
  --weight-decay X      AdamW weight decay (default ${D.weightDecay}); β ${D.beta1}/${D.beta2}, clip ${D.clip}
  --limit N             use only the first N records of FILE
  --eval-examples N     records held out to measure the response loss before and after
                        (default a tenth of the usable records, at most 32)
  --checkpoint-every N  steps between checkpoints (default ${D.checkpointEvery})
  --log-every N         steps between progress lines (default ${D.logEvery})
  --seed S              held-out choice and example order (default ${D.seed})
  --no-tensorboard      write metrics.jsonl only (default: also TensorBoard event files in
                        DIR/tensorboard/)
  --stop-after N        stop after N steps of this session, with a checkpoint to --resume from
  --resume              continue the run in DIR from its checkpoint (same options)
  --force               replace the earlier run in DIR (without it, a used DIR is refused)
  --tokenizer T         bytes | gpt2 | a tokenizer.json or HF model folder, when the
                        checkpoint carries no tokenizer
  --shape FILE          the model shape of a bare checkpoint/ directory
  --backend NAME        ${BACKENDS.join(" | ")} (default auto)
  -h, --help            show this help

Prompts are kept whole: a record whose prompt alone is longer than the model's context is
dropped (and counted); a response that does not fit loses its tail.`;

interface FinetuneArgs {
  readonly base: string;
  readonly data: string;
  readonly out: string;
  readonly mode: RunDirMode;
  readonly settings: FinetuneSettings;
  readonly tokenizer?: TokenizerSpec;
  readonly shapeFile?: string;
  readonly backend: BackendName;
  readonly stopAfter?: number;
}

type Parsed<A> = E.Either<ConfigInvalid, A>;

/** `runs/<name>-sft`, the name from the checkpoint's folder (its run's, for final/ and checkpoint/). */
function defaultOut(base: string): string {
  const parts = base.replace(/\/+$/, "").split("/").filter((p) => p !== "" && p !== ".");
  const last = parts.at(-1) ?? "model";
  const name = (last === "final" || last === "checkpoint") && parts.length > 1
    ? parts.at(-2)!
    : last;
  return `runs/${name}-sft`;
}

/** The settings the flags give (decoded, so defaults apply in one place) and `--stop-after`. */
function settingsOf(
  cmd: ParsedCommand,
): Parsed<{ readonly settings: FinetuneSettings; readonly stopAfter?: number }> {
  const flags = {
    epochs: intFlag(cmd, "epochs", 1),
    warmup: intFlag(cmd, "warmup", 0),
    batch: intFlag(cmd, "batch", 1),
    microBatch: intFlag(cmd, "micro-batch", 1),
    limit: intFlag(cmd, "limit", 1),
    evalExamples: intFlag(cmd, "eval-examples", 0),
    checkpointEvery: intFlag(cmd, "checkpoint-every", 1),
    logEvery: intFlag(cmd, "log-every", 1),
    seed: intFlag(cmd, "seed", 0),
    stopAfter: intFlag(cmd, "stop-after", 1),
    lr: numberFlag(cmd, "lr", (n) => Number.isFinite(n) && n > 0, "a positive number"),
    weightDecay: numberFlag(
      cmd,
      "weight-decay",
      (n) => Number.isFinite(n) && n >= 0,
      "a non-negative number",
    ),
  };
  const given: Record<string, number> = {};
  for (const [key, v] of Object.entries(flags)) {
    if (E.isLeft(v)) return v;
    if (v.right !== undefined) given[key] = v.right;
  }
  const { stopAfter, ...document } = given;
  // `--micro-batch` defaults to this command's `--batch`, not to the settings' default batch.
  const settings = decodeFinetune({
    microBatch: document.batch ?? D.batch,
    ...document,
    ...(booleanFlag(cmd, "no-tensorboard") ? { tensorboard: false } : {}),
  });
  if (E.isLeft(settings)) return settings;
  return E.right({ settings: settings.right, ...field("stopAfter", stopAfter) });
}

/** The command's flags (settings ones parsed by {@link settingsOf}). */
const FLAGS = {
  data: { type: "string" },
  out: { type: "string" },
  epochs: { type: "string" },
  lr: { type: "string" },
  warmup: { type: "string" },
  batch: { type: "string" },
  "micro-batch": { type: "string" },
  "weight-decay": { type: "string" },
  limit: { type: "string" },
  "eval-examples": { type: "string" },
  "checkpoint-every": { type: "string" },
  "log-every": { type: "string" },
  seed: { type: "string" },
  "stop-after": { type: "string" },
  resume: { type: "boolean", default: false },
  force: { type: "boolean", default: false },
  "no-tensorboard": { type: "boolean", default: false },
  tokenizer: { type: "string" },
  shape: { type: "string" },
  backend: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function parseCli(argv: readonly string[]): Parsed<FinetuneArgs | "help"> {
  const parsed = parseCommand(argv, FLAGS);
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  if (booleanFlag(cmd, "help")) return E.right("help");
  const base = onePositional(cmd, "CHECKPOINT", USAGE);
  if (E.isLeft(base)) return base;
  const data = stringFlag(cmd, "data");
  if (data === undefined || data.trim() === "") {
    return E.left(configInvalid("--data", "is required: name the Alpaca JSON or JSONL file"));
  }
  const backend = backendFlag(cmd);
  if (E.isLeft(backend)) return backend;
  const tokenizer = tokenizerFlag(cmd);
  if (E.isLeft(tokenizer)) return tokenizer;
  const mode = runDirModeFlag(cmd);
  if (E.isLeft(mode)) return mode;
  const settings = settingsOf(cmd);
  if (E.isLeft(settings)) return settings;
  const { stopAfter } = settings.right;
  return E.right({
    base: base.right,
    data,
    out: stringFlag(cmd, "out") ?? defaultOut(base.right),
    mode: mode.right,
    settings: settings.right.settings,
    backend: backend.right ?? "auto",
    ...field("tokenizer", tokenizer.right),
    ...field("shapeFile", stringFlag(cmd, "shape")),
    ...field("stopAfter", stopAfter),
  });
}

function summary(r: FinetuneReport): string {
  const h = r.heldOut;
  return [
    `Fine-tuned ${r.steps} steps on ${r.examples.train} examples (${r.responseTokens} response tokens); ` +
    `response loss ${r.firstLoss?.toFixed(4)} at the first step, ${
      r.lastLoss?.toFixed(4)
    } at the last; ` +
    `by epoch ${r.epochLoss.map((l) => l.toFixed(4)).join(", ")}`,
    h === null
      ? "No held-out examples (--eval-examples 0)"
      : `Held-out response loss: ${h.before.toFixed(4)} before, ${
        h.after.toFixed(4)
      } after (${r.examples.heldOut} examples)`,
  ].join("\n");
}

/** Runs the finetune command; resolves to the process exit code. */
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
  const a = cli.right;
  const engine = await createEngine(a.backend)();
  if (E.isLeft(engine)) return fail(engine.left);
  const r = await finetune({
    base: a.base,
    data: a.data,
    out: a.out,
    mode: a.mode,
    engine: engine.right,
    settings: a.settings,
    print,
    ...field("tokenizer", a.tokenizer),
    ...field("shapeFile", a.shapeFile),
    ...field("stopAfter", a.stopAfter),
  })();
  if (E.isLeft(r)) return fail(r.left);
  if (r.right.finished) print(summary(r.right.report));
  return 0;
}

function fail(e: PipelineError): number {
  console.error(renderError(e));
  return exitCode(e);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
