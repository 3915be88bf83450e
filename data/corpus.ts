/**
 * A training corpus: sources → documents → tokens (cached) → a train and a
 * validation stream.
 *
 * The validation split is one of:
 * - `{ fraction, by: "documents" }`: a seeded random `round(fraction × n)` of
 *   the documents is held out whole, so no document is in both splits;
 * - `{ fraction, by: "tail" }`: the last `fraction` of the token stream (for a
 *   corpus of one or a few documents, e.g. tinyshakespeare);
 * - `{ fraction, by: "auto" }` (the default `by`): by documents when that
 *   holds out at least two documents, else by tail;
 * - `{ sources: [...] }`: a separate validation source (e.g. corpus-en's
 *   SOURCE.md names held-out authors); all of `sources` is training data.
 *
 * With no `validation` the default is `{ fraction: 0.1, by: "auto" }`.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  type ConfigInvalid,
  configInvalid,
  deriveSeed,
  type ExactObjectC,
  type ext,
  type FileError,
  permutation,
} from "../base/mod.ts";
import { builtinCorpus } from "./builtin_corpus.ts";
import { DataSource, type ResolvedBuiltin, type ResolvedUnit, resolveSources } from "./sources.ts";
import {
  type LoadedTokens,
  loadTokenized,
  type TokenArray,
  type TokenizedDocs,
} from "./token_cache.ts";
import { type Tokenizer, tokenizerFor, TokenizerName } from "./tokenizer.ts";

/** How to split off validation data by fraction. */
export const SplitBy: ext.KeyofC<{ documents: null; tail: null; auto: null }> = t.keyof({
  documents: null,
  tail: null,
  auto: null,
});
/** See {@link SplitBy}. */
export type SplitBy = ext.TypeOf<typeof SplitBy>;

/** The field a held-out validation fraction must give. */
export const FRACTION_SPLIT_REQUIRED = {
  /** Share of the data held out (0.1: a tenth). */
  fraction: t.number,
};
/** The field a held-out validation fraction may give. */
export const FRACTION_SPLIT_OPTIONAL = {
  /** Whether whole documents or the stream's tail are held out (default `auto`: see above). */
  by: SplitBy,
};
/** The field of validation data read from its own sources. */
export const SOURCES_SPLIT_FIELDS = {
  /** Where the validation documents come from, as training sources are written. */
  sources: t.array(DataSource),
};
/** Validation data: a held-out fraction, or separate sources. */
export const ValidationSpec: ext.UnionC<[
  ExactObjectC<typeof FRACTION_SPLIT_REQUIRED, typeof FRACTION_SPLIT_OPTIONAL>,
  ext.ExactC<ext.TypeC<typeof SOURCES_SPLIT_FIELDS>>,
]> = t.union([
  t.exact(t.intersection([t.type(FRACTION_SPLIT_REQUIRED), t.partial(FRACTION_SPLIT_OPTIONAL)])),
  t.exact(t.type(SOURCES_SPLIT_FIELDS)),
]);
/** See {@link ValidationSpec}. */
export type ValidationSpec = ext.TypeOf<typeof ValidationSpec>;

/** The fields the data section of a run config must give. */
export const CORPUS_CONFIG_REQUIRED = {
  /** Where the training documents come from. */
  sources: t.array(DataSource),
  /** How text becomes tokens. */
  tokenizer: TokenizerName,
};
/** The fields the data section of a run config may give. */
export const CORPUS_CONFIG_OPTIONAL = {
  /** How validation data is made (default {@link DEFAULT_VALIDATION}). */
  validation: ValidationSpec,
  /** Seed of the held-out documents' choice (default 0). */
  seed: t.number,
};
/** The data section of a run config. */
export const CorpusConfig: ExactObjectC<
  typeof CORPUS_CONFIG_REQUIRED,
  typeof CORPUS_CONFIG_OPTIONAL
> = t.exact(t.intersection([t.type(CORPUS_CONFIG_REQUIRED), t.partial(CORPUS_CONFIG_OPTIONAL)]));
/** See {@link CorpusConfig}. */
export type CorpusConfig = ext.TypeOf<typeof CorpusConfig>;

/** The default validation split. */
export const DEFAULT_VALIDATION: ValidationSpec = { fraction: 0.1, by: "auto" };

