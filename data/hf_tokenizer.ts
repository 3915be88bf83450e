/**
 * Any Hugging Face tokeniser: a `tokenizer.json` (with its `tokenizer_config.json` where present)
 * loaded through npm `@huggingface/tokenizers` (tokenizers.js, pure JavaScript, maintained by
 * Hugging Face beside transformers.js). BPE with byte fallback (LLaMA-2/Mistral SentencePiece
 * style), byte-level BPE of any vocabulary size (GPT-2, LLaMA-3, Qwen) and Unigram.
 *
 * Why this implementation. Measured on this project's 2-core machine (load average 1.5–2.5 from
 * other jobs) with LLaMA-3.1's `tokenizer.json`: 4.14 MB of `corpus-en` books encoded as 12,468
 * paragraphs, one thread, three alternating rounds:
 *
 * | package | kind | load | encode MB/s |
 * |---|---|---|---|
 * | `@huggingface/tokenizers` 0.2.0 | pure JS, synchronous | 0.65 s | 1.1–1.2 |
 * | the same behind this module's word cache (`hf_tokenizer_cache.ts`) | | 0.85 s | 3.2 cold, 7.3–7.9 warm |
 * | `@lenml/tokenizers` 3.7.2 (a transformers.js fork) | pure JS, synchronous | 0.97 s | 1.1–1.3 |
 * | `tokenizers` 0.23.2 (HF's own Node-API binding of the Rust crate) | native, `Promise` only | 0.39 s | 1.0–1.6 one await at a time; 2.6 `encodeBatch` on one Rayon thread |
 * | `@anush008/tokenizers` 0.6.0 (a republished build of that binding) | native, `Promise` only | 0.42 s | 1.1–1.3 awaited; 1.9–2.6 batched |
 *
 * All gave identical ids on that text (993,287 tokens). The Rust bindings are not faster here
 * once every call crosses Node-API and builds a JS `Encoding`, and they only offer
 * `Promise`-returning `encode`, which {@link Tokenizer}'s synchronous `encode` (and the
 * token-shard workers built on it) cannot use. `@huggingface/tokenizers` is Hugging Face's
 * maintained JavaScript port (the tokenisers of transformers.js), installs as plain JavaScript on
 * every platform, and is synchronous; with the word cache in front it is the fastest of the
 * four. The Rust binding stays a test dependency: the tests compare this module's ids and
 * decoding with it on random Unicode. For the GPT-2 BPE the same path runs at ~15 MB/s against
 * npm `tiktoken`'s ~7 (`bench/tokenize_bench.ts`).
 *
 * What HF's Python `transformers` does and this module therefore does too: `eot` is the config's
 * `eos_token`; `bos` is the config's `bos_token` when `add_bos_token` is true, none when it is
 * false, and when the config does not say, the special token the tokeniser's post-processor puts
 * before a text (LLaMA-3.1's `TemplateProcessing`), if any. `split_special_tokens: true` in the
 * config makes special-token text ordinary text. Decoding never applies
 * `clean_up_tokenization_spaces` (it would break `decode(encode(s)) == s`).
 *
 * Ids are those of the `tokenizer.json` as HF's `tokenizers` library reads it. (transformers 5
 * rebuilds some classes' pipelines from its own templates: for Mistral's file, named
 * `LlamaTokenizer`, it then drops a text's leading space token; the tests show the rest agree.)
 *
 * Memory: a loaded tokeniser keeps the library's tables and the parsed file, about 190 MB of
 * resident memory for LLaMA-3.1, 170 MB for Qwen3, 65 MB for Mistral-7B; every worker that loads
 * one pays it.
 *
 * Without an `eos_token` in the config (or without a config), the end-of-text token is the one
 * the post-processor appends after a text, else the first special added token spelled
 * `</s>`, `<|endoftext|>`, `<|end_of_text|>` or `<eos>`; a tokeniser with none of these is an
 * error asking for a `tokenizer_config.json` with `eos_token`.
 *
 * @module
 */
