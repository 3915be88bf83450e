/**
 * Corpus preparation throughput: `prepareShards` (read, tokenise in Web Workers, write shards)
 * with one worker and with one per core, beside npm `tiktoken` (Rust compiled to WebAssembly,
 * one thread) encoding the same documents with the same BPE (GPT-2's r50k_base). Every figure
 * is taken in this one run, alternating, so the ratios hold on a shared, noisy machine.
 *
 * The documents are the shared English books cut into paragraphs and shuffled into ~1 MB
 * files: text the encoders have not seen before the timed pass (a word cache starts empty).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import { get_encoding } from "tiktoken";
import { median } from "../base/mod.ts";
import { prepareShards, resolveSources } from "../data/mod.ts";
import { benchDocuments } from "./tokenize_bench.ts";

/** One row: an encoder, its MB/s, and per-core MB/s beside tiktoken's. */
export interface PrepareBenchRow {
  /** `prepareShards gpt2 ×N workers` or `tiktoken r50k_base`. */
  readonly name: string;
  /** Threads that encoded. */
  readonly threads: number;
  /** Source MB per second (median of rounds). */
  readonly mbPerSec: number;
  /** Tokens per second (median of rounds). */
  readonly tokensPerSec: number;
  /** MB/s per thread over tiktoken's single-thread MB/s. */
  readonly perCoreVsTiktoken: number;
}

/** What {@link benchPrepare} measured. */
export interface PrepareBenchResult {
  /** Source bytes. */
  readonly bytes: number;
  /** Source files written for the run (each one document). */
  readonly files: number;
  /** Machine's logical cores (`navigator.hardwareConcurrency`). */
  readonly cores: number;
  /** One row per configuration. */
  readonly rows: readonly PrepareBenchRow[];
}

/** Writes ~`mb` MB of shuffled paragraphs as ~1 MB text files in `dir`; returns the documents. */
async function writeCorpus(dir: string, mb: number): Promise<string[]> {
  const { documents } = benchDocuments(mb);
  // Line ends as the text reader normalises them, so every encoder sees the same characters.
  const paragraphs = documents
    .flatMap((d) => d.replace(/\r\n?/g, "\n").replaceAll("\uFEFF", "").split(/\n\s*\n/))
    .filter((p) => p.trim() !== "");
  // A fixed shuffle (LCG) so every run times the same bytes.
  let s = 22;
  for (let i = paragraphs.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [paragraphs[i], paragraphs[j]] = [paragraphs[j]!, paragraphs[i]!];
  }
  const files: string[] = [];
  let current: string[] = [];
  let size = 0;
  for (const p of paragraphs) {
    current.push(p);
    size += p.length + 2;
    if (size >= 1e6) {
      files.push(current.join("\n\n"));
      current = [];
      size = 0;
    }
  }
  if (current.length > 0) files.push(current.join("\n\n"));
  await Promise.all(
    files.map((text, i) =>
      Deno.writeTextFile(path.join(dir, `part-${String(i).padStart(4, "0")}.txt`), text)
    ),
  );
  return files;
}

/**
 * Measures preparation with 1 worker and with `navigator.hardwareConcurrency` workers, and
 * tiktoken on the same documents, `rounds` alternating rounds each (median).
 *
 * @example
 * ```ts ignore
 * import { benchPrepare, prepareBenchTable } from "./prepare_bench.ts";
 * console.log(prepareBenchTable(await benchPrepare({ mb: 8, rounds: 1 })));
 * ```
 */
export async function benchPrepare(
  options: { readonly mb?: number; readonly rounds?: number } = {},
): Promise<PrepareBenchResult> {
  const cores = Math.max(1, navigator.hardwareConcurrency ?? 1);
  const rounds = Math.max(1, options.rounds ?? 2);
  const root = await Deno.makeTempDir({ prefix: "step-prepare-bench-" });
  try {
    const corpus = path.join(root, "corpus");
    await Deno.mkdir(corpus);
    const documents = await writeCorpus(corpus, options.mb ?? 24);
    const bytes = documents.reduce((n, d) => n + new TextEncoder().encode(d).length, 0);
    const units = await resolveSources([corpus], root)();
    if (E.isLeft(units)) throw new Error(units.left.message);
    const threads = [...new Set([1, cores])];
    const times: Record<string, number[]> = {};
    const tokens: Record<string, number> = {};
    for (let r = 0; r < rounds; r++) {
      for (const w of threads) {
        const key = `prepareShards gpt2 ×${w} worker${w === 1 ? "" : "s"}`;
        // A fresh cache each time: a hit would time nothing.
        const cacheDir = path.join(root, `cache-${r}-${w}`);
        const t0 = performance.now();
        const built = await prepareShards(units.right, "gpt2", { cacheDir, workers: w })();
        const seconds = (performance.now() - t0) / 1000;
        if (E.isLeft(built)) throw new Error(built.left.message);
        (times[key] ??= []).push(seconds);
        tokens[key] = built.right.manifest.tokens - built.right.manifest.documents;
        await Deno.remove(cacheDir, { recursive: true });
      }
      // A fresh encoder per round: tiktoken keeps no cache between calls, but be even-handed.
      const enc = get_encoding("r50k_base");
      try {
        const none: string[] = [];
        const t0 = performance.now();
        let n = 0;
        for (const d of documents) n += enc.encode(d, none, none).length;
        (times["tiktoken r50k_base"] ??= []).push((performance.now() - t0) / 1000);
        tokens["tiktoken r50k_base"] = n;
      } finally {
        enc.free();
      }
    }
    const mbps = (key: string) => bytes / 1e6 / median(times[key]!);
    const tiktoken = mbps("tiktoken r50k_base");
    const rows = Object.keys(times).map((name): PrepareBenchRow => {
      const t = name.startsWith("tiktoken") ? 1 : Number(name.match(/×(\d+)/)![1]);
      return {
        name,
        threads: t,
        mbPerSec: mbps(name),
        tokensPerSec: tokens[name]! / median(times[name]!),
        perCoreVsTiktoken: mbps(name) / t / tiktoken,
      };
    });
    if (new Set(Object.values(tokens)).size !== 1) {
      throw new Error(`The encoders disagree on the token count: ${JSON.stringify(tokens)}`);
    }
    return { bytes, files: documents.length, cores, rows };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** The result as a table. */
export function prepareBenchTable(r: PrepareBenchResult): string {
  const lines = [
    `Corpus preparation: ${(r.bytes / 1e6).toFixed(1)} MB of shuffled paragraphs in ${r.files} ` +
    `files, ${r.cores} cores; MB/s includes reading and writing the shards for prepareShards`,
    "configuration                     threads     MB/s   Mtok/s   MB/s per thread ÷ tiktoken",
  ];
  for (const row of r.rows) {
    lines.push(
      `${row.name.padEnd(33)} ${String(row.threads).padStart(7)} ${
        row.mbPerSec.toFixed(2).padStart(8)
      } ${(row.tokensPerSec / 1e6).toFixed(2).padStart(8)}   ${
        row.perCoreVsTiktoken.toFixed(2).padStart(6)
      }`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) console.log(prepareBenchTable(await benchPrepare()));