/** Token streams ready for batching. */
export interface Corpus {
  /** The tokeniser the streams were made with (the config's, or the one injected). */
  readonly tokenizer: Tokenizer;
  /** Training documents joined, each followed by end-of-text. */
  readonly train: TokenArray;
  /** Validation tokens (documents joined likewise, or the tail of the stream). */
  readonly validation: TokenArray;
  /** Documents in the training stream (for a tail split all of them, the last one cut short). */
  readonly trainDocuments: number;
  /** Documents held out whole, or read from the validation sources; 0 for a tail split. */
  readonly validationDocuments: number;
  /** How the split was made. */
  readonly split: "documents" | "tail" | "sources";
  /** For a document split: indices (in source order) of the held-out documents. */
  readonly validationDocIndices: readonly number[];
  /** True when every token stream came from the cache. */
  readonly fromCache: boolean;
  /**
   * Only when every source is the built-in corpus: the loss floor (nats/token) of each split,
   * i.e. the exact NLL of its documents under the generating grammar over its token count.
   * For a tail split (which cuts a document) both are the whole stream's floor.
   */
  readonly floorNats?: { readonly train: number; readonly validation: number };
}

/** The conventional token cache directory, relative to the repository root (git-ignored). */
export const DEFAULT_TOKEN_CACHE_DIR = ".cache/tokens";

/** Where the corpus lives and how it is loaded. */
export interface LoadCorpusOptions {
  /** Relative source paths start here (default: the current directory). */
  readonly baseDir?: string;
  /** Token cache directory, e.g. {@link DEFAULT_TOKEN_CACHE_DIR}; `undefined` disables caching. */
  readonly cacheDir?: string;
  /** Use this tokeniser instead of the one the config names (tests inject one). */
  readonly tokenizer?: Tokenizer;
}

/** The files behind resolved sources, quoted, for error messages. */
function namesOf(units: readonly ResolvedUnit[]): string {
  const names = units.map((u) => ("path" in u ? `"${u.path}"` : "the built-in corpus"));
  return names.length === 0
    ? "the sources"
    : names.slice(0, 5).join(", ") + (names.length > 5 ? ", …" : "");
}

/** The result of splitting one tokenised stream. */
export interface Split {
  /** The training tokens. */
  readonly train: TokenArray;
  /** The held-out tokens. */
  readonly validation: TokenArray;
  /** How the split was made: whole documents held out, or the stream's tail. */
  readonly by: "documents" | "tail";
  /**
   * For a document split, indices of the held-out documents in source order; empty for a tail
   * split.
   */
  readonly validationDocIndices: readonly number[];
}

function sum(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s;
}

/** Per-document NLL when every unit is the built-in corpus (regenerated: cheap), else undefined. */
function builtinNll(units: readonly ResolvedUnit[]): number[] | undefined {
  if (!units.every((u) => u.kind === "builtin")) return undefined;
  return units.flatMap((u) => {
    const b = u as ResolvedBuiltin;
    const c = builtinCorpus({
      seed: b.seed,
      ...(b.documents === undefined ? {} : { documents: b.documents }),
      ...(b.bytes === undefined ? {} : { bytes: b.bytes }),
    });
    return Array.from(c.docNllNats);
  });
}

function splitFloors(
  nll: readonly number[],
  docs: TokenizedDocs,
  split: Split,
): { train: number; validation: number } {
  if (split.by === "tail") {
    const whole = sum(nll) / docs.tokens.length;
    return { train: whole, validation: whole };
  }
  const validNll = sum(split.validationDocIndices.map((i) => nll[i]!));
  const trainNll = sum(nll) - validNll;
  return { train: trainNll / split.train.length, validation: validNll / split.validation.length };
}

function gather(docs: TokenizedDocs, indices: readonly number[]): TokenArray {
  const lengths = indices.map((i) => docs.docEnds[i]! - (i === 0 ? 0 : docs.docEnds[i - 1]!));
  const out = docs.tokens instanceof Uint16Array
    ? new Uint16Array(lengths.reduce((a, b) => a + b, 0))
    : new Int32Array(lengths.reduce((a, b) => a + b, 0));
  let at = 0;
  indices.forEach((i, k) => {
    const start = i === 0 ? 0 : docs.docEnds[i - 1]!;
    out.set(docs.tokens.subarray(start, start + lengths[k]!), at);
    at += lengths[k]!;
  });
  return out;
}

/**
 * Splits tokenised documents into train and validation by a held-out fraction.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitByFraction } from "./corpus.ts";
 * const docs = { tokens: new Uint16Array([1, 0, 2, 0, 3, 0, 4, 0]), docEnds: new Uint32Array([2, 4, 6, 8]) };
 * const s = splitByFraction(docs, { fraction: 0.5, by: "documents" }, 1);
 * assert(s._tag === "Right" && s.right.validation.length === 4);
 * ```
 */