import * as path from "node:path";
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { pipe } from "fp-ts/lib/function.js";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import {
  type ContentInvalid,
  contentInvalid,
  decodeWith,
  describeUnknown,
  type ext,
  type FileError,
  ioFailed,
} from "../base/mod.ts";
import { type CacheableJson, cachedEncoder, fixByteLevelPatterns } from "./hf_tokenizer_cache.ts";
import { readUtf8File } from "./text_file.ts";
import type { HfTokenizerFiles, Tokenizer } from "./tokenizer_types.ts";

/** The texts of one Hugging Face tokeniser, read from disk, and where they came from. */
export interface HfTokenizerSource {
  /** Short label for the tokeniser's name, usually its folder's name. */
  readonly label: string;
  /** The `tokenizer.json` file, for error messages. */
  readonly jsonPath: string;
  /** Its text. */
  readonly jsonText: string;
  /** Hex SHA-256 of the `tokenizer.json` text (part of the tokeniser's name). */
  readonly sha256: string;
  /** The `tokenizer_config.json` beside it, for error messages (whether or not it exists). */
  readonly configPath: string;
  /** Its text, absent when there is no config. */
  readonly configText?: string;
}

const Int = t.refinement(t.number, Number.isInteger, "integer");
const AddedTokenC = t.intersection([
  t.type({ id: Int, content: t.string }),
  t.partial({ special: t.boolean }),
]);
type AddedToken = t.TypeOf<typeof AddedTokenC>;
const TokenizerJsonC = t.intersection([
  t.type({
    model: t.intersection([t.type({ vocab: t.unknown }), t.partial({ type: t.string })]),
    added_tokens: t.array(AddedTokenC),
  }),
  t.partial({ post_processor: t.unknown }),
]);
type TokenizerJson = t.TypeOf<typeof TokenizerJsonC>;
const BpeVocabC = t.record(t.string, Int);
const UnigramVocabC = t.array(t.tuple([t.string, t.number]));
/** A token as a config names it: a string, an `AddedToken` record, or null. */
const TokenRefC = t.union([t.null, t.string, t.type({ content: t.string })]);
const TokenizerConfigC = t.partial({
  eos_token: TokenRefC,
  bos_token: TokenRefC,
  add_bos_token: t.boolean,
  split_special_tokens: t.boolean,
});
type TokenizerConfig = t.TypeOf<typeof TokenizerConfigC>;

const MODEL_TYPES = ["BPE", "Unigram"];
const EOS_SPELLINGS = ["</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"];

function parseJson(text: string, path: string): ext.Either<ContentInvalid, unknown> {
  return E.tryCatch(
    () => JSON.parse(text) as unknown,
    (e) => contentInvalid(path, `not JSON: ${describeUnknown(e)}`),
  );
}

function decodeIn<A>(
  codec: t.Type<A, unknown, unknown>,
  u: unknown,
  path: string,
  field = "",
): ext.Either<ContentInvalid, A> {
  return pipe(
    decodeWith(codec, u),
    E.mapLeft((lines) =>
      contentInvalid(path, lines.map((l) => field === "" ? l : `${field}.${l}`).join("; "))
    ),
  );
}

function tokenText(ref: TokenizerConfig["eos_token"]): string | undefined {
  return ref === null || ref === undefined
    ? undefined
    : typeof ref === "string"
    ? ref
    : ref.content;
}

/** Ids the post-processor puts before (`first`) and after (`last`) a single text, if any. */
function templateIds(pp: unknown): { first?: number; last?: number } {
  if (typeof pp !== "object" || pp === null) return {};
  const p = pp as Record<string, unknown>;
  if (p.type === "Sequence" && Array.isArray(p.processors)) {
    for (const inner of p.processors) {
      const found = templateIds(inner);
      if (found.first !== undefined || found.last !== undefined) return found;
    }
    return {};
  }
  if (p.type === "BertProcessing" || p.type === "RobertaProcessing") {
    const cls = Array.isArray(p.cls) ? p.cls[1] : undefined;
    const sep = Array.isArray(p.sep) ? p.sep[1] : undefined;
    return {
      ...(typeof cls === "number" ? { first: cls } : {}),
      ...(typeof sep === "number" ? { last: sep } : {}),
    };
  }
  if (p.type !== "TemplateProcessing" || !Array.isArray(p.single)) return {};
  const specials = (p.special_tokens ?? {}) as Record<string, { ids?: unknown }>;
  const idOf = (piece: unknown): number | undefined => {
    const name = (piece as { SpecialToken?: { id?: unknown } })?.SpecialToken?.id;
    const ids = typeof name === "string" ? specials[name]?.ids : undefined;
    return Array.isArray(ids) && typeof ids[0] === "number" ? ids[0] : undefined;
  };
  const first = idOf(p.single[0]);
  const last = p.single.length > 1 ? idOf(p.single[p.single.length - 1]) : undefined;
  return { ...(first !== undefined ? { first } : {}), ...(last !== undefined ? { last } : {}) };
}

