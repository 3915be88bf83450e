/**
 * A training corpus: sources → documents → tokens (cached as token shards) →
 * a train and a validation {@link TokenStream}. The splits are views of the
 * tokenised documents (runs of them, in source order), never copies, so a
 * corpus on disk is read window by window and never held whole.
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
 * Mixing weights: when any training source carries a `weight`, each source
 * is a group of its own (its own tokens, its own held-out documents by the
 * same rule, its own epochs), and {@link Corpus.groups} lists them for the
 * batch mixture (`mixture.ts`); a source without one weighs 1.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  type ExactObjectC,
  type ext,
  type FileError,
} from "../base/mod.ts";
import { builtinCorpus } from "./builtin_corpus.ts";
import { DataSource, type ResolvedBuiltin, type ResolvedUnit, resolveSources } from "./sources.ts";
import { type DocumentStream, type Split, SplitBy, splitByFraction } from "./split.ts";
import { tokenizeDocuments } from "./token_cache.ts";
import { type PrepareProgress, prepareShards } from "./shard_build.ts";
import { openShardSet } from "./shard_set.ts";
import { readDocuments } from "./readers.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
import {
  concatStreams,
  memoryStream,
  shardStream,
  sliceStream,
  type TokenStream,
} from "./token_stream.ts";

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
  /** How text becomes tokens: `bytes`, `gpt2`, or a path to a `tokenizer.json` or its folder. */
  tokenizer: t.string,
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

/** One weighted source of a corpus: its own split, for the batch mixture. */
export interface CorpusGroup {
  /** The source's weight (1 when the config gives none). */
  readonly weight: number;
  /** The source's training documents. */
  readonly train: TokenStream;
  /** The source's held-out documents (or its tail). */
  readonly validation: TokenStream;
  /** Documents in `train`. */
  readonly trainDocuments: number;
  /** Documents in `validation` (0 for a tail split). */
  readonly validationDocuments: number;
}

/** Token streams ready for batching. */
export interface Corpus {
  /** The tokeniser the streams were made with (the config's, or the one injected). */
  readonly tokenizer: Tokenizer;
  /** Training documents joined, each followed by end-of-text (with groups: theirs, in order). */
  readonly train: TokenStream;
  /** Validation tokens (documents joined likewise, or the tail of the stream). */
  readonly validation: TokenStream;
  /** Documents in the training stream (for a tail split all of them, the last one cut short). */
  readonly trainDocuments: number;
  /** Documents held out whole, or read from the validation sources; 0 for a tail split. */
  readonly validationDocuments: number;
  /** How the split was made. */
  readonly split: "documents" | "tail" | "sources";
  /**
   * For a document split of one group: indices (in source order) of the held-out documents;
   * empty otherwise.
   */
  readonly validationDocIndices: readonly number[];
  /** True when every token stream came from the cache. */
  readonly fromCache: boolean;
  /**
   * Only when every source is the built-in corpus: the loss floor (nats/token) of each split,
   * i.e. the exact NLL of its documents under the generating grammar over its token count.
   * For a tail split (which cuts a document) both are the whole stream's floor.
   */
  readonly floorNats?: { readonly train: number; readonly validation: number };
  /**
   * When training sources carry weights: each source's split and weight, in config order
   * (`train` and `validation` are then their streams laid end to end).
   */
  readonly groups?: readonly CorpusGroup[];
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
  /** Workers tokenising a source into shards (default: `machineDefaultWorkers()`). */
  readonly workers?: number;
  /** Called while a shard set is being built (see `shard_build.ts`). */
  readonly progress?: (p: PrepareProgress) => void;
}

