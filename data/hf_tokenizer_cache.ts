/**
 * A word cache in front of `@huggingface/tokenizers` for BPE tokenisers: the text is cut into
 * pieces as the library cuts it, and each distinct piece is encoded by the library once; repeats
 * (most words of a corpus) cost one map lookup. For byte-level BPE (GPT-2, LLaMA-3, Qwen) the
 * cache keys on the text before its byte-level mapping, which the library otherwise redoes for
 * every word of every call. On English books this took GPT-2's `tokenizer.json` from ~1 to
 * ~15 MB/s on one thread (npm `tiktoken`: ~7 MB/s in the same run), LLaMA-3.1's from ~1.2 to
 * ~7.5 MB/s, and Mistral's (SentencePiece BPE, one piece per text) from ~0.65 to ~9 MB/s (HF's
 * Rust binding, batched on one thread: ~3).
 *
 * It is used only where it gives the library's ids by construction: a BPE model without dropout,
 * added tokens matched on the raw text (not `normalized`, no `lstrip`/`rstrip`/`single_word`),
 * and either a pre-tokeniser that ends in a byte-level mapping which splits nothing further (a
 * `ByteLevel` step with `use_regex: false`, or a lone `ByteLevel` that splits with its GPT-2
 * pattern, neither adding a prefix space) or merges that never join a character to a following
 * ▁. Anything else (Unigram) is encoded by the library directly.
 *
 * @module
 */
import {
  ByteLevelPreTokenizer,
  type PreTokenizer,
  SequencePreTokenizer,
  type Tokenizer as HfLibTokenizer,
} from "@huggingface/tokenizers";

/** The parts of a `tokenizer.json` (as given to the library) the cache depends on. */
export interface CacheableJson {
  readonly model: {
    readonly type?: string;
    readonly dropout?: unknown;
    readonly vocab?: unknown;
    readonly merges?: unknown;
  };
  readonly added_tokens: readonly {
    readonly id: number;
    readonly content: string;
    readonly normalized?: boolean;
    readonly lstrip?: boolean;
    readonly rstrip?: boolean;
    readonly single_word?: boolean;
  }[];
  readonly pre_tokenizer?: unknown;
}

/** Pre-tokens longer than this are encoded but not kept: long runs of odd text rarely repeat. */
const LONGEST_CACHED = 64;
/** Entries kept before the cache is emptied and refilled (bounds memory per tokeniser). */
const CACHE_ENTRIES = 100_000;

type ByteLevelConfig = { type?: unknown; use_regex?: unknown; add_prefix_space?: unknown };

/** How a normalised section becomes the pieces the cache keys on, and a piece the model's input. */
interface Piecer {
  readonly split: (text: string, section: number) => string[];
  readonly toModel: (piece: string) => string;
}

/**
 * A GPT-2 split pattern whose `\s` is Unicode's White_Space, as in HF's Rust library and
 * tiktoken. The JavaScript library's ByteLevel pattern uses JavaScript's `\s`, which leaves out
 * U+0085 and takes in U+FEFF: " \u0085" gave one piece (id 1587) there against Rust's two (220,
 * 126) — found by the random-Unicode property test. Its `Split` patterns already translate `\s`.
 */
export function withWhiteSpace(pattern: RegExp): RegExp {
  const source = pattern.source.replace(
    /\\([sS])/g,
    (_, c: string) => c === "s" ? String.raw`\p{White_Space}` : String.raw`\P{White_Space}`,
  );
  return new RegExp(source, pattern.flags.includes("u") ? pattern.flags : `${pattern.flags}u`);
}

/**
 * Gives the library's ByteLevel pre-tokenisers (alone or inside a Sequence) the White_Space
 * pattern of {@link withWhiteSpace}, so its own encoding (where the cache does not apply)
 * splits as HF's Rust library does.
 */
export function fixByteLevelPatterns(pre: unknown): void {
  if (pre instanceof ByteLevelPreTokenizer) {
    const p = pre as unknown as { pattern: RegExp };
    p.pattern = withWhiteSpace(p.pattern);
  } else if (pre instanceof SequencePreTokenizer) {
    for (const inner of (pre as unknown as { tokenizers: unknown[] }).tokenizers) {
      fixByteLevelPatterns(inner);
    }
  }
}

/** The pre-tokeniser without its final byte-level mapping, when it ends in one. */
function byteLevelPiecer(pre: unknown): Piecer | undefined {
  if (typeof pre !== "object" || pre === null) return undefined;
  const byteChars = new ByteLevelPreTokenizer({ type: "ByteLevel" } as never).byte_encoder;
  const utf8 = new TextEncoder();
  const toModel = (piece: string) => Array.from(utf8.encode(piece), (b) => byteChars[b]).join("");
  const p = pre as ByteLevelConfig & { pretokenizers?: unknown };
  if (p.type === "ByteLevel" && p.use_regex !== false && p.add_prefix_space !== true) {
    const pattern = withWhiteSpace(new ByteLevelPreTokenizer(pre as never).pattern);
    return { split: (text) => text.match(pattern) ?? [], toModel };
  }
  if (p.type !== "Sequence" || !Array.isArray(p.pretokenizers)) return undefined;
  const steps = p.pretokenizers as ByteLevelConfig[];
  const last = steps.at(-1);
  if (last?.type !== "ByteLevel" || last.use_regex !== false || last.add_prefix_space === true) {
    return undefined;
  }
  const rest: PreTokenizer = new SequencePreTokenizer(
    { type: "Sequence", pretokenizers: steps.slice(0, -1) } as never,
  );
  return { split: (text, section) => rest.pre_tokenize(text, { section_index: section }), toModel };
}