interface ModelFacts {
  readonly vocabSize: number;
  /** Id of a token of the model's own vocabulary (added tokens aside). */
  readonly idOf: (token: string) => number | undefined;
}

function modelFacts(json: TokenizerJson, path: string): ext.Either<ContentInvalid, ModelFacts> {
  const type = json.model.type;
  if (type === undefined || !MODEL_TYPES.includes(type)) {
    return E.left(contentInvalid(
      path,
      `model.type: ${
        type === undefined ? "missing" : JSON.stringify(type)
      } is not supported (BPE, byte-level BPE and Unigram are)`,
    ));
  }
  const addedMax = json.added_tokens.reduce((m, a) => Math.max(m, a.id), -1);
  if (type === "Unigram") {
    if ((json.model as { byte_fallback?: unknown }).byte_fallback === true) {
      return E.left(contentInvalid(
        path,
        "model.byte_fallback: a Unigram model with byte fallback is not supported " +
          "(@huggingface/tokenizers would give <unk> where HF gives byte tokens)",
      ));
    }
    return pipe(
      decodeIn(UnigramVocabC, json.model.vocab, path, "model.vocab"),
      E.map((vocab) => {
        const ids = new Map(vocab.map(([piece], i) => [piece, i]));
        return { vocabSize: Math.max(vocab.length, addedMax + 1), idOf: (s) => ids.get(s) };
      }),
    );
  }
  return pipe(
    decodeIn(BpeVocabC, json.model.vocab, path, "model.vocab"),
    E.map((vocab) => {
      const max = Object.values(vocab).reduce((m, id) => Math.max(m, id), -1);
      return { vocabSize: Math.max(max, addedMax) + 1, idOf: (s) => vocab[s] };
    }),
  );
}

/**
 * `split_special_tokens`: the library always matches added tokens in text, so the special ones
 * move from `added_tokens` into the model's vocabulary, where decoding still finds them and
 * encoding can only reach them by merges (none produce them).
 */
function withSpecialsAsText(
  raw: Record<string, unknown>,
  json: TokenizerJson,
  facts: ModelFacts,
  path: string,
): ext.Either<ContentInvalid, Record<string, unknown>> {
  const specials = json.added_tokens.filter((a) => a.special === true);
  const model = raw.model as Record<string, unknown>;
  if (json.model.type === "Unigram") {
    const outside = specials.find((a) => facts.idOf(a.content) !== a.id);
    return outside === undefined
      ? E.right({ ...raw, added_tokens: json.added_tokens.filter((a) => a.special !== true) })
      : E.left(contentInvalid(
        path,
        `added_tokens: split_special_tokens needs "${outside.content}" in the Unigram vocabulary`,
      ));
  }
  const vocab = { ...(model.vocab as Record<string, number>) };
  for (const a of specials) vocab[a.content] = a.id;
  return E.right({
    ...raw,
    model: { ...model, vocab },
    added_tokens: json.added_tokens.filter((a) => a.special !== true),
  });
}

function configFor(eot: string, bos: string | undefined): string {
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    eos_token: eot,
    bos_token: bos ?? null,
    add_bos_token: bos !== undefined,
    clean_up_tokenization_spaces: false,
  };
  return JSON.stringify(config, null, 2) + "\n";
}

