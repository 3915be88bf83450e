/**
 * Tokenisation throughput, one thread: MB/s of UTF-8 text encoded by the GPT-2 BPE three ways,
 * side by side on the same text, each book encoded as one document:
 *
 * - `gpt2`: the built-in tokeniser (npm `gpt-tokenizer`, `r50k_base`, JavaScript);
 * - `hf-json gpt2`: the same BPE as the `tokenizer.json` that `gpt2`'s `hfFiles()` writes, loaded
 *   through the Hugging Face path (`@huggingface/tokenizers`), as any `tokenizer.json` is;
 * - `tiktoken`: npm `tiktoken` (OpenAI's Rust tokeniser compiled to WebAssembly), `r50k_base`.
 *
 * The first pass (each encoder's word cache, if any, empty) is reported as "cold"; then rounds
 * alternate the three and each reports its median round. The three must give the same ids
 * on the whole text (reported as `same`, and an error from {@link benchTokenize} if not).
 *
 * Per-call costs differ (tiktoken copies each string into WebAssembly memory and back), so the
 * entry point measures both whole books and the same text cut into paragraphs.
 *
 * Run: `deno run --allow-all bench/tokenize_bench.ts [--mb 4] [--rounds 3] [--unit book|paragraph|both]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { get_encoding } from "tiktoken";
import { median } from "../base/mod.ts";
import { builtinCorpus, gpt2Tokenizer, loadTokenizer, type Tokenizer } from "../data/mod.ts";

/** One encoder's figures. */
export interface TokenizeBenchRow {
  /** `gpt2`, `hf-json gpt2` or `tiktoken`. */
  readonly name: string;
  /** The package and how it is used. */
  readonly description: string;
  /** Milliseconds to make the encoder ready (tables loaded, `tokenizer.json` parsed). */
  readonly loadMs: number;
  /** MB/s of the first pass over the text, with any word cache still empty. */
  readonly coldMbPerSec: number;
  /** Median over rounds (after the first pass) of MB (10^6 bytes of UTF-8) encoded per second. */
  readonly mbPerSec: number;
  /** Every round's MB/s, in order. */
  readonly roundsMbPerSec: readonly number[];
  /** Tokens of the whole text. */
  readonly tokens: number;
}

/** What {@link benchTokenize} measured. */
export interface TokenizeBenchResult {
  /** UTF-8 bytes of the text. */
  readonly bytes: number;
  /** Documents it was encoded as. */
  readonly documents: number;
  /** Where the text came from. */
  readonly source: string;
  readonly rows: readonly TokenizeBenchRow[];
  /** The encoders gave identical ids on the whole text. */
  readonly same: boolean;
}

/** Options of {@link benchTokenize}. */
export interface TokenizeBenchOptions {
  /** The documents to encode (default: {@link benchDocuments} of 4 MB). */
  readonly documents?: readonly string[];
  /** Where they came from, for the report. */
  readonly source?: string;
  /** Alternating rounds per encoder (default 3). */
  readonly rounds?: number;
}

const SHARED_BOOKS = fileURLToPath(new URL("../../shared/data/corpus-en", import.meta.url));

/**
 * About `mb` MB of English: the shared public-domain books (`../shared/data/corpus-en`, whole
 * books in name order, the last one cut), or where that folder is absent the built-in generated
 * corpus.
 */
export function benchDocuments(mb: number): { documents: string[]; source: string } {
  const want = mb * 1e6;
  const encoder = new TextEncoder();
  try {
    const names = [...Deno.readDirSync(SHARED_BOOKS)].map((e) => e.name)
      .filter((n) => n.endsWith(".txt")).sort();
    const documents: string[] = [];
    let bytes = 0;
    for (const name of names) {
      if (bytes >= want) break;
      let text = Deno.readTextFileSync(path.join(SHARED_BOOKS, name));
      if (bytes + text.length > want) text = text.slice(0, want - bytes);
      documents.push(text);
      bytes += encoder.encode(text).length;
    }
    return { documents, source: `${SHARED_BOOKS} (${documents.length} books)` };
  } catch {
    const corpus = builtinCorpus({ seed: 1, bytes: want });
    return { documents: [...corpus.documents], source: "built-in generated corpus, seed 1" };
  }
}

interface Encoder {
  readonly name: string;
  readonly description: string;
  readonly loadMs: number;
  readonly encode: (text: string) => ArrayLike<number>;
  readonly free?: () => void;
}

