/**
 * Which tokeniser a checkpoint's token ids belong to, so evaluation and generation encode text
 * as training did, and the tokeniser itself travels with the weights.
 *
 * Every checkpoint this project writes (a run's `final/` and `checkpoint/`, every `ckpt`
 * output) holds Hugging Face's `tokenizer.json` and `tokenizer_config.json`, so an exported
 * folder is a complete HF model folder, and STEP's record `step-tokenizer.json` (a name HF's
 * loaders do not read) saying which tokeniser that is:
 *
 * - `{ "tokenizer": "bytes" }` or `{ "tokenizer": "gpt2" }`: a built-in tokeniser, whose ids
 *   are exactly STEP's own (the HF files beside it are its equivalent, for other loaders);
 * - `{ "tokenizer": "tokenizer.json", "sha256": "…" }`: the `tokenizer.json` beside the record
 *   (with its `tokenizer_config.json`), whose text has that SHA-256, so a file replaced after the
 *   checkpoint was written is noticed instead of silently changing every id.
 *
 * Records written before the HF files travelled (`{ "tokenizer": "bytes" | "gpt2" }` alone) read
 * as before. For a directory without a record, the answer is looked for in the run around it
 * (`../pipeline.yaml`), then in a `tokenizer.json` beside the weights (HF's convention), then
 * guessed from the vocabulary size, and every answer says how it was found.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import YAML from "yaml";
import {
  type ConfigInvalid,
  configInvalid,
  contentInvalid,
  describeUnknown,
  type ext,
  ioFailed,
} from "../base/mod.ts";
import { loadTokenizer, type Tokenizer, TokenizerName, type TokenizerSpec } from "../data/mod.ts";
import { exists, readJson } from "./_files.ts";
import type { CkptError } from "./model_view.ts";
import type { CheckpointFormat } from "./checkpoint_dir.ts";
import { FINAL_FILES, RUN_DIR } from "./run_layout.ts";

/** The sidecar file that records a checkpoint's tokeniser. */
export const TOKENIZER_FILE = "step-tokenizer.json";

/** Hugging Face's tokeniser files, written beside every checkpoint's weights. */
export const HF_TOKENIZER_FILES = {
  tokenizer: "tokenizer.json",
  config: "tokenizer_config.json",
} as const;

/**
 * What {@link TOKENIZER_FILE} says: a built-in tokeniser by name, or the `tokenizer.json`
 * beside the record, whose text has the SHA-256 `sha256` (lower-case hex).
 */
export type TokenizerRecord =
  | { readonly tokenizer: TokenizerName }
  | { readonly tokenizer: typeof HF_TOKENIZER_FILES.tokenizer; readonly sha256: string };

/** The text of {@link TOKENIZER_FILE} for `record`. */
export function tokenizerRecordText(record: TokenizerRecord): string {
  return JSON.stringify(record, null, 1) + "\n";
}

