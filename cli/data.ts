/**
 * `deno task data prepare CONFIG [--workers N]` and
 * `deno task data inspect CONFIG|SHARD_DIR [--sample N]`
 *
 * `prepare` tokenises a config's data sources (`data.source`, and `data.validation` when it
 * names sources) once into token shards under `data.cacheDir`, in parallel, with a progress
 * line on stderr, and prints where they are: exactly the shard sets a run of the config opens
 * (`loadCorpus`), so the run reads them from the cache; with weighted training sources that is
 * one set per source (`sourceGroups`). `inspect` prints a shard set's counts, the start of
 * a document decoded back, and how much of the vocabulary the corpus uses.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  contentInvalid,
  describeUnknown,
  exitCode,
  type FileError,
  formatBytes,
  ioFailed,
  type PipelineError,
  renderError,
} from "../base/mod.ts";
import {
  type DataSource,
  dtypeBytes,
  loadTokenizer,
  machineDefaultWorkers,
  openShardSet,
  type PreparedShards,
  prepareShards,
  progressPrinter,
  type ResolvedUnit,
  resolveSources,
  segmentAt,
  type ShardManifest,
  type ShardSet,
  shardSetDir,
  sourceGroups,
  type Tokenizer,
  tokenizerFor,
  TokenizerName,
} from "../data/mod.ts";
import { type DataSettings, type Pipeline, resolvedSources, runSeeds } from "../pipeline/mod.ts";
import { intFlag, parseCommand, type ParsedCommand } from "./_args.ts";
import { loadPipelineFile } from "./_pipeline_file.ts";

const USAGE = `Usage: deno task data prepare CONFIG [--workers N]
       deno task data inspect CONFIG|SHARD_DIR [--sample N]

prepare  tokenises the config's data sources (data.source, and data.validation when it names
         sources) into token shards under data.cacheDir (default .cache/tokens), in parallel,
         and prints where they are: the sets a run of the config reads (one per training
         source when any carries a weight); sources already prepared with the same tokenizer
         are not read again (a changed file is: its size and modification time are part of
         the key)
inspect  prints a shard set's documents, tokens, shards and bytes, the start of its first
         document decoded back, and the vocabulary's use (ids used, the 10 most frequent);
         given a CONFIG, the sets prepare made for it

CONFIG     a run config (.yaml with model/training/data sections) or a stage graph
           (.yaml/.json, or a .ts module exporting \`pipeline\`)
SHARD_DIR  a folder holding a shard set's manifest.json

Options:
  --workers N   tokenizer workers, each holding its own tokenizer (default: one per core, at
                most 8, and no more than fit in half the available memory at 400 MiB each:
                ${machineDefaultWorkers()} here); 1 tokenizes in this process
  --sample N    tokens of the sample document inspect decodes (default 200)
  -h, --help    show this help`;

const OPTIONS = {
  workers: { type: "string" },
  sample: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The config's data section and run seed, from whichever form the file takes. */
async function loadData(
  file: string,
): Promise<E.Either<PipelineError, { data: DataSettings; seed: number }>> {
  const pipeline = await loadPipelineFile(file);
  return E.map((p: Pipeline) => ({ data: p.data, seed: p.training.seed }))(pipeline);
}

/** A shard set of the config: its label, the field it comes from and its resolved units. */
interface Part {
  /** `train`, `train[i]` (the i-th of weighted sources) or `validation`. */
  readonly label: string;
  readonly field: string;
  readonly units: readonly ResolvedUnit[];
}

/**
 * The shard sets a run of the config opens, resolved: its training sources grouped as
 * `loadCorpus` groups them (`sourceGroups`: one set for all, or one per source when any carries
 * a `weight`), then, when it names them, its validation sources (one set).
 */
