/**
 * `deno task ckpt export|import|grow|merge|logits …`: checkpoints between
 * this project and Hugging Face / PEFT, and STEP's between-stage transforms
 * on disk. Every command but `logits` is engine-free (no TensorFlow.js is
 * loaded); outputs appear whole or not at all.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import {
  attachAdapters,
  checkOutput,
  type CheckpointFormat,
  DEFAULT_MAX_SHARD_BYTES,
  findTokenizer,
  growCheckpoint,
  HF_DTYPES,
  HF_TOKENIZER_FILES,
  type HfDtype,
  type InputPath,
  loadFoundTokenizer,
  type ModelView,
  modelVocab,
  openCheckpoint,
  type OpenedCheckpoint,
  openPeftAdapter,
  type OutputPath,
  requireFinite,
  type SpecialTokens,
  TOKENIZER_FILE,
  type TokenizerFiles,
  tokenizerFiles,
  torchDtype,
  writeCheckpoint,
  type WrittenCheckpoint,
} from "../checkpoint/mod.ts";
import {
  configInvalid,
  contentInvalid,
  DEFAULT_PLACEMENT,
  describeUnknown,
  exitCode,
  formatBytes,
  kernelFailed,
  parseBytes,
  type PipelineError,
  type Placement,
  PLACEMENTS,
  renderError,
  shapeProblem,
} from "../base/mod.ts";
import { writeFileAtomic } from "../store/mod.ts";
import { parseCommand } from "./_args.ts";

const USAGE = `Usage: deno task ckpt <command> [options]

Commands:
  export CHECKPOINT OUT_DIR   our final/ or checkpoint/ directory → a Hugging Face LLaMA directory
                              (adapters of a checkpoint/ go to OUT_DIR/adapter in PEFT format)
  import HF_DIR CHECKPOINT    a Hugging Face LLaMA directory → our final/-style directory
  grow IN OUT --add N         insert N layers (new = mean of neighbours), as a STEP stage does
  merge BASE ADAPTER OUT      merge a PEFT LoRA adapter into BASE
  logits CHECKPOINT --tokens "1,2,3[;4,5,6]" --out FILE
                              next-token logits on the engine, as JSON (for comparing with transformers)

Every output carries the input's tokenizer (tokenizer.json, tokenizer_config.json and the record
step-tokenizer.json), so an exported folder is a complete Hugging Face model folder.

Options:
  --dtype float32|float16|bfloat16  stored dtype of a Hugging Face output (default: export float32,
                                    grow/merge the input's)
  --max-shard-size SIZE       shard a Hugging Face output above SIZE (default 5GB), with an index
  --merge-adapters            export: merge adapters into the weights instead of writing adapter/
  --base-name NAME            export: base_model_name_or_path of the PEFT adapter (default OUT_DIR)
  --placement P               grow: upper (default), uniform, lower or random
  --seed S                    grow: seed of the random placement (default 0)
  --format hf|step            grow/merge: output format (default: the input's)
  --shape FILE                shape of a checkpoint/ directory (the run's config or pipeline YAML)
  --backend cpu|wasm          logits: tfjs backend (default cpu)
  --allow-non-finite          import/export/grow/merge: convert weights that hold NaN or infinity
                              (refused otherwise; logits always refuses them)
  --force                     replace the output directory if it exists
  -h, --help                  show this help`;

const COMMANDS = ["export", "import", "grow", "merge", "logits"] as const;
type Command = typeof COMMANDS[number];

const ARITY: Readonly<Record<Command, number>> = {
  export: 2,
  import: 2,
  grow: 2,
  merge: 3,
  logits: 1,
};

const ALLOWED: Readonly<Record<Command, readonly string[]>> = {
  export: [
    "dtype",
    "max-shard-size",
    "merge-adapters",
    "base-name",
    "shape",
    "force",
    "allow-non-finite",
  ],
  import: ["shape", "force", "allow-non-finite"],
  grow: [
    "add",
    "placement",
    "seed",
    "format",
    "dtype",
    "max-shard-size",
    "shape",
    "force",
    "allow-non-finite",
  ],
  merge: ["format", "dtype", "max-shard-size", "shape", "force", "allow-non-finite"],
  logits: ["tokens", "out", "backend", "shape"],
};

type Values = Readonly<Record<string, string | boolean | undefined>>;

interface Args {
  readonly command: Command;
  readonly paths: readonly string[];
  readonly values: Values;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, Args | "help"> {
  const parsed = parseCommand(argv, {
    dtype: { type: "string" },
    "max-shard-size": { type: "string" },
    "merge-adapters": { type: "boolean" },
    "base-name": { type: "string" },
    add: { type: "string" },
    placement: { type: "string" },
    seed: { type: "string" },
    format: { type: "string" },
    shape: { type: "string" },
    tokens: { type: "string" },
    out: { type: "string" },
    backend: { type: "string" },
    force: { type: "boolean" },
    "allow-non-finite": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (E.isLeft(parsed)) return parsed;
  const { values, positionals } = parsed.right;
  if (values.help === true) return E.right("help");
  const [command, ...paths] = positionals;
  if (!COMMANDS.includes(command as Command)) {
    return E.left(configInvalid(
      "command line",
      `expected a command (${COMMANDS.join(", ")}), got ${
        JSON.stringify(command ?? "")
      }\n\n${USAGE}`,
    ));
  }
  const c = command as Command;
  if (paths.length !== ARITY[c]) {
    return E.left(configInvalid(
      "command line",
      `${c} takes ${ARITY[c]} path(s), got ${paths.length}\n\n${USAGE}`,
    ));
  }
  for (const [key, v] of Object.entries(values)) {
    if (v !== undefined && !ALLOWED[c].includes(key)) {
      return E.left(configInvalid(`--${key}`, `not an option of "${c}"`));
    }
  }
  return E.right({ command: c, paths, values });
}

function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === "string" ? v : undefined;
}

/** An integer flag `--key` ≥ `min`; `fallback` when absent (required when it has none). */
function intOption(
  values: Values,
  flag: { readonly key: string; readonly min: number; readonly fallback?: number },
): E.Either<PipelineError, number> {
  const { key, min, fallback } = flag;
  const text = str(values, key);
  if (text === undefined) {
    return fallback === undefined
      ? E.left(configInvalid(`--${key}`, "is required"))
      : E.right(fallback);
  }
  const n = Number(text);
  return /^\s*\d+\s*$/.test(text) && Number.isSafeInteger(n) && n >= min
    ? E.right(n)
    : E.left(configInvalid(`--${key}`, `expected an integer ≥ ${min}, got "${text}"`));
}

