/**
 * What `generate`, `chat` and `mtbench` share: the sampling and model flags, their checks
 * (each bad value a `ConfigInvalid` naming the flag), and opening the checkpoint on a backend.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, type PipelineError } from "../base/mod.ts";
import type { TokenizerSpec } from "../data/mod.ts";
import { type LoadedModel, loadModel, startBackend } from "../effects/mod.ts";
import { type BackendName, BACKENDS } from "../pipeline/mod.ts";
import { samplingProblem } from "../kernels/mod.ts";
import {
  backendFlag,
  booleanFlag,
  field,
  intFlag,
  numberFlag,
  onePositional,
  type ParsedCommand,
  stringFlag,
  tokenizerFlag,
} from "./_args.ts";

/** The flags of every generating command, for `parseCommand`. */
export const GENERATION_FLAGS = {
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  seed: { type: "string" },
  tokenizer: { type: "string" },
  shape: { type: "string" },
  backend: { type: "string" },
  "no-cache": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** Help lines of {@link GENERATION_FLAGS}, given the command's defaults. */
export function generationUsage(defaults: GenerationDefaults): string {
  return `  --max-tokens N     new tokens at most${
    defaults.perTurn ? " per answer" : ""
  } (default ${defaults.maxTokens})
  --temperature T    0 is greedy (default ${defaults.temperature})${
    defaults.categoryTemperature ? `; "category": FastChat's per-category values` : ""
  }
  --top-k K          sample from the K most likely tokens (default ${defaults.topK ?? "off"})
  --top-p P          sample from the smallest set of mass ≥ P (default ${defaults.topP ?? "off"})
  --seed S           seed of the sampling stream (default 0)
  --tokenizer T      bytes | gpt2 | a tokenizer.json or HF model folder, when the
                     checkpoint carries none
  --shape FILE       model shape, for a bare checkpoint/ directory
  --backend NAME     ${BACKENDS.join(" | ")} (default auto)
  --no-cache         recompute the whole context every token (the key/value cache's reference)
  -h, --help         show this help`;
}

/** Each command's defaults. */
export interface GenerationDefaults {
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topK?: number;
  readonly topP?: number;
  /** `--temperature category` is accepted (MT-Bench). */
  readonly categoryTemperature?: boolean;
  /** The token limit is per answer turn. */
  readonly perTurn?: boolean;
}

/** The decoded generation flags. */
export interface GenerationArgs {
  readonly checkpoint: string;
  readonly maxTokens: number;
  /** 0 is greedy; with {@link GenerationArgs.perCategory}, the value for unknown categories. */
  readonly temperature: number;
  /** `--temperature category`: FastChat's per-category temperatures (MT-Bench only). */
  readonly perCategory: boolean;
  readonly topK?: number;
  readonly topP?: number;
  readonly seed: number;
  readonly tokenizer?: TokenizerSpec;
  readonly shape?: string;
  readonly backend: BackendName;
  readonly cache: boolean;
}

/**
 * The generation flags of a parsed command line with one positional CHECKPOINT.
 *
 * @example
 * ```ts
 * import { parseCommand } from "./_args.ts";
 * import { GENERATION_FLAGS, generationArgs } from "./_generation.ts";
 * const cmd = parseCommand(["ckpt", "--top-p", "2"], GENERATION_FLAGS);
 * if (cmd._tag === "Right") {
 *   console.assert(generationArgs(cmd.right, { maxTokens: 9, temperature: 0 })._tag === "Left");
 * }
 * ```
 */
export function generationArgs(
  cmd: ParsedCommand,
  defaults: GenerationDefaults,
  usage = "",
): E.Either<ConfigInvalid, GenerationArgs> {
  const checkpoint = onePositional(cmd, "CHECKPOINT", usage);
  if (E.isLeft(checkpoint)) return checkpoint;
  const maxTokens = intFlag(cmd, "max-tokens", 1);
  if (E.isLeft(maxTokens)) return maxTokens;
  const category = defaults.categoryTemperature === true &&
    stringFlag(cmd, "temperature") === "category";
  const temperature = category ? E.right(undefined) : numberFlag(
    cmd,
    "temperature",
    (n) => samplingProblem({ temperature: n }) === undefined,
    `a number ≥ 0${defaults.categoryTemperature === true ? ' or "category"' : ""}`,
  );
  if (E.isLeft(temperature)) return temperature;
  // The kernel's own check decides what is valid; the flag names the value.
  const topK = numberFlag(
    cmd,
    "top-k",
    (n) => samplingProblem({ topK: n }) === undefined,
    "an integer ≥ 0",
  );
  if (E.isLeft(topK)) return topK;
  const topP = numberFlag(
    cmd,
    "top-p",
    (n) => samplingProblem({ topP: n }) === undefined,
    "a number in (0, 1]",
  );
  if (E.isLeft(topP)) return topP;
  const seed = numberFlag(cmd, "seed", (n) => Number.isSafeInteger(n), "an integer");
  if (E.isLeft(seed)) return seed;
  const tokenizer = tokenizerFlag(cmd);
  if (E.isLeft(tokenizer)) return tokenizer;
  const backend = backendFlag(cmd);
  if (E.isLeft(backend)) return backend;
  const args: GenerationArgs = {
    checkpoint: checkpoint.right,
    maxTokens: maxTokens.right ?? defaults.maxTokens,
    temperature: temperature.right ?? defaults.temperature,
    perCategory: category,
    seed: seed.right ?? 0,
    backend: backend.right ?? "auto",
    cache: !booleanFlag(cmd, "no-cache"),
    ...field("topK", topK.right ?? defaults.topK),
    ...field("topP", topP.right ?? defaults.topP),
    ...field("tokenizer", tokenizer.right),
    ...field("shape", stringFlag(cmd, "shape")),
  };
  return E.right(args);
}

/** The started backend's description and the loaded checkpoint (the caller disposes it). */
export async function openForGeneration(
  args: GenerationArgs,
): Promise<E.Either<PipelineError, { readonly backend: string; readonly loaded: LoadedModel }>> {
  const backend = await startBackend(args.backend)();
  if (E.isLeft(backend)) return backend;
  const loaded = await loadModel(args.checkpoint, {
    ...field("tokenizer", args.tokenizer),
    ...field("shapeFile", args.shape),
  })();
  if (E.isLeft(loaded)) return loaded;
  return E.right({ backend: backend.right, loaded: loaded.right });
}

/** One line about the model, for stderr. */
export function describeLoaded(loaded: LoadedModel, backend: string): string {
  const s = loaded.model.shape;
  return `Model: ${loaded.source} (${loaded.format}; d=${s.hidden}, ${s.layers} layers, vocab ${s.vocab}, context ${s.maxSeqLen}); tokenizer ${loaded.tokenizer.name} (${loaded.tokenizerHow}); backend ${
    backend.split(":")[0]
  }`;
}