/** Lower-case hex SHA-256 of a text's UTF-8 bytes. */
export function sha256Hex(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Whether a spec names a built-in tokeniser rather than a path. */
export function isBuiltinTokenizer(spec: TokenizerSpec): spec is TokenizerName {
  return TokenizerName.is(spec);
}

/** File name → text: what a checkpoint writes beside its weights about its tokeniser. */
export type TokenizerFiles = Readonly<Record<string, string>>;

/**
 * The files a checkpoint carries for `tokenizer`, loaded from `spec`: Hugging Face's
 * `tokenizer.json` and `tokenizer_config.json` (its `hfFiles()`) and the record naming it (the
 * built-in's name, or the SHA-256 of the `tokenizer.json` written).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer } from "../data/mod.ts";
 * import { TOKENIZER_FILE, tokenizerFiles } from "./tokenizer_record.ts";
 * const bytes = await loadTokenizer("bytes")();
 * if (bytes._tag === "Right") {
 *   const files = tokenizerFiles("bytes", bytes.right);
 *   assert.deepEqual(JSON.parse(files[TOKENIZER_FILE]!), { tokenizer: "bytes" });
 *   assert("tokenizer.json" in files && "tokenizer_config.json" in files);
 * }
 * ```
 */
export function tokenizerFiles(spec: TokenizerSpec, tokenizer: Tokenizer): TokenizerFiles {
  const hf = tokenizer.hfFiles();
  const json = hf[HF_TOKENIZER_FILES.tokenizer];
  const record: TokenizerRecord = isBuiltinTokenizer(spec)
    ? { tokenizer: spec }
    : { tokenizer: HF_TOKENIZER_FILES.tokenizer, sha256: sha256Hex(json) };
  return {
    [HF_TOKENIZER_FILES.tokenizer]: json,
    [HF_TOKENIZER_FILES.config]: hf[HF_TOKENIZER_FILES.config],
    [TOKENIZER_FILE]: tokenizerRecordText(record),
  };
}

/** A tokeniser and how it was determined (for the user: a guess is said to be one). */
export interface FoundTokenizer {
  /**
   * What to load: `bytes`, `gpt2`, or a path (to a `tokenizer.json`, or to a folder holding one
   * and its `tokenizer_config.json`).
   */
  readonly spec: TokenizerSpec;
  /** E.g. `recorded in final/step-tokenizer.json`, or `guessed from the vocabulary size 257`. */
  readonly how: string;
  /** Inferred from the files or the vocabulary size, not recorded by whoever wrote them. */
  readonly guessed: boolean;
  /** The file or setting that named it, for errors in loading it (e.g. `--tokenizer`). */
  readonly where?: string;
}

const RECORD_EXPECTED =
  `expected "bytes", "gpt2", or "tokenizer.json" with the "sha256" of the file beside it`;

/** A parsed record, checked; `where` names the file for errors. */
function decodeRecord(json: unknown, where: string): ext.Either<ConfigInvalid, TokenizerRecord> {
  const o = typeof json === "object" && json !== null
    ? json as { tokenizer?: unknown; sha256?: unknown }
    : {};
  if (TokenizerName.is(o.tokenizer)) return E.right({ tokenizer: o.tokenizer });
  if (o.tokenizer === HF_TOKENIZER_FILES.tokenizer) {
    return typeof o.sha256 === "string" && /^[0-9a-f]{64}$/.test(o.sha256)
      ? E.right({ tokenizer: o.tokenizer, sha256: o.sha256 })
      : E.left(configInvalid(
        `${where}: sha256`,
        `expected the 64 hex digits of the SHA-256 of ${HF_TOKENIZER_FILES.tokenizer}, got ${
          JSON.stringify(o.sha256)
        }`,
      ));
  }
  return E.left(
    configInvalid(`${where}: tokenizer`, `${RECORD_EXPECTED}, got ${JSON.stringify(o.tokenizer)}`),
  );
}

/** The record in `dir`, its `tokenizer.json` checked against the recorded SHA-256. */
async function fromRecord(
  dir: string,
  own: string,
): Promise<ext.Either<CkptError, FoundTokenizer>> {
  const json = await readJson(own)();
  if (E.isLeft(json)) return json;
  const record = decodeRecord(json.right, own);
  if (E.isLeft(record)) return record;
  const how = `recorded in ${own}`;
  const r = record.right;
  if (!("sha256" in r)) return E.right({ spec: r.tokenizer, how, guessed: false, where: own });
  const file = `${dir}/${HF_TOKENIZER_FILES.tokenizer}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    return E.left(ioFailed(
      file,
      `${own} names the ${HF_TOKENIZER_FILES.tokenizer} beside it, which cannot be read (${
        e instanceof Deno.errors.NotFound ? "no such file" : describeUnknown(e)
      })`,
    ));
  }
  const sha = sha256Hex(bytes);
  return sha === r.sha256
    ? E.right({ spec: dir, how, guessed: false, where: own })
    : E.left(contentInvalid(
      file,
      `its SHA-256 is ${sha}, ${own} records ${r.sha256}: the tokenizer was replaced after the ` +
        "checkpoint was written, so its ids may not be the model's (restore it, or delete the " +
        "record to use the new file as it is)",
    ));
}

/**
 * `data.tokenizer` of a run's pipeline.yaml (a run writes it with its defaults applied); a
 * relative path is taken from the working directory, as the run took it.
 */
async function fromPipeline(
  path: string,
): Promise<ext.Either<CkptError, TokenizerSpec | undefined>> {
  let doc: unknown;
  try {
    doc = YAML.parse(await Deno.readTextFile(path));
  } catch (e) {
    return E.left(contentInvalid(path, describeUnknown(e)));
  }
  const data = typeof doc === "object" && doc !== null
    ? (doc as { data?: unknown }).data
    : undefined;
  if (typeof data !== "object" || data === null || !("tokenizer" in data)) {
    return E.right(undefined);
  }
  const spec = (data as { tokenizer: unknown }).tokenizer;
  if (typeof spec !== "string" || spec.trim() === "") {
    return E.left(configInvalid(
      `${path}: data.tokenizer`,
      `expected "bytes", "gpt2" or a path to a tokenizer.json, got ${JSON.stringify(spec)}`,
    ));
  }
  return E.right(isBuiltinTokenizer(spec) ? spec : resolve(spec));
}

/**
 * The tokeniser of the checkpoint in `dir` whose vocabulary is `vocab` (which the guesses read),
 * or `undefined` when nothing tells (the caller asks the user to say, e.g. with `--tokenizer`).
 * Whether its ids fit the vocabulary is checked once it is loaded ({@link loadFoundTokenizer}).
 *
 * @example
 * ```ts
 * import { findTokenizer } from "./tokenizer_record.ts";
 * const r = await findTokenizer("/no/such/dir", 257);
 * console.assert(r._tag === "Right" && r.right?.spec === "bytes");
 * ```
 */
export async function findTokenizer(
  dir: string,
  vocab: number,
): Promise<ext.Either<CkptError, FoundTokenizer | undefined>> {
  const own = `${dir}/${TOKENIZER_FILE}`;
  if (await exists(own)) return fromRecord(dir, own);
  const pipeline = `${dir}/../${RUN_DIR.pipeline}`;
  if (await exists(pipeline)) {
    const spec = await fromPipeline(pipeline);
    if (E.isLeft(spec)) return spec;
    if (spec.right !== undefined) {
      return E.right({
        spec: spec.right,
        how: `the run's data.tokenizer in ${pipeline}`,
        guessed: false,
        where: `${pipeline}: data.tokenizer`,
      });
    }
  }
  // Hugging Face's convention: the model's tokeniser is the tokenizer.json beside its weights.
  if (await exists(`${dir}/${HF_TOKENIZER_FILES.tokenizer}`)) {
    return E.right({
      spec: dir,
      how: `the ${HF_TOKENIZER_FILES.tokenizer} beside the weights in ${dir}`,
      guessed: false,
      where: dir,
    });
  }
  // GPT-2's BPE may ship as vocab.json + merges.txt alone; its 50,257 ids are often padded to a
  // multiple of 64 in the embedding.
  const bpeFiles = await exists(`${dir}/vocab.json`) && await exists(`${dir}/merges.txt`);
  if (bpeFiles && vocab >= 50257 && vocab <= 50304) {
    return E.right({
      spec: "gpt2",
      how: `guessed: BPE tokenizer files and a vocabulary of ${vocab} (GPT-2's 50,257 ids)`,
      guessed: true,
    });
  }
  if (vocab === 257) {
    return E.right({
      spec: "bytes",
      how: "guessed from the vocabulary size 257 (bytes + end-of-text)",
      guessed: true,
    });
  }
  return E.right(undefined);
}

