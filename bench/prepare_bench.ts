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
  /**
   * MB per CPU second the OS charged the process (all threads): what a core does, whatever
   * else the machine runs meanwhile.
   */
  readonly mbPerCpuSecond: number;
  /** {@link mbPerCpuSecond} over tiktoken's. */
  readonly perCpuVsTiktoken: number;
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

/** One measurement in a child process: `workers` 0 means tiktoken on the same documents. */
async function childRun(
  corpus: string,
  workers: number,
  cacheDir: string,
): Promise<{ seconds: number; cpuSeconds: number; tokens: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--child",
      corpus,
      String(workers),
      cacheDir,
    ],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`the measurement with ${workers} workers failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * CPU seconds this process (all its threads, workers included) has used, from the OS
 * (`/proc/self/stat` utime + stime, in clock ticks of 1/100 s); NaN where there is no procfs.
 */
function cpuSeconds(): number {
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * The child's side of {@link childRun}: prints `{ seconds, cpuSeconds, tokens }` (EOS ids left
 * out).
 */
async function measureOnce(corpus: string, workers: number, cacheDir: string): Promise<void> {
  const units = await resolveSources([corpus], ".")();
  if (E.isLeft(units)) throw new Error(units.left.message);
  if (workers === 0) {
    const documents: string[] = [];
    for (const u of units.right) {
      if (u.kind === "file") documents.push(await Deno.readTextFile(u.path));
    }
    const enc = get_encoding("r50k_base");
    const none: string[] = [];
    const c0 = cpuSeconds();
    const t0 = performance.now();
    let n = 0;
    for (const d of documents) n += enc.encode(d, none, none).length;
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds() - c0;
    enc.free();
    console.log(JSON.stringify({ seconds, cpuSeconds: cpu, tokens: n }));
    return;
  }
  const c0 = cpuSeconds();
  const t0 = performance.now();
  const built = await prepareShards(units.right, "gpt2", { cacheDir, workers })();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - c0;
  if (E.isLeft(built)) throw new Error(built.left.message);
  const m = built.right.manifest;
  console.log(JSON.stringify({ seconds, cpuSeconds: cpu, tokens: m.tokens - m.documents }));
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
    const threads = [...new Set([1, cores])];
    const times: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    const tokens: Record<string, number> = {};
    for (let r = 0; r < rounds; r++) {
      // Each measurement in a fresh process: tokenisers keep word caches (ours, and
      // gpt-tokenizer's own), so a second pass in one process would time warm caches.
      for (const w of [...threads, 0]) {
        const key = w === 0
          ? "tiktoken r50k_base"
          : `prepareShards gpt2 ×${w} worker${w === 1 ? "" : "s"}`;
        const cacheDir = path.join(root, `cache-${r}-${w}`);
        const child = await childRun(corpus, w, cacheDir);
        (times[key] ??= []).push(child.seconds);
        (cpu[key] ??= []).push(child.cpuSeconds);
        tokens[key] = child.tokens;
        await Deno.remove(cacheDir, { recursive: true }).catch(() => undefined);
      }
    }
    const mbps = (key: string) => bytes / 1e6 / median(times[key]!);
    const mbPerCpu = (key: string) => bytes / 1e6 / median(cpu[key]!);
    const tiktoken = mbps("tiktoken r50k_base");
    const tiktokenCpu = mbPerCpu("tiktoken r50k_base");
    const rows = Object.keys(times).map((name): PrepareBenchRow => {
      const t = name.startsWith("tiktoken") ? 1 : Number(name.match(/×(\d+)/)![1]);
      return {
        name,
        threads: t,
        mbPerSec: mbps(name),
        tokensPerSec: tokens[name]! / median(times[name]!),
        perCoreVsTiktoken: mbps(name) / t / tiktoken,
        mbPerCpuSecond: mbPerCpu(name),
        perCpuVsTiktoken: mbPerCpu(name) / tiktokenCpu,
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
    "configuration                     threads     MB/s   Mtok/s   MB/s per thread ÷ tiktoken" +
    "   MB per CPU-s   ÷ tiktoken",
  ];
  for (const row of r.rows) {
    lines.push(
      `${row.name.padEnd(33)} ${String(row.threads).padStart(7)} ${
        row.mbPerSec.toFixed(2).padStart(8)
      } ${(row.tokensPerSec / 1e6).toFixed(2).padStart(8)}   ${
        row.perCoreVsTiktoken.toFixed(2).padStart(6)
      }                       ${row.mbPerCpuSecond.toFixed(2).padStart(8)}   ${
        row.perCpuVsTiktoken.toFixed(2).padStart(6)
      }`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") {
    await measureOnce(Deno.args[1]!, Number(Deno.args[2]), Deno.args[3]!);
  } else console.log(prepareBenchTable(await benchPrepare()));
}