const SPACE = "\u2581";
/** A token or merge joining a non-space character to a following ▁ (SentencePiece's space). */
const JOINS_AT_SPACE = /[^\u2581]\u2581/;

/**
 * The pieces the library's pre-tokeniser gives (already the model's input), each cut again
 * before every run of ▁ (SentencePiece's space) when no merge and no token joins a character to a
 * following ▁: then no merge can cross such a cut, so it changes nothing. SentencePiece-style BPE
 * (LLaMA-2, Mistral) has no pre-tokeniser and sees each text whole; the cut is what makes its
 * pieces repeat.
 */
function preTokenPiecer(
  lib: HfLibTokenizer,
  json: CacheableJson,
  pre: unknown,
): Piecer | undefined {
  const vocab = json.model.vocab;
  const merges = json.model.merges;
  if (typeof vocab !== "object" || vocab === null || !Array.isArray(merges)) return undefined;
  if (Object.keys(vocab).some((token) => JOINS_AT_SPACE.test(token))) return undefined;
  const joins = (m: unknown) => {
    const [a, b] = typeof m === "string" ? m.split(" ", 2) : (m as string[]);
    return a === undefined || b === undefined || (!a.endsWith(SPACE) && b.startsWith(SPACE));
  };
  if (merges.some(joins)) return undefined;
  const preTokenizer = pre === null || pre === undefined ? null : lib.pre_tokenizer;
  if (pre !== null && pre !== undefined && preTokenizer === null) return undefined;
  const cut = (piece: string) => piece.split(/(?<=[^\u2581])(?=\u2581)/);
  return {
    split: (text, section) =>
      preTokenizer === null
        ? cut(text)
        : preTokenizer.pre_tokenize(text, { section_index: section }).flatMap(cut),
    toModel: (piece) => piece,
  };
}

/** Leftmost-longest matching of the added tokens in raw text, as the library splits. */
function addedTokenSplitter(contents: readonly string[]): (text: string) => string[] {
  type Node = { next: Map<string, Node>; end?: string };
  const root: Node = { next: new Map() };
  for (const word of contents) {
    let node = root;
    for (const ch of word) {
      let child = node.next.get(ch);
      if (child === undefined) node.next.set(ch, child = { next: new Map() });
      node = child;
    }
    node.end = word;
  }
  if (root.next.size === 0) return (text) => [text];
  return (text) => {
    const out: string[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let node: Node | undefined = root;
      let match: string | undefined;
      for (let j = i; j < text.length; j++) {
        node = node.next.get(text[j]!);
        if (node === undefined) break;
        if (node.end !== undefined) match = node.end;
      }
      if (match === undefined) {
        i++;
        continue;
      }
      if (i > start) out.push(text.slice(start, i));
      out.push(match);
      i += match.length;
      start = i;
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  };
}

/**
 * The cached encoder for the library tokeniser `lib` built from `json` (with `config`), or
 * `undefined` where the cache would not reproduce the library's ids (see the module doc).
 */
export function cachedEncoder(
  lib: HfLibTokenizer,
  json: CacheableJson,
  config: Readonly<Record<string, unknown>>,
): ((text: string) => Int32Array) | undefined {
  const model = lib.model;
  const plainAdded = json.added_tokens.every((a) =>
    a.normalized !== true && a.lstrip !== true && a.rstrip !== true && a.single_word !== true
  );
  const dropout = json.model.dropout;
  if (
    model === null || json.model.type !== "BPE" || (typeof dropout === "number" && dropout > 0) ||
    !plainAdded || config.remove_space === true || config.do_lowercase_and_remove_accent === true
  ) return undefined;
  const piecer = byteLevelPiecer(json.pre_tokenizer) ??
    preTokenPiecer(lib, json, json.pre_tokenizer);
  if (piecer === undefined) return undefined;

  const added = new Map(json.added_tokens.map((a) => [a.content, a.id]));
  const sections = addedTokenSplitter(json.added_tokens.map((a) => a.content));
  const normalizer = lib.normalizer;
  const words = new Map<string, readonly number[]>();
  const idsOf = (piece: string): readonly number[] => {
    const cached = words.get(piece);
    if (cached !== undefined) return cached;
    const ids = model.encode([piecer.toModel(piece)]).map((t) => {
      const id = model.tokens_to_ids.get(t) ?? model.unk_token_id;
      if (id === undefined) throw new Error(`BPE gave "${t}", which is not in the vocabulary`);
      return id;
    });
    if (piece.length <= LONGEST_CACHED) {
      if (words.size >= CACHE_ENTRIES) words.clear();
      words.set(piece, ids);
    }
    return ids;
  };
  return (text) => {
    const out: number[] = [];
    const parts = sections(text);
    for (let s = 0; s < parts.length; s++) {
      const part = parts[s]!;
      const special = added.get(part);
      if (special !== undefined) {
        out.push(special);
        continue;
      }
      const normal = normalizer === null ? part : normalizer.normalize(part);
      if (normal.length === 0) continue;
      const whole = added.get(normal);
      if (whole !== undefined) {
        out.push(whole);
        continue;
      }
      for (const piece of piecer.split(normal, s)) {
        const ids = idsOf(piece);
        for (let k = 0; k < ids.length; k++) out.push(ids[k]!);
      }
    }
    return Int32Array.from(out);
  };
}