function choice<L extends string>(
  values: Values,
  key: string,
  allowed: readonly L[],
): E.Either<PipelineError, L | undefined> {
  const text = str(values, key);
  if (text === undefined) return E.right(undefined);
  return allowed.includes(text as L)
    ? E.right(text as L)
    : E.left(configInvalid(`--${key}`, `expected one of ${allowed.join(", ")}, got "${text}"`));
}

/** Everything the writing commands share, decoded from the flags. */
interface Output {
  readonly format: CheckpointFormat | undefined;
  readonly dtype: HfDtype | undefined;
  readonly maxShardBytes: number;
  readonly replace: boolean;
}

function outputOptions(values: Values): E.Either<PipelineError, Output> {
  const format = choice(values, "format", ["hf", "step"] as const);
  if (E.isLeft(format)) return format;
  const dtype = choice(values, "dtype", HF_DTYPES);
  if (E.isLeft(dtype)) return dtype;
  const size = str(values, "max-shard-size");
  const maxShardBytes = size === undefined ? DEFAULT_MAX_SHARD_BYTES : parseBytes(size);
  if (maxShardBytes === undefined) {
    return E.left(configInvalid("--max-shard-size", `cannot read "${size}" as a size (e.g. 2GB)`));
  }
  return E.right({
    format: format.right,
    dtype: dtype.right,
    maxShardBytes,
    replace: values.force === true,
  });
}