/**
 * The tokeniser of a `tokenizer.json` (and config) already read: its model, vocabulary size,
 * `eot`/`bos` as described in the module doc. Errors name the file and the field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hfTokenizer } from "./hf_tokenizer.ts";
 * const chars = ["<|endoftext|>", "a", "b", "ab"];
 * const json = {
 *   model: { type: "BPE", vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: ["a b"] },
 *   added_tokens: [{ id: 0, content: "<|endoftext|>", special: true }],
 *   normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
 * };
 * const r = hfTokenizer({
 *   label: "tiny", jsonPath: "tokenizer.json", jsonText: JSON.stringify(json), sha256: "00",
 *   configPath: "tokenizer_config.json",
 * });
 * assert(r._tag === "Right" && r.right.eot === 0 && r.right.vocabSize === 4);
 * assert.deepEqual(Array.from(r.right.encode("abba<|endoftext|>")), [3, 2, 1, 0]);
 * ```
 */
export function hfTokenizer(source: HfTokenizerSource): ext.Either<ContentInvalid, Tokenizer> {
  const { jsonPath, configPath } = source;
  return pipe(
    E.Do,
    E.bind("raw", () => parseJson(source.jsonText, jsonPath)),
    E.bind("json", ({ raw }) => decodeIn(TokenizerJsonC, raw, jsonPath)),
    E.bind("facts", ({ json }) => modelFacts(json, jsonPath)),
    E.bind(
      "config",
      () =>
        source.configText === undefined ? E.right<ContentInvalid, TokenizerConfig>({}) : pipe(
          parseJson(source.configText, configPath),
          E.chain((u) => decodeIn(TokenizerConfigC, u, configPath)),
        ),
    ),
    E.bind("ids", ({ json, facts, config }) => specialIds(source, json, facts, config)),
    E.bind("lib", ({ raw, json, facts, config, ids }) =>
      pipe(
        config.split_special_tokens === true
          ? withSpecialsAsText(raw as Record<string, unknown>, json, facts, jsonPath)
          : E.right(raw as Record<string, unknown>),
        E.chain((forLib) =>
          E.tryCatch(() => {
            const cfg =
              (source.configText === undefined ? {} : JSON.parse(source.configText)) as Record<
                string,
                unknown
              >;
            // The library's Unigram looks the EOS text up in its vocabulary: give it the string.
            const lib = new HfLibTokenizer(forLib, { ...cfg, eos_token: ids.eotText });
            fixByteLevelPatterns((lib as unknown as { pre_tokenizer: unknown }).pre_tokenizer);
            const cached = cachedEncoder(lib, forLib as unknown as CacheableJson, cfg);
            const encode = cached ??
              ((text: string) =>
                Int32Array.from(lib.encode(text, { add_special_tokens: false }).ids));
            return { lib, encode };
          }, (e) => contentInvalid(jsonPath, `cannot build the tokenizer: ${describeUnknown(e)}`))
        ),
      )),
    E.map(({ facts, ids, lib: { lib, encode } }) => {
      const files: HfTokenizerFiles = {
        "tokenizer.json": source.jsonText,
        "tokenizer_config.json": source.configText ?? configFor(ids.eotText, ids.bosText),
      };
      const vocabSize = facts.vocabSize;
      const tokenizer: Tokenizer = {
        name: `hf-${source.label}-${source.sha256.slice(0, 16)}`,
        vocabSize,
        eot: ids.eot,
        ...(ids.bos !== undefined ? { bos: ids.bos } : {}),
        // A lone surrogate becomes U+FFFD first, as UTF-8 (and so HF's Rust library) sees it.
        encode: (text) => encode(text.toWellFormed()),
        decode: (ids) => {
          if (ids.length === 0) return "";
          const list = Array.from(ids);
          const bad = list.find((id) => !(Number.isInteger(id) && id >= 0 && id < vocabSize));
          if (bad !== undefined) {
            throw new RangeError(`Token id ${bad} is outside 0..${vocabSize - 1}`);
          }
          return lib.decode(list, {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: false,
          });
        },
        hfFiles: () => files,
      };
      return tokenizer;
    }),
  );
}

interface SpecialIds {
  readonly eot: number;
  readonly eotText: string;
  readonly bos?: number;
  readonly bosText?: string;
}