async function configParts(
  data: DataSettings,
  seed: number,
): Promise<E.Either<FileError | ConfigInvalid, Part[]>> {
  const how = {
    textField: data.textField,
    builtinBytes: data.builtinBytes,
    seed: runSeeds(seed).builtinCorpus,
  };
  const groups = sourceGroups(resolvedSources(data.source, how));
  const sets: (Omit<Part, "units"> & { sources: DataSource[] })[] = groups.map((sources, i) =>
    groups.length === 1
      ? { label: "train", field: "data.source", sources }
      : { label: `train[${i}]`, field: `data.source[${i}]`, sources }
  );
  if (data.validation !== undefined) {
    sets.push({
      label: "validation",
      field: "data.validation",
      sources: resolvedSources(data.validation, how),
    });
  }
  const parts: Part[] = [];
  for (const { label, field, sources } of sets) {
    const units = await resolveSources(sources, Deno.cwd())();
    if (E.isLeft(units)) {
      return E.left(
        units.left._tag === "ConfigInvalid" ? configInvalid(field, units.left.message) : units.left,
      );
    }
    parts.push({ label, field, units: units.right });
  }
  return E.right(parts);
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

function describeSet(m: ShardManifest): string {
  return `${count(m.documents)} documents, ${count(m.tokens)} tokens, ${m.shards.length} shard${
    m.shards.length === 1 ? "" : "s"
  }, from ${formatBytes(m.sourceBytes)}`;
}

async function prepare(file: string, p: ParsedCommand): Promise<E.Either<PipelineError, void>> {
  const workers = intFlag(p, "workers", 1);
  if (E.isLeft(workers)) return workers;
  const loaded = await loadData(file);
  if (E.isLeft(loaded)) return loaded;
  const { data, seed } = loaded.right;
  const parts = await configParts(data, seed);
  if (E.isLeft(parts)) return parts;
  const terminal = Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  for (const part of parts.right) {
    const started = performance.now();
    const print = progressPrinter((line, final) => {
      const text = `${part.label}: ${line}`;
      if (terminal) Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${text}${final ? "\n" : ""}`));
      else console.error(text);
    }, terminal ? 250 : 10_000);
    const built: E.Either<PipelineError, PreparedShards> = await prepareShards(
      part.units,
      data.tokenizer,
      {
        cacheDir: data.cacheDir,
        field: part.field,
        ...(workers.right === undefined ? {} : { workers: workers.right }),
        progress: print,
      },
    )();
    if (E.isLeft(built)) return built;
    const { dir, manifest, fromCache } = built.right;
    const how = fromCache
      ? "already prepared"
      : `prepared in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    console.log(`${part.label}: ${dir} (${describeSet(manifest)}; ${how})`);
  }
  return E.right(undefined);
}

/** The tokeniser a manifest names, when it is one this program knows by name. */
async function tokenizerNamed(name: string): Promise<Tokenizer | undefined> {
  const spec = name === "gpt2-r50k_base" ? "gpt2" : name;
  if (!TokenizerName.is(spec)) return undefined;
  const t = await tokenizerFor(spec)();
  return E.isRight(t) && t.right.name === name ? t.right : undefined;
}

/** Tokens read at a time while counting. */
const COUNT_CHUNK = 1 << 18;

/** Counts of every id over the whole set, read a chunk at a time. */
function idCounts(set: ShardSet): E.Either<FileError, Float64Array> {
  const m = set.manifest;
  const counts = new Float64Array(m.vocabSize);
  const buf = new Int32Array(Math.min(COUNT_CHUNK, m.tokens));
  for (let start = 0; start < m.tokens; start += buf.length) {
    const n = Math.min(buf.length, m.tokens - start);
    try {
      set.read(start, n, buf);
    } catch (e) {
      return E.left(ioFailed(set.dir, `Cannot read the token shards: ${describeUnknown(e)}`));
    }
    for (let i = 0; i < n; i++) {
      const id = buf[i]!;
      if (!(id >= 0 && id < m.vocabSize)) {
        const shard = set.files[segmentAt(set.shardStarts, start + i)]!;
        return E.left(contentInvalid(shard, `id ${id} is not below vocabSize ${m.vocabSize}`));
      }
      counts[id]!++;
    }
  }
  return E.right(counts);
}

/** The first `n` tokens of the set's first document, and its length. */
function sample(set: ShardSet, n: number): E.Either<FileError, { ids: number[]; length: number }> {
  const length = set.docEnds[0];
  if (length === undefined) return E.right({ ids: [], length: 0 });
  const ids = new Int32Array(Math.min(n, length));
  try {
    set.read(0, ids.length, ids);
  } catch (e) {
    return E.left(ioFailed(set.files[0]!, `Cannot read the token shards: ${describeUnknown(e)}`));
  }
  return E.right({ ids: Array.from(ids), length });
}

function indent(text: string): string {
  return text.split("\n").map((l) => `  | ${l}`).join("\n");
}

async function inspectSet(
  label: string,
  dir: string,
  sampleTokens: number,
  given?: Tokenizer,
): Promise<E.Either<PipelineError, void>> {
  const opened = await openShardSet(dir)();
  if (E.isLeft(opened)) return opened;
  const set = opened.right;
  const manifest = set.manifest;
  // openShardSet checked every file's size against the manifest.
  const onDisk = manifest.tokens * dtypeBytes(manifest.dtype) + manifest.documents * 8;
  const tokenizer = given ?? await tokenizerNamed(manifest.tokenizer);
  const lines = [
    `${label}${dir}`,
    `  tokenizer   ${manifest.tokenizer} (vocabulary ${
      count(manifest.vocabSize)
    }, end of document ${manifest.eot}), stored as ${manifest.dtype}`,
    `  documents   ${count(manifest.documents)}`,
    `  tokens      ${count(manifest.tokens)} (${
      manifest.documents === 0 ? 0 : count(Math.round(manifest.tokens / manifest.documents))
    } per document on average)`,
    `  shards      ${manifest.shards.length}, ${formatBytes(onDisk)} on disk`,
    `  source      ${formatBytes(manifest.sourceBytes)}, ${
      manifest.sourceBytes === 0 ? "–" : (manifest.tokens / manifest.sourceBytes).toFixed(3)
    } tokens per byte`,
  ];
  const first = sample(set, sampleTokens);
  if (E.isLeft(first)) return first;
  const { ids, length } = first.right;
  if (ids.length > 0) {
    lines.push(
      `Sample: the first ${count(ids.length)} of ${count(length)} tokens of document 1, ${
        tokenizer === undefined ? "as ids (the tokenizer is not known by name)" : "decoded"
      }:`,
      indent(tokenizer === undefined ? ids.join(" ") : tokenizer.decode(ids)),
    );
  }
  const counts = idCounts(set);
  if (E.isLeft(counts)) return counts;
  const used = counts.right.reduce((s, c) => s + (c > 0 ? 1 : 0), 0);
  const top = Array.from(counts.right.keys()).filter((id) => counts.right[id]! > 0)
    .sort((a, b) => counts.right[b]! - counts.right[a]! || a - b).slice(0, 10);
  lines.push(
    `Vocabulary: ${count(used)} of ${count(manifest.vocabSize)} ids used (${
      (100 * used / manifest.vocabSize).toFixed(1)
    }%); the ${top.length} most frequent:`,
    ...top.map((id) =>
      `  ${String(id).padStart(7)}  ${
        ((100 * counts.right[id]!) / Math.max(1, manifest.tokens)).toFixed(2).padStart(6)
      }%  ${tokenizer === undefined ? "" : JSON.stringify(tokenizer.decode([id]))}`
    ),
  );
  console.log(lines.join("\n"));
  return E.right(undefined);
}

async function inspect(target: string, p: ParsedCommand): Promise<E.Either<PipelineError, void>> {
  const n = intFlag(p, "sample", 1);
  if (E.isLeft(n)) return n;
  const sampleTokens = n.right ?? 200;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(target);
  } catch (e) {
    return E.left(
      ioFailed(
        target,
        e instanceof Deno.errors.NotFound ? "no such file or folder" : describeUnknown(e),
      ),
    );
  }
  if (info.isDirectory) return await inspectSet("Token shards: ", target, sampleTokens);
  const loaded = await loadData(target);
  if (E.isLeft(loaded)) return loaded;
  const { data, seed } = loaded.right;
  const parts = await configParts(data, seed);
  if (E.isLeft(parts)) return parts;
  const t = await loadTokenizer(data.tokenizer)();
  if (E.isLeft(t)) return t;
  for (const [i, part] of parts.right.entries()) {
    const { dir } = await shardSetDir(part.units, t.right, data.cacheDir);
    try {
      await Deno.stat(`${dir}/manifest.json`);
    } catch {
      return E.left(
        ioFailed(
          dir,
          `no token shards prepared for ${part.field}: run \`deno task data prepare ${target}\` first`,
        ),
      );
    }
    if (i > 0) console.log("");
    const shown = await inspectSet(`${part.label} (${part.field}): `, dir, sampleTokens, t.right);
    if (E.isLeft(shown)) return shown;
  }
  return E.right(undefined);
}

/** Runs `deno task data` with `argv`; the exit code (docs/errors.md). */
export async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS);
  if (E.isRight(parsed) && parsed.right.values.help === true) {
    console.log(USAGE);
    return 0;
  }
  let result: E.Either<PipelineError, void>;
  if (E.isLeft(parsed)) result = parsed;
  else {
    const [command, target, ...rest] = parsed.right.positionals;
    result = command === undefined || target === undefined || rest.length > 0
      ? E.left(
        configInvalid("command line", "expected `prepare CONFIG` or `inspect CONFIG|SHARD_DIR`"),
      )
      : command === "prepare"
      ? await prepare(target, parsed.right)
      : command === "inspect"
      ? await inspect(target, parsed.right)
      : E.left(
        configInvalid("command line", `unknown command "${command}": expected prepare or inspect`),
      );
  }
  if (E.isLeft(result)) {
    console.error(renderError(result.left));
    return exitCode(result.left);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