/** The files behind resolved sources, quoted, for error messages. */
function namesOf(units: readonly ResolvedUnit[]): string {
  const names = units.map((u) => ("path" in u ? `"${u.path}"` : "the built-in corpus"));
  return names.length === 0
    ? "the sources"
    : names.slice(0, 5).join(", ") + (names.length > 5 ? ", …" : "");
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
  docs: DocumentStream,
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

/** Tokenised documents of some units, and whether they came from the cache. */
interface LoadedDocuments {
  readonly docs: DocumentStream;
  readonly fromCache: boolean;
  readonly units: readonly ResolvedUnit[];
}

/**
 * The documents of `sources`: tokenised in memory without a cache directory, else prepared as a
 * token shard set in it (or found there) and read from the shards. A set that fails
 * {@link openShardSet}'s checks is damaged: it is removed and built once more.
 */
function loadDocuments(
  sources: readonly DataSource[],
  tokenizer: Tokenizer,
  where: string,
  options: LoadCorpusOptions,
): ext.TaskEither<FileError | ConfigInvalid, LoadedDocuments> {
  return async () => {
    const units = await resolveSources(sources, options.baseDir ?? Deno.cwd())();
    if (E.isLeft(units)) return units;
    let loaded: LoadedDocuments;
    if (options.cacheDir === undefined) {
      const texts: string[] = [];
      for (const u of units.right) {
        const docs = await readDocuments(u)();
        if (E.isLeft(docs)) return docs;
        texts.push(...docs.right);
      }
      const docs = tokenizeDocuments(texts, tokenizer);
      loaded = {
        docs: { tokens: memoryStream(docs.tokens), docEnds: docs.docEnds },
        fromCache: false,
        units: units.right,
      };
    } else {
      const prepare = () =>
        prepareShards(units.right, tokenizer, {
          cacheDir: options.cacheDir!,
          field: where,
          ...(options.workers === undefined ? {} : { workers: options.workers }),
          ...(options.progress === undefined ? {} : { progress: options.progress }),
        })();
      let built = await prepare();
      if (E.isLeft(built)) return built;
      let set = await openShardSet(built.right.dir)();
      if (E.isLeft(set) && set.left._tag === "ContentInvalid") {
        await Deno.remove(built.right.dir, { recursive: true }).catch(() => undefined);
        built = await prepare();
        if (E.isLeft(built)) return built;
        set = await openShardSet(built.right.dir)();
      }
      if (E.isLeft(set)) return set;
      loaded = {
        docs: { tokens: shardStream(set.right), docEnds: set.right.docEnds },
        fromCache: built.right.fromCache,
        units: units.right,
      };
    }
    if (loaded.docs.docEnds.length === 0) {
      return E.left(configInvalid(where, `${namesOf(loaded.units)} hold no non-empty documents`));
    }
    return E.right(loaded);
  };
}

/**
 * How a config's training sources are tokenised: one shard set for all of them, or, when any
 * carries a `weight` (and there are several), one per source, each its own stream in the
 * mixture. `deno task data prepare` prepares the same sets a run reads.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sourceGroups } from "./corpus.ts";
 * assert(sourceGroups(["a.txt", "b.txt"]).length === 1);
 * assert(sourceGroups([{ path: "a.txt", weight: 2 }, "b.txt"]).length === 2);
 * ```
 */
export function sourceGroups(sources: readonly DataSource[]): DataSource[][] {
  const weighted = sources.length > 1 && sources.some((s) => weightOf(s) !== undefined);
  return weighted ? sources.map((s) => [s]) : [sources.slice()];
}

/** The weight a source carries, when it carries one. */
function weightOf(source: DataSource): number | undefined {
  return typeof source === "string" ? undefined : source.weight;
}

/** NLL sums and token counts of one group's splits (built-in sources only). */
interface GroupNll {
  readonly train: number;
  readonly trainTokens: number;
  readonly validation: number;
  readonly validationTokens: number;
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
    let tokenizer: Tokenizer;
    if (options.tokenizer === undefined) {
      const made = await loadTokenizer(config.tokenizer)();
      if (E.isLeft(made)) return made;
      tokenizer = made.right;
    } else tokenizer = options.tokenizer;
    const load = (sources: readonly DataSource[], where: string) =>
      loadDocuments(sources, tokenizer, where, options);
    const spec = config.validation ?? DEFAULT_VALIDATION;
    if ("sources" in spec) {
      const weighted = spec.sources.findIndex((s) => weightOf(s) !== undefined);
      if (weighted >= 0) {
        return E.left(
          configInvalid(
            `data.validation.sources[${weighted}].weight`,
            "weights mix training sources; validation sources are all evaluated",
          ),
        );
      }
    }
    const weights = config.sources.map(weightOf);
    const bad = weights.findIndex((w) => w !== undefined && !(Number.isFinite(w) && w > 0));
    if (bad >= 0) {
      return E.left(
        configInvalid(
          `data.sources[${bad}].weight`,
          `must be a positive number, got ${weights[bad]}`,
        ),
      );
    }
    if (sourceGroups(config.sources).length > 1) {
      return loadGroups(config, spec, weights.map((w) => w ?? 1), tokenizer, load);
    }
    const main = await load(config.sources, "data.sources")();
    if (E.isLeft(main)) return main;
    const docs = main.right.docs;
    if ("sources" in spec) {
      const valid = await load(spec.sources, "data.validation.sources")();
      if (E.isLeft(valid)) return valid;
      const trainNll = builtinNll(main.right.units);
      const validNll = builtinNll(valid.right.units);
      return E.right({
        tokenizer,
        train: docs.tokens,
        validation: valid.right.docs.tokens,
        trainDocuments: docs.docEnds.length,
        validationDocuments: valid.right.docs.docEnds.length,
        split: "sources",
        validationDocIndices: [],
        fromCache: main.right.fromCache && valid.right.fromCache,
        ...(trainNll === undefined || validNll === undefined ? {} : {
          floorNats: {
            train: sum(trainNll) / docs.tokens.length,
            validation: sum(validNll) / valid.right.docs.tokens.length,
          },
        }),
      });
    }
    const split = splitByFraction(docs, spec, config.seed ?? 0);
    if (E.isLeft(split)) return split;
    const held = split.right.validationDocIndices.length;
    const nll = builtinNll(main.right.units);
    return E.right({
      tokenizer,
      train: split.right.train,
      validation: split.right.validation,
      trainDocuments: split.right.by === "documents"
        ? docs.docEnds.length - held
        : docs.docEnds.length,
      validationDocuments: held,
      split: split.right.by,
      validationDocIndices: split.right.validationDocIndices,
      fromCache: main.right.fromCache,
      ...(nll === undefined ? {} : { floorNats: splitFloors(nll, docs, split.right) }),
    });
  };
}