/**
 * Where a tokeniser comes from, for messages: the built-in's name, or its `tokenizer.json`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenizerSource } from "./tokenizer_record.ts";
 * assert.equal(tokenizerSource("bytes"), "the built-in bytes tokenizer");
 * assert.equal(tokenizerSource("/m/tokenizer.json"), "/m/tokenizer.json");
 * assert.equal(tokenizerSource("/m"), "/m/tokenizer.json");
 * ```
 */
export function tokenizerSource(spec: TokenizerSpec): string {
  if (isBuiltinTokenizer(spec)) return `the built-in ${spec} tokenizer`;
  return spec.endsWith(".json")
    ? spec
    : `${spec.replace(/\/+$/, "")}/${HF_TOKENIZER_FILES.tokenizer}`;
}

/** The model a tokeniser must fit: its vocabulary and the file that gives it. */
export interface ModelVocab {
  /** Rows of the embedding (`vocab`, `vocab_size`). */
  readonly vocab: number;
  /** The file (and field) the vocabulary comes from, e.g. `final/config.json` or `run.yaml: model.vocab`. */
  readonly file: string;
}

/**
 * Refuses a tokeniser with more ids than the model has embedding rows (its ids would index
 * past the embedding). A model vocabulary larger than the tokeniser's is fine: embeddings are
 * often padded (GPT-2's 50,257 to 50,304).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { vocabProblem } from "./tokenizer_record.ts";
 * assert.equal(vocabProblem({ vocabSize: 257 }, "bytes", { vocab: 300, file: "c.json" }), undefined);
 * assert.match(vocabProblem({ vocabSize: 257 }, "bytes", { vocab: 200, file: "c.json" })!.message, /257/);
 * ```
 */