function opened(dir: string, values: Values): TE.TaskEither<PipelineError, OpenedCheckpoint> {
  const shape = str(values, "shape");
  return openCheckpoint(dir, shape === undefined ? {} : { shapeFile: shape });
}

/** What a command reads: its checkpoint (a whole folder), `--shape`, and `more`. */
function inputsOf(src: string, values: Values, ...more: InputPath[]): InputPath[] {
  const shape = str(values, "shape");
  return [
    { what: "the input", path: src, checkpoint: true },
    ...(shape === undefined ? [] : [{ what: "the --shape file", path: shape }]),
    ...more,
  ];
}

/** The output rule, before anything is opened or written: where to write. */
function guard(
  out: OutputPath,
  inputs: readonly InputPath[],
): TE.TaskEither<PipelineError, string> {
  return () => checkOutput(out, inputs);
}

/** An output folder, replaced whole; with `--force` one that exists too. */
function folderOut(path: string, output: Output): OutputPath {
  return { kind: "folder", path, replace: output.replace };
}

/** Opens `dir`, runs `use`, closes the files whatever happened. */
function withCheckpoint<A>(
  dir: string,
  values: Values,
  use: (c: OpenedCheckpoint) => TE.TaskEither<PipelineError, A>,
): TE.TaskEither<PipelineError, A> {
  return TE.bracketW(opened(dir, values), use, (c) => TE.fromIO(() => c.view.close()));
}

/**
 * The view, its weights checked as they are read unless `--allow-non-finite`: a broken model is
 * not passed on as if it were one (pre-training never writes one either).
 */
function finiteUnlessAllowed(view: ModelView, values: Values): ModelView {
  return values["allow-non-finite"] === true
    ? view
    : requireFinite(view, "pass --allow-non-finite to convert it anyway");
}

/** A save: what was written and what became of the input's tokeniser (a line for the user). */
interface Saved {
  readonly saved: WrittenCheckpoint;
  readonly tokenizer: string;
}

function save(
  c: OpenedCheckpoint,
  view: ModelView,
  out: string,
  o: {
    readonly output: Output;
    readonly values: Values;
    readonly defaults: {
      format: CheckpointFormat;
      adapters: "separate" | "merge";
      baseModel: string;
    };
  },
): TE.TaskEither<PipelineError, Saved> {
  const { output, defaults } = o;
  return pipe(
    carriedTokenizer(c, str(o.values, "shape")),
    TE.flatMap((carried) =>
      pipe(
        writeCheckpoint(view, out, {
          format: output.format ?? defaults.format,
          dtype: output.dtype ?? torchDtype(view.dtype) ?? "float32",
          maxShardBytes: output.maxShardBytes,
          adapters: defaults.adapters,
          baseModel: defaults.baseModel,
          replace: output.replace,
          extraFiles: carried.files,
          ...(carried.specialTokens === undefined ? {} : { specialTokens: carried.specialTokens }),
        }),
        TE.map((saved) => ({ saved, tokenizer: carried.note })),
      )
    ),
  );
}

/** The tokeniser files an output carries, and a line saying what they are. */
interface Carried {
  readonly files: TokenizerFiles;
  readonly note: string;
  /** Its BOS and EOS ids, for a Hugging Face output's config.json. */
  readonly specialTokens?: SpecialTokens;
}

/**
 * The input's tokeniser goes with every output, inside the same atomic write: Hugging Face's
 * `tokenizer.json` and `tokenizer_config.json` (an exported folder is a complete HF model) and
 * STEP's record (evaluation and generation of a grown, merged, imported or exported model encode
 * text as its training did). One that does not fit the model's vocabulary is refused before
 * anything is written; a guessed one is not written down as if it had been recorded.
 */
