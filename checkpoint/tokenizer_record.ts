/**
 * Which tokeniser a checkpoint's token ids belong to, so evaluation and generation encode text
 * as training did. A run writes `step-tokenizer.json` into `final/` and `checkpoint/` (a name
 * Hugging Face's loaders do not read, so an exported directory stays a valid HF model); `ckpt`
 * carries it from input to output. For a directory without one, the answer is looked for in
 * the run around it (`../pipeline.yaml`), then guessed from the files beside the weights, and
 * every answer says how it was found.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { configInvalid, contentInvalid, describeUnknown, type ext } from "../base/mod.ts";
import { TOKENIZER_VOCAB, TokenizerName } from "../data/mod.ts";
import { exists, readJson } from "./_files.ts";
import type { CkptError } from "./model_view.ts";
import { RUN_DIR } from "./run_layout.ts";

/** The sidecar file that records a checkpoint's tokeniser. */
export const TOKENIZER_FILE = "step-tokenizer.json";

/** The text of {@link TOKENIZER_FILE}. */
export function tokenizerRecordText(name: TokenizerName): string {
  return JSON.stringify({ tokenizer: name }, null, 1) + "\n";
}

/** A tokeniser and how it was determined (for the user: a guess is said to be one). */
export interface FoundTokenizer {
  /** The tokeniser the model was trained with. */
  readonly name: TokenizerName;
  /** E.g. `recorded in final/step-tokenizer.json`, or `guessed from the vocabulary size 257`. */
  readonly how: string;
  /** Inferred from the files or the vocabulary size, not recorded by whoever wrote them. */
  readonly guessed: boolean;
}

/** The `tokenizer` field of a parsed record, checked. */
function recordedName(json: unknown, where: string): ext.Either<CkptError, TokenizerName> {
  const name = typeof json === "object" && json !== null
    ? (json as { tokenizer?: unknown }).tokenizer
    : undefined;
  return TokenizerName.is(name)
    ? E.right(name)
    : E.left(configInvalid(where, `expected "bytes" or "gpt2", got ${JSON.stringify(name)}`));
}

async function readRecord(path: string): Promise<ext.Either<CkptError, TokenizerName>> {
  const json = await readJson(path)();
  return E.isLeft(json) ? json : recordedName(json.right, `${path}: tokenizer`);
}

/** `data.tokenizer` of a run's pipeline.yaml (a run writes it with its defaults applied). */
async function fromPipeline(
  path: string,
): Promise<ext.Either<CkptError, TokenizerName | undefined>> {
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
  return recordedName(data, `${path}: data.tokenizer`);
}

/**
 * The tokeniser of the checkpoint in `dir` whose vocabulary is `vocab`, or `undefined` when
 * nothing tells (the caller asks the user to say, e.g. with `--tokenizer`). A recorded or
 * guessed tokeniser larger than the vocabulary is an error: its ids would not fit.
 *
 * @example
 * ```ts
 * import { findTokenizer } from "./tokenizer_record.ts";
 * const r = await findTokenizer("/no/such/dir", 257);
 * console.assert(r._tag === "Right" && r.right?.name === "bytes");
 * ```
 */
export async function findTokenizer(
  dir: string,
  vocab: number,
): Promise<ext.Either<CkptError, FoundTokenizer | undefined>> {
  const found = await search(dir, vocab);
  if (E.isLeft(found) || found.right === undefined) return found;
  const size = TOKENIZER_VOCAB[found.right.name];
  return size <= vocab ? found : E.left(configInvalid(
    dir,
    `the ${found.right.name} tokenizer (${found.right.how}) has ${size} tokens, more than the model's vocabulary of ${vocab}`,
  ));
}

async function search(
  dir: string,
  vocab: number,
): Promise<ext.Either<CkptError, FoundTokenizer | undefined>> {
  const own = `${dir}/${TOKENIZER_FILE}`;
  if (await exists(own)) {
    return E.map((name: TokenizerName) => ({ name, how: `recorded in ${own}`, guessed: false }))(
      await readRecord(own),
    );
  }
  const pipeline = `${dir}/../${RUN_DIR.pipeline}`;
  if (await exists(pipeline)) {
    const name = await fromPipeline(pipeline);
    if (E.isLeft(name)) return name;
    if (name.right !== undefined) {
      return E.right({
        name: name.right,
        how: `the run's data.tokenizer in ${pipeline}`,
        guessed: false,
      });
    }
  }
  // GPT-2's BPE ships as vocab.json + merges.txt (or one tokenizer.json); its 50,257 ids are
  // often padded to a multiple of 64 in the embedding.
  const bpeFiles = (await exists(`${dir}/vocab.json`) && await exists(`${dir}/merges.txt`)) ||
    await exists(`${dir}/tokenizer.json`);
  if (bpeFiles && vocab >= 50257 && vocab <= 50304) {
    return E.right({
      name: "gpt2",
      how: `guessed: BPE tokenizer files and a vocabulary of ${vocab} (GPT-2's 50,257 ids)`,
      guessed: true,
    });
  }
  if (vocab === 257) {
    return E.right({
      name: "bytes",
      how: "guessed from the vocabulary size 257 (bytes + end-of-text)",
      guessed: true,
    });
  }
  return E.right(undefined);
}