export function vocabProblem(
  tokenizer: Pick<Tokenizer, "vocabSize">,
  spec: TokenizerSpec,
  model: ModelVocab,
): ConfigInvalid | undefined {
  if (tokenizer.vocabSize <= model.vocab) return undefined;
  return configInvalid(
    model.file,
    `the model's vocabulary of ${model.vocab} is smaller than the tokenizer's ${tokenizer.vocabSize} ids (${
      tokenizerSource(spec)
    }): its ids would not fit the embedding; use the model's own tokenizer or a model with vocab ≥ ${tokenizer.vocabSize}`,
  );
}

/**
 * The vocabulary of an opened checkpoint and the file that gives it: its `config.json`
 * (`vocab_size` in Hugging Face's, `vocab` in ours), else the `--shape` file, else the run
 * around a `checkpoint/` directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelVocab } from "./tokenizer_record.ts";
 * const v = await modelVocab({ source: "/no/such", shape: { vocab: 257 } }, "step", "run.yaml");
 * assert.deepEqual(v, { vocab: 257, file: "run.yaml: model.vocab" });
 * ```
 */
export async function modelVocab(
  view: { readonly source: string; readonly shape: { readonly vocab: number } },
  format: CheckpointFormat,
  shapeFile?: string,
): Promise<ModelVocab> {
  const config = `${view.source}/${FINAL_FILES.config}`;
  const file = await exists(config)
    ? `${config}: ${format === "hf" ? "vocab_size" : "vocab"}`
    : shapeFile === undefined
    ? `${view.source}/../${RUN_DIR.pipeline}: model.vocab`
    : `${shapeFile}: model.vocab`;
  return { vocab: view.shape.vocab, file };
}

/** A checkpoint's tokeniser, loaded and checked against its vocabulary. */
export interface OpenedTokenizer extends FoundTokenizer {
  /** The tokeniser, loaded. */
  readonly tokenizer: Tokenizer;
}

/** Options of {@link openTokenizer}. */
export interface OpenTokenizerOptions {
  /** The model the tokeniser must fit. */
  readonly model: ModelVocab;
  /** The tokeniser to use whatever the checkpoint says (`--tokenizer`). */
  readonly given?: TokenizerSpec;
}

/**
 * Decides the tokeniser of the checkpoint in `dir` ({@link findTokenizer}, or `given`), loads it
 * and refuses one whose ids do not fit the model ({@link vocabProblem}). `undefined` when
 * nothing tells which tokeniser it is.
 *
 * @example
 * ```ts
 * import { openTokenizer } from "./tokenizer_record.ts";
 * const r = await openTokenizer("/no/such/dir", { model: { vocab: 257, file: "config.json" } });
 * console.assert(r._tag === "Right" && r.right?.tokenizer.vocabSize === 257);
 * ```
 */
export async function openTokenizer(
  dir: string,
  options: OpenTokenizerOptions,
): Promise<ext.Either<CkptError, OpenedTokenizer | undefined>> {
  const found: ext.Either<CkptError, FoundTokenizer | undefined> = options.given === undefined
    ? await findTokenizer(dir, options.model.vocab)
    : E.right({
      spec: options.given,
      how: "given with --tokenizer",
      guessed: false,
      where: "--tokenizer",
    });
  if (E.isLeft(found)) return found;
  if (found.right === undefined) return E.right(undefined);
  return await loadFoundTokenizer(found.right, options.model);
}

/**
 * Loads a found tokeniser and refuses one whose ids do not fit `model` ({@link vocabProblem}).
 *
 * @example
 * ```ts
 * import { loadFoundTokenizer } from "./tokenizer_record.ts";
 * const found = { spec: "bytes", how: "given", guessed: false };
 * const r = await loadFoundTokenizer(found, { vocab: 200, file: "config.json: vocab" });
 * console.assert(r._tag === "Left" && r.left.message.includes("257"));
 * ```
 */
export async function loadFoundTokenizer(
  found: FoundTokenizer,
  model: ModelVocab,
): Promise<ext.Either<CkptError, OpenedTokenizer>> {
  const loaded = await loadTokenizer(found.spec, found.where)();
  if (E.isLeft(loaded)) return loaded;
  const problem = vocabProblem(loaded.right, found.spec, model);
  return problem === undefined ? E.right({ ...found, tokenizer: loaded.right }) : E.left(problem);
}