function carriedTokenizer(
  c: OpenedCheckpoint,
  shapeFile: string | undefined,
): TE.TaskEither<PipelineError, Carried> {
  return async () => {
    const { view } = c;
    const found = await findTokenizer(view.source, view.shape.vocab);
    if (E.isLeft(found)) return found;
    const f = found.right;
    if (f === undefined || f.guessed) {
      const none = `no tokenizer: ${view.source} has no ${TOKENIZER_FILE} or ` +
        `${HF_TOKENIZER_FILES.tokenizer}, so the output carries none`;
      return E.right({
        files: {},
        note: f === undefined
          ? `${none}; give eval, generate, chat and finetune --tokenizer`
          : `${none} (${f.how}: a guess is not recorded); give eval, generate, chat and ` +
            "finetune --tokenizer if the guess is wrong",
      });
    }
    const opened = await loadFoundTokenizer(f, await modelVocab(view, c.format, shapeFile));
    if (E.isLeft(opened)) return opened;
    const t = opened.right.tokenizer;
    const files = tokenizerFiles(f.spec, t);
    return E.right({
      files,
      specialTokens: t.bos === undefined ? { eos: t.eot } : { bos: t.bos, eos: t.eot },
      note:
        `tokenizer ${opened.right.tokenizer.name} (${opened.right.tokenizer.vocabSize} ids; ${f.how})`,
    });
  };
}

function describeView(c: OpenedCheckpoint): string {
  const s = c.view.shape;
  const a = c.view.adapters;
  return `${c.view.source} (${c.format === "hf" ? "Hugging Face" : "STEP"}, ${s.layers} layers, ` +
    `hidden ${s.hidden}${
      a === undefined ? "" : `, LoRA r=${a.rank} on ${a.layers.length} layers`
    })`;
}

async function sizeOf(saved: WrittenCheckpoint): Promise<string> {
  let bytes = 0;
  for (const f of saved.files) bytes += (await Deno.stat(`${saved.dir}/${f}`)).size;
  return formatBytes(bytes);
}

function report(
  verb: string,
  from: string,
  s: Saved,
): TE.TaskEither<PipelineError, string> {
  const { saved } = s;
  return TE.fromTask(async () =>
    `${verb} ${from}\n  → ${saved.dir}: ${saved.files.join(", ")} (${await sizeOf(saved)})\n  ${
      s.tokenizer[0]!.toUpperCase() + s.tokenizer.slice(1)
    }`
  );
}

function exportCmd(a: Args): TE.TaskEither<PipelineError, string> {
  const [src, out] = a.paths as [string, string];
  return pipe(
    TE.fromEither(outputOptions(a.values)),
    TE.tap((output) => guard(folderOut(out, output), inputsOf(src, a.values))),
    TE.flatMap((output) =>
      withCheckpoint(src, a.values, (c) =>
        pipe(
          save(c, finiteUnlessAllowed(c.view, a.values), out, {
            output: { ...output, dtype: output.dtype ?? "float32" },
            values: a.values,
            defaults: {
              format: "hf",
              adapters: a.values["merge-adapters"] === true ? "merge" : "separate",
              baseModel: str(a.values, "base-name") ?? out,
            },
          }),
          TE.flatMap((saved) => report("Exported", describeView(c), saved)),
        ))
    ),
  );
}

function importCmd(a: Args): TE.TaskEither<PipelineError, string> {
  const [src, out] = a.paths as [string, string];
  return pipe(
    TE.fromEither(outputOptions(a.values)),
    TE.tap((output) => guard(folderOut(out, output), inputsOf(src, a.values))),
    TE.flatMap((output) =>
      withCheckpoint(src, a.values, (c) =>
        pipe(
          save(c, finiteUnlessAllowed(c.view, a.values), out, {
            output: { ...output, format: "step" },
            values: a.values,
            defaults: { format: "step", adapters: "merge", baseModel: out },
          }),
          TE.flatMap((saved) => report("Imported", describeView(c), saved)),
        ))
    ),
  );
}

