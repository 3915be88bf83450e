/**
 * The tokeniser of a pre-training run: `data.tokenizer` loaded and checked against the model's
 * vocabulary before any data is read, and, for a resumed run, the copy the run wrote beside its
 * checkpoint, so a run resumes from any working directory (and after its tokenizer file moved)
 * and never with a tokeniser other than the one it started with.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid, type FileError } from "../base/mod.ts";
import {
  exists,
  findTokenizer,
  isBuiltinTokenizer,
  loadFoundTokenizer,
  type ModelVocab,
  RUN_DIR,
  TOKENIZER_FILE,
  type TokenizerFiles,
  tokenizerFiles,
  tokenizerSource,
} from "../checkpoint/mod.ts";
import type { Tokenizer, TokenizerSpec } from "../data/mod.ts";

/** A run's tokeniser and the files its checkpoints carry. */
export interface RunTokenizer {
  readonly tokenizer: Tokenizer;
  /** Written beside the weights of every checkpoint and of `final/`. */
  readonly files: TokenizerFiles;
  /** Where it was loaded from, for the run's first lines. */
  readonly how: string;
  /**
   * What it was loaded from (`data.tokenizer`, or the run's copy: `DIR/checkpoint`), for whatever
   * loads it again (e.g. tokenising workers).
   */
  readonly spec: TokenizerSpec;
}

/** Options of {@link runTokenizer}. */
export interface RunTokenizerOptions {
  /** The run directory. */
  readonly out: string;
  /** Whether the run continues from `out`'s checkpoint. */
  readonly resume: boolean;
  /** The model's vocabulary and where it is written (`FILE: model.vocab`). */
  readonly model: ModelVocab;
  /** How messages name the setting (default `data.tokenizer`; e.g. `run.yaml: data.tokenizer`). */
  readonly where?: string;
}

/**
 * Loads `spec` (`data.tokenizer`: a relative path is taken from the working directory, as data
 * sources are) and refuses one with more ids than `model.vocab`. A resumed run whose checkpoint
 * carries its tokeniser uses that copy: `spec` must name the same tokeniser when it can be read
 * from here (a different one is an error naming both), and when it cannot (another working
 * directory, a moved file) the copy is used and said to be.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runTokenizer } from "./run_tokenizer.ts";
 * const model = { vocab: 200, file: "run.yaml: model.vocab" };
 * const r = await runTokenizer("bytes", { out: "/no/such/run", resume: false, model });
 * assert(r._tag === "Left" && r.left.message.includes("257"));
 * ```
 */
export async function runTokenizer(
  spec: TokenizerSpec,
  options: RunTokenizerOptions,
): Promise<E.Either<FileError | ConfigInvalid, RunTokenizer>> {
  const ckpt = `${options.out}/${RUN_DIR.checkpoint}`;
  const fromSpec = async (how: string) => {
    const where = options.where ?? "data.tokenizer";
    const given = await loadFoundTokenizer({ spec, how, guessed: false, where }, options.model);
    return E.map((g: { readonly tokenizer: Tokenizer }) => ({
      tokenizer: g.tokenizer,
      files: tokenizerFiles(spec, g.tokenizer),
      how,
      spec,
    }))(given);
  };
  const named = `data.tokenizer: ${tokenizerSource(spec)}`;
  if (!options.resume || !await exists(`${ckpt}/${TOKENIZER_FILE}`)) return await fromSpec(named);
  const found = await findTokenizer(ckpt, options.model.vocab);
  if (E.isLeft(found)) return found;
  if (found.right === undefined) return await fromSpec(named);
  const copy = await loadFoundTokenizer(found.right, options.model);
  if (E.isLeft(copy)) return copy;
  const c = copy.right;
  const files = tokenizerFiles(c.spec, c.tokenizer);
  if (!isBuiltinTokenizer(spec) && !await exists(spec)) {
    return E.right({
      tokenizer: c.tokenizer,
      files,
      how: `the run's copy in ${ckpt} (data.tokenizer ${spec} cannot be found from here)`,
      spec: c.spec,
    });
  }
  const given = await fromSpec(named);
  if (E.isLeft(given)) return given;
  // The records hold the built-in's name or the SHA-256 of tokenizer.json: equal records, same ids.
  return given.right.files[TOKENIZER_FILE] === files[TOKENIZER_FILE] ? given : E.left(configInvalid(
    options.where ?? "data.tokenizer",
    `${tokenizerSource(spec)} is not the tokenizer the run was trained with (${c.how}): ` +
      "resuming with other ids would corrupt the run; restore data.tokenizer or start a new run",
  ));
}
