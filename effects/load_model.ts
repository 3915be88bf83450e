/**
 * A checkpoint loaded for inference: whatever `openCheckpoint` reads (a run's `final/` or
 * `checkpoint/`, an imported or exported Hugging Face directory, a base with a PEFT adapter),
 * its weights in the engine, and the tokeniser its ids belong to. Evaluation, generation and
 * fine-tuning all start here, so this is where a broken model is refused: every weight and
 * adapter is checked for NaN and infinity as it is read.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import { type ConfigInvalid, configInvalid, type FileError } from "../base/mod.ts";
import {
  type LazyTensor,
  type ModelView,
  modelVocab,
  openCheckpoint,
  openTokenizer,
  requireFinite,
} from "../checkpoint/mod.ts";
import type { Tokenizer, TokenizerSpec } from "../data/mod.ts";
import { disposeParams, importParams, type Model, type ParamRecord } from "../kernels/mod.ts";

/** A model in the engine and its tokeniser; `dispose` frees the weights. */
export interface LoadedModel {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  /**
   * Where the tokeniser was loaded from: `bytes`, `gpt2`, or the path of its `tokenizer.json`
   * (or of the folder holding it), for writing it beside weights trained from this model.
   */
  readonly tokenizerSpec: TokenizerSpec;
  /** How the tokeniser was determined (recorded, from the run, guessed, or given). */
  readonly tokenizerHow: string;
  /** The checkpoint directory, for messages and reports. */
  readonly source: string;
  /** `step` (ours) or `hf`. */
  readonly format: "step" | "hf";
  dispose(): void;
}

/** Options of {@link loadModel}. */
export interface LoadOptions {
  /** The tokeniser to use whatever the checkpoint says (`--tokenizer`): a name or a path. */
  readonly tokenizer?: TokenizerSpec;
  /** A shape file for a bare `checkpoint/` directory (`--shape`). */
  readonly shapeFile?: string;
}

/** What a refused weight means here: nothing computed from the model would mean anything. */
const NOT_USED = "a model with a non-finite weight is broken (diverged or damaged) and is not used";

/** The weights and adapters, each checked for non-finite values as it is read. */
async function records(
  opened: ModelView,
): Promise<E.Either<FileError | ConfigInvalid, ParamRecord[]>> {
  const view = requireFinite(opened, NOT_USED);
  const all: LazyTensor[] = [...view.tensors, ...(view.adapters?.tensors ?? [])];
  const out: ParamRecord[] = [];
  for (const t of all) {
    const v = await t.load()();
    if (E.isLeft(v)) return v;
    out.push({ name: t.name, shape: t.shape, data: v.right });
  }
  return E.right(out);
}

/**
 * Opens `path`, decides its tokeniser and loads its weights (adapters unmerged, with their
 * scale) into the active backend. A checkpoint that does not say which tokeniser it was trained
 * with, and whose files do not tell, is an error asking for `--tokenizer`; a tokeniser with more
 * ids than the model's vocabulary is refused before any weight is read, naming both numbers
 * and both files; a weight holding a NaN or an infinity is a `ContentInvalid` naming the tensor
 * and the element.
 *
 * @example
 * ```ts
 * import { loadModel } from "./load_model.ts";
 * const r = await loadModel("/no/such/checkpoint")();
 * console.assert(r._tag === "Left");
 * ```
 */
export function loadModel(
  path: string,
  options: LoadOptions = {},
): TE.TaskEither<FileError | ConfigInvalid, LoadedModel> {
  return async () => {
    const opened = await openCheckpoint(
      path,
      options.shapeFile === undefined ? {} : { shapeFile: options.shapeFile },
    )();
    if (E.isLeft(opened)) return opened;
    const { view, format } = opened.right;
    try {
      const shape = view.shape;
      const tok = await openTokenizer(view.source, {
        model: await modelVocab(view, format, options.shapeFile),
        ...(options.tokenizer === undefined ? {} : { given: options.tokenizer }),
      });
      if (E.isLeft(tok)) return tok;
      if (tok.right === undefined) {
        return E.left(configInvalid(
          view.source,
          `cannot tell which tokenizer this checkpoint was trained with (no step-tokenizer.json or tokenizer.json, no run around it, vocabulary ${shape.vocab}): pass --tokenizer bytes, gpt2 or the path of its tokenizer.json`,
        ));
      }
      const { tokenizer, spec, how } = tok.right;
      const weights = await records(view);
      if (E.isLeft(weights)) return weights;
      const params = importParams(weights.right);
      return E.right({
        model: { shape, params, loraScale: view.adapters?.scale ?? 1 },
        tokenizer,
        tokenizerSpec: spec,
        tokenizerHow: how,
        source: view.source,
        format,
        dispose: () => disposeParams(params),
      });
    } finally {
      view.close();
    }
  };
}