/** A corpus of weighted sources: each source loaded and split on its own (see the module doc). */
async function loadGroups(
  config: CorpusConfig,
  spec: ValidationSpec,
  weights: readonly number[],
  tokenizer: Tokenizer,
  load: (
    sources: readonly DataSource[],
    where: string,
  ) => ext.TaskEither<FileError | ConfigInvalid, LoadedDocuments>,
): Promise<ext.Either<FileError | ConfigInvalid, Corpus>> {
  const groups: CorpusGroup[] = [];
  const nlls: (GroupNll | undefined)[] = [];
  let fromCache = true;
  let byDocuments = false;
  for (const [i, source] of config.sources.entries()) {
    const weight = weights[i]!;
    const loaded = await load([source], `data.sources[${i}]`)();
    if (E.isLeft(loaded)) return loaded;
    const docs = loaded.right.docs;
    fromCache &&= loaded.right.fromCache;
    const nll = builtinNll(loaded.right.units);
    if ("sources" in spec) {
      groups.push({
        weight,
        train: docs.tokens,
        validation: sliceStream(docs.tokens, 0, 0),
        trainDocuments: docs.docEnds.length,
        validationDocuments: 0,
      });
      nlls.push(
        nll === undefined ? undefined : {
          train: sum(nll),
          trainTokens: docs.tokens.length,
          validation: 0,
          validationTokens: 0,
        },
      );
      continue;
    }
    const split = splitByFraction(docs, spec, config.seed ?? 0);
    if (E.isLeft(split)) {
      return E.left(configInvalid(`data.sources[${i}]: ${split.left.where}`, split.left.message));
    }
    const s = split.right;
    const held = s.validationDocIndices.length;
    byDocuments ||= s.by === "documents";
    groups.push({
      weight,
      train: s.train,
      validation: s.validation,
      trainDocuments: s.by === "documents" ? docs.docEnds.length - held : docs.docEnds.length,
      validationDocuments: held,
    });
    if (nll === undefined) nlls.push(undefined);
    else {
      const f = splitFloors(nll, docs, s);
      nlls.push({
        train: f.train * s.train.length,
        trainTokens: s.train.length,
        validation: f.validation * s.validation.length,
        validationTokens: s.validation.length,
      });
    }
  }
  let validation = concatStreams(groups.map((g) => g.validation));
  let validationDocuments = groups.reduce((a, g) => a + g.validationDocuments, 0);
  let validNll: GroupNll | undefined;
  if ("sources" in spec) {
    const valid = await load(spec.sources, "data.validation.sources")();
    if (E.isLeft(valid)) return valid;
    validation = valid.right.docs.tokens;
    validationDocuments = valid.right.docs.docEnds.length;
    fromCache &&= valid.right.fromCache;
    const nll = builtinNll(valid.right.units);
    if (nll !== undefined) {
      validNll = {
        train: 0,
        trainTokens: 0,
        validation: sum(nll),
        validationTokens: validation.length,
      };
    }
  }
  const train = concatStreams(groups.map((g) => g.train));
  const known = nlls.every((n) => n !== undefined) &&
    (!("sources" in spec) || validNll !== undefined);
  const all = [...nlls, validNll].filter((n) => n !== undefined);
  const total = (k: keyof GroupNll) => all.reduce((a, n) => a + n[k], 0);
  return E.right({
    tokenizer,
    train,
    validation,
    trainDocuments: groups.reduce((a, g) => a + g.trainDocuments, 0),
    validationDocuments,
    split: "sources" in spec ? "sources" : byDocuments ? "documents" : "tail",
    validationDocIndices: [],
    fromCache,
    groups,
    ...(known
      ? {
        floorNats: {
          train: total("train") / total("trainTokens"),
          validation: total("validation") / total("validationTokens"),
        },
      }
      : {}),
  });
}