function growCmd(a: Args): TE.TaskEither<PipelineError, string> {
  const [src, out] = a.paths as [string, string];
  return pipe(
    TE.Do,
    TE.bind("output", () => TE.fromEither(outputOptions(a.values))),
    TE.bind("add", () => TE.fromEither(intOption(a.values, { key: "add", min: 1 }))),
    TE.bind("seed", () => TE.fromEither(intOption(a.values, { key: "seed", min: 0, fallback: 0 }))),
    TE.bind("placement", () => TE.fromEither(choice(a.values, "placement", PLACEMENTS))),
    TE.tap(({ output }) => guard(folderOut(out, output), inputsOf(src, a.values))),
    TE.flatMap(({ output, add, seed, placement }) =>
      withCheckpoint(src, a.values, (c) => {
        const p: Placement = placement ?? DEFAULT_PLACEMENT;
        const layers = c.view.shape.layers + add;
        const tooBig = shapeProblem({ ...c.view.shape, layers });
        if (tooBig !== undefined) {
          return TE.left(configInvalid("--add", `growing to ${layers} layers: ${tooBig}`));
        }
        const grown = growCheckpoint(finiteUnlessAllowed(c.view, a.values), {
          add,
          placement: p,
          seed,
        });
        return pipe(
          save(c, grown, out, {
            output,
            values: a.values,
            defaults: { format: c.format, adapters: "merge", baseModel: out },
          }),
          TE.flatMap((saved) =>
            report(`Grew (+${add} layers, ${p}, now ${grown.shape.layers})`, describeView(c), saved)
          ),
        );
      })
    ),
  );
}

function mergeCmd(a: Args): TE.TaskEither<PipelineError, string> {
  const [base, adapter, out] = a.paths as [string, string, string];
  return pipe(
    TE.fromEither(outputOptions(a.values)),
    TE.tap((output) =>
      guard(
        folderOut(out, output),
        inputsOf(base, a.values, { what: "the adapter", path: adapter }),
      )
    ),
    TE.flatMap((output) =>
      withCheckpoint(base, a.values, (c) =>
        TE.bracketW(
          openPeftAdapter(adapter, c.view.shape),
          (ad) =>
            pipe(
              TE.fromEither(attachAdapters(c.view, ad, () => undefined)),
              TE.flatMap((view) =>
                save(c, finiteUnlessAllowed(view, a.values), out, {
                  output,
                  values: a.values,
                  defaults: { format: c.format, adapters: "merge", baseModel: out },
                })
              ),
              TE.flatMap((saved) =>
                report(
                  `Merged ${adapter} (r=${ad.rank}, α=${ad.alpha}, ${ad.layers.length} layers) into`,
                  describeView(c),
                  saved,
                )
              ),
            ),
          (ad) => TE.fromIO(() => ad.close()),
        ))
    ),
  );
}

function parseTokens(text: string | undefined): E.Either<PipelineError, number[][]> {
  if (text === undefined) return E.left(configInvalid("--tokens", "is required"));
  const rows = text.split(";").map((r) => r.split(","));
  const bad = rows.flat().find((t) => !/^\s*\d+\s*$/.test(t) || !Number.isSafeInteger(Number(t)));
  if (bad !== undefined || rows.some((r) => r.length !== rows[0]!.length)) {
    return E.left(configInvalid(
      "--tokens",
      `expected rows of equal length of token ids like 1,2,3;4,5,6, got ${JSON.stringify(text)}` +
        (bad === undefined ? "" : ` (${JSON.stringify(bad)} is not a token id)`),
    ));
  }
  return E.right(rows.map((r) => r.map(Number)));
}