export function splitByFraction(
  docs: TokenizedDocs,
  spec: { readonly fraction: number; readonly by?: SplitBy },
  seed: number,
): ext.Either<ConfigInvalid, Split> {
  const { fraction } = spec;
  if (!(fraction >= 0 && fraction < 1)) {
    return E.left(configInvalid("data.validation.fraction", `must be in [0, 1), got ${fraction}`));
  }
  const n = docs.docEnds.length;
  const held = Math.round(fraction * n);
  const by = spec.by === undefined || spec.by === "auto"
    ? (held >= 2 && held < n ? "documents" : "tail")
    : spec.by;
  if (by === "tail") {
    const cut = docs.tokens.length - Math.round(fraction * docs.tokens.length);
    return E.right({
      train: docs.tokens.subarray(0, cut),
      validation: docs.tokens.subarray(cut),
      by,
      validationDocIndices: [],
    });
  }
  if (fraction > 0 && (held < 1 || held >= n)) {
    return E.left(
      configInvalid(
        "data.validation",
        `holding out ${fraction} of ${n} documents leaves ${held} for validation and ${
          n - held
        } for training`,
      ),
    );
  }
  // A stream id distinct from the batch shuffles', so changing one never moves the other.
  const order = permutation(n, deriveSeed(seed, 0x5ba1));
  const isHeld = new Uint8Array(n);
  for (let k = 0; k < held; k++) isHeld[order[k]!] = 1;
  const trainIdx: number[] = [];
  const validIdx: number[] = [];
  for (let i = 0; i < n; i++) (isHeld[i] ? validIdx : trainIdx).push(i);
  return E.right({
    train: gather(docs, trainIdx),
    validation: gather(docs, validIdx),
    by,
    validationDocIndices: validIdx,
  });
}

/**
 * Loads a corpus as a config describes it: resolves the sources, tokenises (or reads the
 * token cache) and splits off validation data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadCorpus } from "./corpus.ts";
 * const r = await loadCorpus({ sources: [{ builtin: { seed: 1, documents: 40 } }], tokenizer: "bytes" })();
 * assert(r._tag === "Right" && r.right.split === "documents" && r.right.validationDocuments === 4);
 * ```
 */
export function loadCorpus(
  config: CorpusConfig,
  options: LoadCorpusOptions = {},
): ext.TaskEither<FileError | ConfigInvalid, Corpus> {
  return async () => {
    const baseDir = options.baseDir ?? Deno.cwd();
    const cache = options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir };
    let tokenizer: Tokenizer;
    if (options.tokenizer === undefined) {
      const made = await tokenizerFor(config.tokenizer)();
      if (E.isLeft(made)) return made;
      tokenizer = made.right;
    } else tokenizer = options.tokenizer;
    const load = (sources: readonly DataSource[]) =>
      TE.flatMap(
        resolveSources(sources, baseDir),
        (units) =>
          TE.map((loaded: LoadedTokens) => ({ ...loaded, units }))(
            loadTokenized(units, tokenizer, cache),
          ),
      );
    const main = await load(config.sources)();
    if (E.isLeft(main)) return main;
    if (main.right.docs.docEnds.length === 0) {
      return E.left(
        configInvalid("data.sources", `${namesOf(main.right.units)} hold no non-empty documents`),
      );
    }
    const spec = config.validation ?? DEFAULT_VALIDATION;
    if ("sources" in spec) {
      const valid = await load(spec.sources)();
      if (E.isLeft(valid)) return valid;
      if (valid.right.docs.docEnds.length === 0) {
        return E.left(
          configInvalid(
            "data.validation.sources",
            `${namesOf(valid.right.units)} hold no non-empty documents`,
          ),
        );
      }
      const trainNll = builtinNll(main.right.units);
      const validNll = builtinNll(valid.right.units);
      return E.right({
        tokenizer,
        train: main.right.docs.tokens,
        validation: valid.right.docs.tokens,
        trainDocuments: main.right.docs.docEnds.length,
        validationDocuments: valid.right.docs.docEnds.length,
        split: "sources",
        validationDocIndices: [],
        fromCache: main.right.fromCache && valid.right.fromCache,
        ...(trainNll === undefined || validNll === undefined ? {} : {
          floorNats: {
            train: sum(trainNll) / main.right.docs.tokens.length,
            validation: sum(validNll) / valid.right.docs.tokens.length,
          },
        }),
      });
    }
    const split = splitByFraction(main.right.docs, spec, config.seed ?? 0);
    if (E.isLeft(split)) return split;
    const held = split.right.validationDocIndices.length;
    const nll = builtinNll(main.right.units);
    return E.right({
      tokenizer,
      train: split.right.train,
      validation: split.right.validation,
      trainDocuments: split.right.by === "documents"
        ? main.right.docs.docEnds.length - held
        : main.right.docs.docEnds.length,
      validationDocuments: held,
      split: split.right.by,
      validationDocIndices: split.right.validationDocIndices,
      fromCache: main.right.fromCache,
      ...(nll === undefined ? {} : { floorNats: splitFloors(nll, main.right.docs, split.right) }),
    });
  };
}