async function encoders(): Promise<Encoder[]> {
  let t0 = performance.now();
  const made = await gpt2Tokenizer()();
  if (E.isLeft(made)) throw new Error(made.left.message);
  const gpt2: Tokenizer = made.right;
  gpt2.encode("warm up");
  const gpt2Ms = performance.now() - t0;

  // The Hugging Face path reads the folder an exported model would carry.
  const dir = await Deno.makeTempDir();
  let hf: Tokenizer;
  let hfMs: number;
  try {
    for (const [name, text] of Object.entries(gpt2.hfFiles())) {
      await Deno.writeTextFile(path.join(dir, name), text);
    }
    t0 = performance.now();
    const loaded = await loadTokenizer(dir)();
    if (E.isLeft(loaded)) throw new Error(loaded.left.message);
    hf = loaded.right;
    hf.encode("warm up");
    hfMs = performance.now() - t0;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  t0 = performance.now();
  const tiktoken = get_encoding("r50k_base");
  const tiktokenMs = performance.now() - t0;
  // Special-token text is text for the built-in; tiktoken must be told (its default throws).
  const none: string[] = [];
  return [
    {
      name: "gpt2",
      description: "built-in: gpt-tokenizer 4.0.0 r50k_base (JavaScript)",
      loadMs: gpt2Ms,
      encode: (s) => gpt2.encode(s),
    },
    {
      name: "hf-json gpt2",
      description: "gpt2's tokenizer.json via @huggingface/tokenizers 0.2.0 (JavaScript)",
      loadMs: hfMs,
      encode: (s) => hf.encode(s),
    },
    {
      name: "tiktoken",
      description: "tiktoken 1.0.22 r50k_base (Rust compiled to WebAssembly)",
      loadMs: tiktokenMs,
      encode: (s) => tiktoken.encode(s, none, none),
      free: () => tiktoken.free(),
    },
  ];
}

/**
 * Measures each encoder's single-thread MB/s on the same documents, alternating rounds, and
 * checks that they agree id for id. Throws if they do not.
 *
 * @example
 * ```ts
 * import { benchTokenize } from "./tokenize_bench.ts";
 * const r = await benchTokenize({ documents: ["Hello world. ".repeat(100)], rounds: 1 });
 * if (!r.same || r.rows.length !== 3) throw new Error("expected three agreeing encoders");
 * ```
 */
export async function benchTokenize(
  options: TokenizeBenchOptions = {},
): Promise<TokenizeBenchResult> {
  const given = options.documents === undefined ? benchDocuments(4) : undefined;
  const documents = options.documents ?? given!.documents;
  const source = options.source ?? given?.source ?? "given documents";
  const rounds = options.rounds ?? 3;
  const bytes = documents.reduce((s, d) => s + new TextEncoder().encode(d).length, 0);
  const list = await encoders();
  try {
    // The first pass (timed as "cold": word caches start empty) gives the ids compared.
    const coldMbPerSec: number[] = [];
    const ids = list.map((e) => {
      const t0 = performance.now();
      const out = documents.map((d) => Int32Array.from(e.encode(d)));
      coldMbPerSec.push(bytes / 1e3 / (performance.now() - t0));
      return out;
    });
    const same = ids.every((perDoc) =>
      perDoc.every((a, i) => {
        const b = ids[0]![i]!;
        return a.length === b.length && a.every((x, j) => x === b[j]);
      })
    );
    if (!same) throw new Error("The encoders disagree on the benchmark text");
    const perRound: number[][] = list.map(() => []);
    for (let r = 0; r < rounds; r++) {
      list.forEach((e, k) => {
        const t0 = performance.now();
        for (const d of documents) e.encode(d);
        perRound[k]!.push(bytes / 1e3 / (performance.now() - t0));
      });
    }
    const rows = list.map((e, k): TokenizeBenchRow => ({
      name: e.name,
      description: e.description,
      loadMs: e.loadMs,
      coldMbPerSec: coldMbPerSec[k]!,
      mbPerSec: median(perRound[k]!),
      roundsMbPerSec: perRound[k]!,
      tokens: ids[k]!.reduce((s, a) => s + a.length, 0),
    }));
    return { bytes, documents: documents.length, source, rows, same };
  } finally {
    for (const e of list) e.free?.();
  }
}

/** The result as a table: one line per encoder, MB/s beside tiktoken's. */
export function tokenizeBenchTable(result: TokenizeBenchResult): string {
  const tiktoken = result.rows.find((r) => r.name === "tiktoken")?.mbPerSec ?? NaN;
  const lines = [
    `${(result.bytes / 1e6).toFixed(2)} MB in ${result.documents} documents from ${result.source}`,
    "encoder        load ms   cold MB/s   MB/s (median)   × tiktoken   tokens     rounds",
  ];
  for (const r of result.rows) {
    lines.push(
      `${r.name.padEnd(14)} ${r.loadMs.toFixed(0).padStart(7)}   ${
        r.coldMbPerSec.toFixed(2).padStart(9)
      }   ${r.mbPerSec.toFixed(2).padStart(13)}   ${
        (r.mbPerSec / tiktoken).toFixed(2).padStart(10)
      }   ${String(r.tokens).padEnd(9)}  ${r.roundsMbPerSec.map((x) => x.toFixed(2)).join(" ")}`,
    );
  }
  lines.push(`same ids: ${result.same ? "yes" : "NO"}`);
  return lines.join("\n");
}

/** Documents cut after each blank line (separators kept), as web-sized documents of a few kB. */
export function paragraphs(documents: readonly string[]): string[] {
  return documents.flatMap((d) => d.split(/(?<=\n[ \t\r]*\n)(?!\s)/));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mb: { type: "string", default: "4" },
      rounds: { type: "string", default: "3" },
      unit: { type: "string", default: "both" },
    },
  });
  const { documents, source } = benchDocuments(Number(values.mb));
  const rounds = Number(values.rounds);
  if (values.unit !== "paragraph") {
    console.log(tokenizeBenchTable(await benchTokenize({ documents, source, rounds })));
  }
  if (values.unit !== "book") {
    const cut = paragraphs(documents);
    const what = `${source}, cut into paragraphs`;
    console.log(tokenizeBenchTable(await benchTokenize({ documents: cut, source: what, rounds })));
  }
}