function specialIds(
  source: HfTokenizerSource,
  json: TokenizerJson,
  facts: ModelFacts,
  config: TokenizerConfig,
): ext.Either<ContentInvalid, SpecialIds> {
  const added = new Map<string, AddedToken>(json.added_tokens.map((a) => [a.content, a]));
  const idOf = (s: string) => added.get(s)?.id ?? facts.idOf(s);
  const textOf = (id: number) =>
    json.added_tokens.find((a) => a.id === id)?.content ?? `<id ${id}>`;
  const template = templateIds(json.post_processor);
  const where = source.configText === undefined ? source.jsonPath : source.configPath;

  const eosText = tokenText(config.eos_token);
  let eot: number | undefined;
  if (eosText !== undefined) {
    eot = idOf(eosText);
    if (eot === undefined) {
      return E.left(contentInvalid(
        source.configPath,
        `eos_token: "${eosText}" is not a token of ${source.jsonPath}`,
      ));
    }
  } else {
    eot = template.last ??
      json.added_tokens.find((a) => a.special === true && EOS_SPELLINGS.includes(a.content))?.id;
    if (eot === undefined) {
      return E.left(contentInvalid(
        where,
        "eos_token: none given, and the tokenizer appends no end token and has none of " +
          `${EOS_SPELLINGS.join(", ")}; write a tokenizer_config.json with "eos_token" beside it`,
      ));
    }
  }
  const eotIds = { eot, eotText: eosText ?? textOf(eot) };

  const bosText = tokenText(config.bos_token);
  if (config.add_bos_token === false) return E.right(eotIds);
  if (config.add_bos_token === true) {
    const bos = bosText === undefined ? undefined : idOf(bosText);
    return bos === undefined
      ? E.left(contentInvalid(
        source.configPath,
        `bos_token: add_bos_token is true but bos_token ${
          bosText === undefined ? "is missing" : `"${bosText}" is not a token of ${source.jsonPath}`
        }`,
      ))
      : E.right({ ...eotIds, bos, bosText: bosText! });
  }
  return E.right(
    template.first === undefined
      ? eotIds
      : { ...eotIds, bos: template.first, bosText: textOf(template.first) },
  );
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The file's info, `undefined` when nothing is there, or the failure to look. */
async function statOf(file: string): Promise<ext.Either<FileError, Deno.FileInfo | undefined>> {
  try {
    return E.right(await Deno.stat(file));
  } catch (e) {
    return e instanceof Deno.errors.NotFound
      ? E.right(undefined)
      : E.left(ioFailed(file, `cannot look at it: ${describeUnknown(e)}`));
  }
}

/**
 * Loads the tokeniser at `where`: a `tokenizer.json`, or a folder holding one (an HF model
 * folder); the `tokenizer_config.json` beside it is read when present. Its name is the folder's
 * name and the file's SHA-256.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadHfTokenizer } from "./hf_tokenizer.ts";
 * const r = await loadHfTokenizer("no/such/folder")();
 * assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function loadHfTokenizer(where: string): ext.TaskEither<FileError, Tokenizer> {
  return async () => {
    const info = await statOf(where);
    if (E.isLeft(info)) return info;
    if (info.right === undefined) return E.left(ioFailed(where, "no such file or folder"));
    const folder = info.right.isDirectory ? where : path.dirname(where);
    const jsonPath = info.right.isDirectory ? path.join(where, "tokenizer.json") : where;
    const configPath = path.join(folder, "tokenizer_config.json");
    const jsonInfo = await statOf(jsonPath);
    if (E.isLeft(jsonInfo)) return jsonInfo;
    if (jsonInfo.right === undefined) {
      return E.left(ioFailed(jsonPath, "no such file: a model folder must hold tokenizer.json"));
    }
    const configInfo = await statOf(configPath);
    if (E.isLeft(configInfo)) return configInfo;
    return pipe(
      TE.Do,
      TE.bind("jsonText", () => readUtf8File(jsonPath)),
      TE.bind(
        "configText",
        () =>
          configInfo.right === undefined
            ? TE.right<FileError, string | undefined>(undefined)
            : readUtf8File(configPath),
      ),
      TE.bind("sha256", ({ jsonText }) => TE.fromTask(() => sha256Hex(jsonText))),
      TE.chainEitherKW(({ jsonText, configText, sha256 }) =>
        E.map((t: Tokenizer): Tokenizer => ({ ...t, spec: path.resolve(where) }))(hfTokenizer({
          label: path.basename(path.resolve(folder)),
          jsonPath,
          jsonText,
          sha256,
          configPath,
          ...(configText === undefined ? {} : { configText }),
        }))
      ),
    )();
  };
}