function logitsCmd(a: Args): TE.TaskEither<PipelineError, string> {
  const [src] = a.paths as [string];
  const out = str(a.values, "out");
  return pipe(
    TE.Do,
    TE.bind("tokens", () => TE.fromEither(parseTokens(str(a.values, "tokens")))),
    TE.bind("backend", () => TE.fromEither(choice(a.values, "backend", ["cpu", "wasm"] as const))),
    TE.bind(
      "out",
      () =>
        out === undefined
          ? TE.left(configInvalid("--out", "is required"))
          : guard({ kind: "file", flag: "--out", path: out }, inputsOf(src, a.values)),
    ),
    TE.flatMap(({ tokens, backend, out }) =>
      withCheckpoint(src, a.values, (c) =>
        pipe(
          engineLogits(
            requireFinite(c.view, "a model whose weights are not finite has no logits"),
            tokens,
            backend ?? "cpu",
          ),
          TE.flatMap((json) => writeFileAtomic(out, JSON.stringify(json))),
          TE.map(() =>
            `Logits of ${describeView(c)} for ${tokens.length}×${tokens[0]!.length} tokens → ${out}`
          ),
        ))
    ),
  );
}

/** Runs the model on the engine; tfjs is loaded here only. */
function engineLogits(
  view: ModelView,
  tokens: number[][],
  backend: "cpu" | "wasm",
): TE.TaskEither<PipelineError, Record<string, unknown>> {
  return async () => {
    const records = [];
    for (const t of [...view.tensors, ...(view.adapters?.tensors ?? [])]) {
      const data = await t.load()();
      if (E.isLeft(data)) return data;
      records.push({ name: t.name, shape: t.shape, data: data.right });
    }
    try {
      const k = await import("../kernels/mod.ts");
      const started = await k.initBackend(backend);
      if (E.isLeft(started)) return started;
      const over = tokens.flat().find((t) => t >= view.shape.vocab);
      if (over !== undefined) {
        return E.left(configInvalid(
          "--tokens",
          `token ${over} is outside the model's vocabulary of ${view.shape.vocab}`,
        ));
      }
      const params = k.importParams(records);
      const batch = tokens.length;
      const seq = tokens[0]!.length;
      const logits = k.forwardLogits(
        { shape: view.shape, params, loraScale: view.adapters?.scale ?? 1 },
        { tokens: Int32Array.from(tokens.flat()), batch, seq },
      );
      const values = Array.from(await logits.data());
      logits.dispose();
      k.disposeParams(params);
      const v = view.shape.vocab;
      const nonFinite = values.findIndex((x) => !Number.isFinite(x));
      if (nonFinite >= 0) {
        const [row, pos] = [Math.floor(nonFinite / (seq * v)), Math.floor(nonFinite / v) % seq];
        return E.left(contentInvalid(
          view.source,
          `the logits are not finite (${values[nonFinite]} at row ${row}, position ${pos}): ` +
            "its weights are finite, so the forward pass overflowed float32",
        ));
      }
      return E.right({
        source: view.source,
        tokens,
        shape: [batch, seq, v],
        logits: tokens.map((_, b) =>
          Array.from(
            { length: seq },
            (_, t) => values.slice((b * seq + t) * v, (b * seq + t + 1) * v),
          )
        ),
      });
    } catch (e) {
      return E.left(kernelFailed(`cannot compute logits: ${describeUnknown(e)}`));
    }
  };
}

/** Runs the ckpt command; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = parseCli(argv);
  if (E.isRight(cli) && cli.right === "help") {
    console.log(USAGE);
    return 0;
  }
  const run = (a: Args): TE.TaskEither<PipelineError, string> => {
    switch (a.command) {
      case "export":
        return exportCmd(a);
      case "import":
        return importCmd(a);
      case "grow":
        return growCmd(a);
      case "merge":
        return mergeCmd(a);
      case "logits":
        return logitsCmd(a);
    }
  };
  const result = await pipe(TE.fromEither(cli as E.Either<PipelineError, Args>), TE.flatMap(run))();
  if (E.isLeft(result)) {
    console.error(renderError(result.left));
    return exitCode(result.left);
  }
  console.log(result.right);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
