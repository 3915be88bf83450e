/**
 * Tokenise once into binary token shards on disk, in parallel, in bounded memory.
 *
 * {@link prepareShards} reads the sources in order as streamed pieces (`stream_sources.ts`),
 * groups them into work items of about `itemBytes` (1 MiB by default; a text piece may make one
 * up to 4 MiB), has them encoded by `workers` Web Workers (`tokenize_worker.ts`), and writes
 * the results back in source order: the output is byte for byte the same whatever the number
 * of workers, and (for regex pre-tokenisers: see `stream_sources.ts`) whatever the chunk size.
 * At most two items per worker are in flight, and tokens go straight from an item to the open
 * shard file, so memory stays bounded by a few items whatever the corpus size.
 *
 * The set, in `<cacheDir>/<32 hex of SHA-256(key)>/` (the format `data/shard_set.ts` reads):
 * - `NNNNN.tok`: little-endian uint16 ids (uint32 when the vocabulary exceeds 65,536), whole
 *   documents back to back in source order, each `[bos] + ids + [eos]`. A document never
 *   straddles two shards; a shard is closed at the first document end at or past
 *   `shardTokens` (default 2^26).
 * - `NNNNN.docs`: little-endian float64, the end (exclusive, within the shard) of each
 *   document.
 * - `manifest.json`, written last: the set is complete iff it exists.
 *
 * The key covers the format version, the tokeniser (name, vocabulary size, EOS, BOS) and every
 * resolved source (absolute path, size, modification time, format, field, Gutenberg cut) or the
 * built-in corpus parameters; not the validation split or the seed, which are views made when
 * reading. A set is built in `<hash>.tmp-<pid>-<random>/` beside it and renamed into place; a
 * temporary directory left by a killed build (its process gone) is removed by the next build.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import {
  type ConfigInvalid,
  configInvalid,
  contentInvalid,
  decodeWith,
  describeUnknown,
  type ext,
  type FileError,
  ioFailed,
} from "../base/mod.ts";
import { writeAll } from "../store/mod.ts";
import type { ResolvedUnit } from "./sources.ts";
import { DEFAULT_CHUNK_BYTES, streamDocuments, unitBytes } from "./stream_sources.ts";
import {
  dtypeBytes,
  manifestProblem,
  SHARD_FORMAT,
  SHARD_FORMAT_VERSION,
  SHARD_MANIFEST,
  type ShardEntry,
  ShardManifest,
} from "./shard_set.ts";
import type { Tokenizer } from "./tokenizer.ts";
import {
  BUILTIN_FACTS,
  type EncodedItem,
  encodeItem,
  factsOf,
  FIRST,
  type FromWorker,
  LAST,
  loadTokenizerSpec,
  type TokenizerFacts,
  type ToWorker,
  type WorkItem,
} from "./_shard_item.ts";

/** Tokens after which a shard is closed (at the next document end): 2^26 (128 MiB of uint16). */
export const DEFAULT_SHARD_TOKENS: number = 2 ** 26;

/**
 * Memory allowed per tokenising worker: each loads its own tokeniser, whose tables and caches
 * measured about 250–300 MB resident for GPT-2, 190 MB for LLaMA-3.1's `tokenizer.json` and
 * 65 MB for Mistral's; 400 MiB leaves room for the items in flight.
 */
export const WORKER_MEMORY_BYTES: number = 400 * 2 ** 20;

/** The most workers {@link defaultWorkers} gives (more may be asked for: `workers`, `--workers`). */
export const MAX_DEFAULT_WORKERS = 8;

/**
 * The default number of tokenising workers: one per core, at most {@link MAX_DEFAULT_WORKERS},
 * and no more than fit in half of the memory available now at {@link WORKER_MEMORY_BYTES}
 * each (the other half is left to the rest of the process and the machine); at least 1.
 * `availableBytes` undefined (not known) leaves memory out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultWorkers } from "./shard_build.ts";
 * assert(defaultWorkers(16, 64 * 2 ** 30) === 8);
 * assert(defaultWorkers(16, 2 * 2 ** 30) === 2); // 1 GiB of it for workers: 2 × 400 MiB
 * assert(defaultWorkers(4, 100 * 2 ** 20) === 1);
 * ```
 */
export function defaultWorkers(cores: number, availableBytes: number | undefined): number {
  const byCores = Number.isFinite(cores) ? Math.floor(cores) : 1;
  const byMemory = availableBytes === undefined || !Number.isFinite(availableBytes)
    ? Infinity
    : Math.floor(availableBytes / 2 / WORKER_MEMORY_BYTES);
  return Math.max(1, Math.min(byCores, MAX_DEFAULT_WORKERS, byMemory));
}

/**
 * {@link defaultWorkers} for this machine: `navigator.hardwareConcurrency` cores and
 * `Deno.systemMemoryInfo().available` bytes (left out when the `sys` permission is not given).
 */
export function machineDefaultWorkers(): number {
  let available: number | undefined;
  try {
    available = Deno.systemMemoryInfo().available;
  } catch {
    available = undefined;
  }
  return defaultWorkers(navigator.hardwareConcurrency ?? 1, available);
}

/** Where a build stands; passed to {@link PrepareShardsOptions.progress}. */
export interface PrepareProgress {
  /** Source bytes read and tokenised so far (compressed bytes for a compressed file). */
  readonly bytesRead: number;
  /** Bytes of all the sources. */
  readonly totalBytes: number;
  /** Tokens written. */
  readonly tokens: number;
  /** Documents written. */
  readonly documents: number;
  /** Milliseconds since the build started. */
  readonly elapsedMs: number;
  /** True on the last call, once the set is complete. */
  readonly done: boolean;
}

/** How {@link prepareShards} builds. */
export interface PrepareShardsOptions {
  /** The folder holding shard sets (a run config's `data.cacheDir`, `.cache/tokens`). */
  readonly cacheDir: string;
  /**
   * Web Workers encoding in parallel, each holding its own tokeniser (1: encoding in this
   * process). Default {@link machineDefaultWorkers}: one per core, at most 8, and no more than
   * fit in half of the memory available at 400 MiB each, at least 1.
   */
  readonly workers?: number;
  /** Tokens after which a shard closes at the next document end (default 2^26). */
  readonly shardTokens?: number;
  /** Bytes read at a time and text piece size (default 1 MiB; tests force it tiny). */
  readonly chunkBytes?: number;
  /** Text (UTF-16 units) per work item (default 1 MiB). */
  readonly itemBytes?: number;
  /** The config field the units come from, named when they hold no document (default `data.source`). */
  readonly field?: string;
  /** Called after every written item and once at the end (`done: true`). */
  readonly progress?: (p: PrepareProgress) => void;
}

/** A complete shard set. */
export interface PreparedShards {
  /** The set's directory. */
  readonly dir: string;
  /** Its manifest. */
  readonly manifest: ShardManifest;
  /** True when the set existed already (same key) and nothing was read. */
  readonly fromCache: boolean;
}

/**
 * The key a shard set is cached under: format version, tokeniser facts, the resolved units.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shardSetKey } from "./shard_build.ts";
 * const units = [{ kind: "builtin", seed: 1, version: 1 }] as const;
 * const bytes = { name: "bytes", vocabSize: 257, eot: 256 };
 * assert(shardSetKey(units, bytes) !== shardSetKey(units, { ...bytes, bos: 1 }));
 * ```
 */
export function shardSetKey(
  units: readonly ResolvedUnit[],
  tokenizer: {
    readonly name: string;
    readonly vocabSize: number;
    readonly eot: number;
    readonly bos?: number;
  },
): string {
  return JSON.stringify({
    format: SHARD_FORMAT,
    version: SHARD_FORMAT_VERSION,
    tokenizer: {
      name: tokenizer.name,
      vocabSize: tokenizer.vocabSize,
      eot: tokenizer.eot,
      bos: tokenizer.bos ?? null,
    },
    units,
  });
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The directory a shard set of `units` tokenised by `tokenizer` has (or would have) under
 * `cacheDir`, and its key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shardSetDir } from "./shard_build.ts";
 * import { byteTokenizer } from "./tokenizer.ts";
 * const at = await shardSetDir([{ kind: "builtin", seed: 1, version: 1 }], byteTokenizer(), "c");
 * assert(/^c\/[0-9a-f]{32}$/.test(at.dir));
 * ```
 */
export function shardSetDir(
  units: readonly ResolvedUnit[],
  tokenizer: Tokenizer,
  cacheDir: string,
): Promise<{ readonly dir: string; readonly key: string }> {
  return locate(units, factsOf(tokenizer), cacheDir);
}

async function locate(
  units: readonly ResolvedUnit[],
  facts: TokenizerFacts,
  cacheDir: string,
): Promise<{ readonly dir: string; readonly key: string }> {
  const key = shardSetKey(units, facts);
  return { dir: path.join(cacheDir, (await sha256Hex(key)).slice(0, 32)), key };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The manifest of the complete set in `dir` with this `key`: decoded with `shard_set.ts`'s codec,
 * consistent (`manifestProblem`), and every shard file of the size it gives. Otherwise why not,
 * naming the file: `IoFailed` when there is no manifest (no complete set), `ContentInvalid` for
 * a damaged set or another key's; the caller then builds the set anew. The document tables are
 * checked by `openShardSet` when the set is read.
 */
async function completeSet(
  dir: string,
  key: string,
): Promise<ext.Either<FileError, ShardManifest>> {
  const file = path.join(dir, SHARD_MANIFEST);
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    return E.left(
      e instanceof SyntaxError
        ? contentInvalid(file, `Not valid JSON: ${e.message}`)
        : ioFailed(file, `Cannot read the shard manifest: ${describeUnknown(e)}`),
    );
  }
  const decoded = decodeWith(ShardManifest, json);
  if (E.isLeft(decoded)) {
    return E.left(contentInvalid(file, `Not a token shard manifest: ${decoded.left.join("; ")}`));
  }
  const m = decoded.right;
  const problem = manifestProblem(m);
  if (problem !== undefined) {
    return E.left(contentInvalid(file, `Inconsistent shard manifest: ${problem}`));
  }
  if (m.key !== key) return E.left(contentInvalid(file, "A shard set of another key"));
  const width = dtypeBytes(m.dtype);
  for (const s of m.shards) {
    for (const [name, bytes] of [[s.file, s.tokens * width], [s.docs, s.documents * 8]] as const) {
      const at = path.join(dir, name);
      let size: number;
      try {
        size = (await Deno.stat(at)).size;
      } catch (e) {
        return E.left(contentInvalid(at, `Damaged token shard set: ${describeUnknown(e)}`));
      }
      if (size !== bytes) {
        return E.left(
          contentInvalid(
            at,
            `Damaged token shard set: the file has ${size} bytes, the manifest says ${bytes}`,
          ),
        );
      }
    }
  }
  return E.right(m);
}

/** Whether process `pid` runs (Linux `/proc`; elsewhere every other process counts as gone). */
function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Removes `<hash>.tmp-<pid>-…` directories whose building process is gone. */
async function removeStaleBuilds(cacheDir: string, hash: string): Promise<void> {
  const pattern = new RegExp(`^${hash}\\.tmp-(\\d+)-`);
  for await (const e of Deno.readDir(cacheDir)) {
    const m = pattern.exec(e.name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === Deno.pid || processAlive(pid)) continue; // ours, or a build still running
    await Deno.remove(path.join(cacheDir, e.name), { recursive: true }).catch(() => undefined);
  }
}

/** Encodes work items, in process or in workers; results come back as promises, in any order. */
interface Encoder {
  /** Items that may usefully wait encoded or in flight at once. */
  readonly capacity: number;
  encode(item: WorkItem): Promise<ext.Either<string, EncodedItem>>;
  close(): void;
}

function inProcessEncoder(t: Tokenizer, wide: boolean): Encoder {
  return {
    capacity: 1,
    encode: (item) => Promise.resolve(encodeItem(t, item, wide)),
    close: () => {},
  };
}

/** A worker and the items it has been sent, by id, waiting for their tokens. */
interface Slot {
  readonly worker: Worker;
  readonly waiting: Map<number, (r: ext.Either<string, EncodedItem>) => void>;
}

/**
 * Starts `n` workers, each loading the tokeniser from `spec` (each stores ids as uint32 iff its
 * vocabulary exceeds 65,536); the facts each reports once loaded, or the first failure (then
 * every one started is stopped).
 */
async function spawnWorkers(
  spec: string,
  n: number,
): Promise<ext.Either<FileError | ConfigInvalid, { slots: Slot[]; facts: TokenizerFacts[] }>> {
  const url = new URL("./tokenize_worker.ts", import.meta.url).href;
  const slots: Slot[] = Array.from({ length: n }, () => ({
    worker: new Worker(url, { type: "module" }),
    waiting: new Map(),
  }));
  const ready = slots.map((slot) =>
    new Promise<ext.Either<FileError | ConfigInvalid, TokenizerFacts>>((resolve) => {
      const fail = (message: string): void => {
        resolve(E.left(configInvalid("data.tokenizer", message)));
        for (const w of slot.waiting.values()) w(E.left(message));
        slot.waiting.clear();
      };
      slot.worker.onmessage = (event: MessageEvent<FromWorker>) => {
        const m = event.data;
        if (m.kind === "ready") resolve(E.right(m.facts));
        else if (m.kind === "unloaded") resolve(E.left(m.error));
        else {
          const w = slot.waiting.get(m.id);
          slot.waiting.delete(m.id);
          w?.(m.kind === "encoded" ? E.right(m.item) : E.left(m.message));
        }
      };
      slot.worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        fail(`a tokenizer worker failed: ${event.message}`);
      };
      const init: ToWorker = { kind: "init", spec };
      slot.worker.postMessage(init);
    })
  );
  const facts: TokenizerFacts[] = [];
  for (const r of await Promise.all(ready)) {
    if (E.isLeft(r)) {
      slots.forEach((s) => s.worker.terminate());
      return r;
    }
    facts.push(r.right);
  }
  return E.right({ slots, facts });
}

/** Encoding by workers: an item goes to the worker with the fewest items waiting. */
function workerEncoder(slots: readonly Slot[]): Encoder {
  let nextId = 0;
  return {
    capacity: 2 * slots.length,
    encode: (item) =>
      new Promise((resolve) => {
        const slot = slots.reduce((a, b) => (b.waiting.size < a.waiting.size ? b : a));
        const id = nextId++;
        slot.waiting.set(id, resolve);
        const message: ToWorker = { kind: "encode", id, item };
        slot.worker.postMessage(message);
      }),
    close: () => slots.forEach((s) => s.worker.terminate()),
  };
}

/** Writes encoded items into shard files, closing a shard at the first document end past the target. */
function shardWriter(dir: string, wide: boolean, target: number) {
  const width = wide ? 4 : 2;
  const shards: ShardEntry[] = [];
  const docTable = new Float64Array(8192);
  let docCount = 0; // entries of docTable not yet written
  let tok: Deno.FsFile | undefined;
  let docs: Deno.FsFile | undefined;
  let shardTokens = 0;
  let shardDocs = 0;
  let tokens = 0;
  let documents = 0;
  const name = (i: number, ext: string): string => `${String(i).padStart(5, "0")}.${ext}`;
  const open = async (): Promise<void> => {
    const options = { write: true, createNew: true } as const;
    tok = await Deno.open(path.join(dir, name(shards.length, "tok")), options);
    docs = await Deno.open(path.join(dir, name(shards.length, "docs")), options);
  };
  const flushDocs = async (): Promise<void> => {
    if (docCount === 0) return;
    await writeAll(docs!, new Uint8Array(docTable.buffer, 0, docCount * 8));
    docCount = 0;
  };
  const writeTokens = async (ids: Uint16Array | Uint32Array, from: number, to: number) => {
    if (to > from) {
      await writeAll(
        tok!,
        new Uint8Array(ids.buffer, ids.byteOffset + from * width, (to - from) * width),
      );
    }
  };
  const closeShard = async (): Promise<void> => {
    await flushDocs();
    tok!.close();
    docs!.close();
    tok = docs = undefined;
    shards.push({
      file: name(shards.length, "tok"),
      docs: name(shards.length, "docs"),
      tokens: shardTokens,
      documents: shardDocs,
    });
    shardTokens = shardDocs = 0;
  };
  return {
    totals: () => ({ tokens, documents }),
    /** Appends an item's tokens; its first tokens may continue the previous item's document. */
    async append(item: EncodedItem): Promise<void> {
      let from = 0; // first token of the item not yet written
      let at = 0; // tokens of the item counted into the shard
      for (const end of item.ends) {
        if (tok === undefined) await open();
        shardTokens += end - at;
        tokens += end - at;
        at = end;
        docTable[docCount++] = shardTokens;
        shardDocs++;
        documents++;
        if (docCount === docTable.length) await flushDocs();
        if (shardTokens >= target) {
          await writeTokens(item.tokens, from, end);
          from = end;
          await closeShard();
        }
      }
      if (at < item.tokens.length) {
        if (tok === undefined) await open();
        shardTokens += item.tokens.length - at;
        tokens += item.tokens.length - at;
      }
      await writeTokens(item.tokens, from, item.tokens.length);
    },
    /** Closes the last shard; the shards written. */
    async finish(): Promise<ShardEntry[]> {
      if (tok !== undefined) await closeShard();
      return shards;
    },
    /** Closes whatever is open (after a failure; the directory is then removed). */
    abort(): void {
      tok?.close();
      docs?.close();
      tok = docs = undefined;
    },
  };
}

const DONE = true;
const NOT_DONE = false;

/** Reads, encodes and writes the set into `dir`; the manifest last. */
async function build(
  units: readonly ResolvedUnit[],
  encoder: Encoder,
  facts: TokenizerFacts,
  dir: string,
  key: string,
  options: PrepareShardsOptions,
): Promise<ext.Either<FileError | ConfigInvalid, ShardManifest>> {
  const wide = facts.vocabSize > 65536;
  const writer = shardWriter(dir, wide, options.shardTokens ?? DEFAULT_SHARD_TOKENS);
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const itemChars = Math.max(1, options.itemBytes ?? DEFAULT_CHUNK_BYTES);
  const started = performance.now();
  const totalBytes = units.reduce((s, u) => s + unitBytes(u), 0);
  let bytesRead = 0;
  const report = (bytes: number, done: boolean): void =>
    options.progress?.({
      bytesRead: bytes,
      totalBytes,
      ...writer.totals(),
      elapsedMs: performance.now() - started,
      done,
    });
  const inFlight: { result: Promise<ext.Either<string, EncodedItem>>; bytesAt: number }[] = [];
  /** Writes finished items in order until at most `keep` are in flight. */
  const drain = async (keep: number): Promise<ext.Either<ConfigInvalid, void>> => {
    while (inFlight.length > keep) {
      const next = inFlight.shift()!;
      const r = await next.result;
      if (E.isLeft(r)) return E.left(configInvalid("data.tokenizer", `${facts.name}: ${r.left}`));
      await writer.append(r.right);
      report(next.bytesAt, NOT_DONE);
    }
    return E.right(undefined);
  };
  let texts: string[] = [];
  let flags: number[] = [];
  let size = 0;
  const submit = async (): Promise<ext.Either<ConfigInvalid, void>> => {
    if (texts.length === 0) return E.right(undefined);
    const item: WorkItem = { texts, flags: Uint8Array.from(flags) };
    texts = [];
    flags = [];
    size = 0;
    inFlight.push({ result: encoder.encode(item), bytesAt: bytesRead });
    return await drain(encoder.capacity - 1);
  };
  try {
    for (const unit of units) {
      let first = true;
      const onBytes = (n: number): void => {
        bytesRead += n;
      };
      for await (const r of streamDocuments(unit, { chunkBytes, onBytes })) {
        if (E.isLeft(r)) return r;
        texts.push(r.right.text);
        flags.push((first ? FIRST : 0) | (r.right.last ? LAST : 0));
        first = r.right.last;
        size += r.right.text.length;
        if (size >= itemChars) {
          const written = await submit();
          if (E.isLeft(written)) return written;
        }
      }
    }
    const last = await submit();
    if (E.isLeft(last)) return last;
    const drained = await drain(0);
    if (E.isLeft(drained)) return drained;
    const shards = await writer.finish();
    const { tokens, documents } = writer.totals();
    if (documents === 0) {
      const names = units.map((u) => (u.kind === "file" ? `"${u.path}"` : "the built-in corpus"));
      const shown = names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : "");
      return E.left(
        configInvalid(
          options.field ?? "data.source",
          `${shown || "no sources"}: no non-empty documents`,
        ),
      );
    }
    const manifest: ShardManifest = {
      format: SHARD_FORMAT,
      version: SHARD_FORMAT_VERSION,
      key,
      tokenizer: facts.name,
      vocabSize: facts.vocabSize,
      eot: facts.eot,
      dtype: wide ? "uint32" : "uint16",
      tokens,
      documents,
      sourceBytes: totalBytes,
      shards,
    };
    await Deno.writeTextFile(path.join(dir, SHARD_MANIFEST), JSON.stringify(manifest, null, 1));
    report(totalBytes, DONE);
    return E.right(manifest);
  } catch (e) {
    return E.left(ioFailed(dir, `Cannot write token shards: ${describeUnknown(e)}`));
  } finally {
    writer.abort();
    // Items still in flight after a failure are dropped with their workers.
    await Promise.allSettled(inFlight.map((f) => f.result));
  }
}

/**
 * Tokenises `units` into a shard set under `options.cacheDir` (see the module doc), or finds it
 * there already built with the same key. `tokenizer` is a spec (`bytes`, `gpt2`; a
 * `tokenizer.json` path once `loadTokenizer` lands), which every worker loads for itself, or a
 * loaded tokeniser: then workers load it by its spec when it is a built-in one, else encoding
 * runs in this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { prepareShards } from "./shard_build.ts";
 * const cacheDir = await Deno.makeTempDir();
 * const units = [{ kind: "builtin", seed: 1, documents: 5, version: 1 }] as const;
 * const r = await prepareShards(units, "bytes", { cacheDir, workers: 1 })();
 * assert(r._tag === "Right" && r.right.manifest.documents === 5 && !r.right.fromCache);
 * const again = await prepareShards(units, "bytes", { cacheDir })();
 * assert(again._tag === "Right" && again.right.fromCache);
 * await Deno.remove(cacheDir, { recursive: true });
 * ```
 */
export function prepareShards(
  units: readonly ResolvedUnit[],
  tokenizer: string | Tokenizer,
  options: PrepareShardsOptions,
): ext.TaskEither<FileError | ConfigInvalid, PreparedShards> {
  return async () => {
    const wanted = Math.max(1, Math.floor(options.workers ?? machineDefaultWorkers()));
    const parallel = wanted > 1 &&
      (typeof tokenizer === "string" || tokenizer.spec !== undefined);
    let spec: string | undefined;
    let loaded: Tokenizer | undefined; // in this process: only when it encodes here
    let early: Slot[] = []; // a worker started to learn what the key holds
    let facts: TokenizerFacts;
    if (typeof tokenizer !== "string") {
      loaded = tokenizer;
      spec = tokenizer.spec;
      facts = factsOf(tokenizer);
    } else if (!parallel) {
      const made = await loadTokenizerSpec(tokenizer)();
      if (E.isLeft(made)) return made;
      loaded = made.right;
      facts = factsOf(loaded);
    } else {
      spec = tokenizer;
      // Workers load the tables; this process needs only the facts the key holds: known for
      // the built-in tokenisers, else reported by the first worker (no copy of a large
      // tokeniser here).
      const known = Object.hasOwn(BUILTIN_FACTS, spec) ? BUILTIN_FACTS[spec] : undefined;
      if (known !== undefined) facts = known;
      else {
        const first = await spawnWorkers(spec, 1);
        if (E.isLeft(first)) return first;
        early = first.right.slots;
        facts = first.right.facts[0]!;
      }
    }
    const stopEarly = (): void => early.forEach((s) => s.worker.terminate());
    const { cacheDir } = options;
    if (!LITTLE_ENDIAN) {
      stopEarly();
      return E.left(ioFailed(cacheDir, "token shards are little-endian; this host is big-endian"));
    }
    const { dir, key } = await locate(units, facts, cacheDir);
    const hit = await completeSet(dir, key);
    if (E.isRight(hit)) {
      stopEarly();
      return E.right({ dir, manifest: hit.right, fromCache: true });
    }
    const hash = path.basename(dir);
    let temp: string;
    try {
      await Deno.mkdir(cacheDir, { recursive: true });
      await removeStaleBuilds(cacheDir, hash);
      temp = path.join(cacheDir, `${hash}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
      await Deno.mkdir(temp);
    } catch (e) {
      stopEarly();
      return E.left(
        ioFailed(cacheDir, `Cannot create the token shard folder: ${describeUnknown(e)}`),
      );
    }
    const wide = facts.vocabSize > 65536;
    let encoder: Encoder;
    if (parallel) {
      const more = await spawnWorkers(spec!, wanted - early.length);
      const other = E.isLeft(more) ? undefined : more.right.facts
        .map((f) => JSON.stringify(f))
        .find((f) => f !== JSON.stringify(facts));
      if (other !== undefined || E.isLeft(more)) {
        stopEarly();
        if (E.isRight(more)) more.right.slots.forEach((s) => s.worker.terminate());
        await Deno.remove(temp, { recursive: true }).catch(() => undefined);
        return E.isLeft(more) ? more : E.left(
          configInvalid(
            "data.tokenizer",
            `a worker loaded ${other} from "${spec}", not ${JSON.stringify(facts)}`,
          ),
        );
      }
      encoder = workerEncoder([...early, ...more.right.slots]);
    } else encoder = inProcessEncoder(loaded!, wide);
    let built: ext.Either<FileError | ConfigInvalid, ShardManifest>;
    try {
      built = await build(units, encoder, facts, temp, key, options);
    } finally {
      encoder.close();
    }
    if (E.isLeft(built)) {
      await Deno.remove(temp, { recursive: true }).catch(() => undefined);
      return built;
    }
    try {
      // A set here has failed the check above (damaged, or another key with the same hash).
      await Deno.remove(dir, { recursive: true }).catch(() => undefined);
      await Deno.rename(temp, dir);
    } catch (e) {
      // Another process may have completed the same set meanwhile: use it.
      const theirs = await completeSet(dir, key);
      await Deno.remove(temp, { recursive: true }).catch(() => undefined);
      if (E.isRight(theirs)) return E.right({ dir, manifest: theirs.right, fromCache: true });
      return E.left(
        ioFailed(dir, `Cannot move the token shards into place: ${describeUnknown(e)}`),
      );
    }
    return E.right({ dir, manifest: built.right, fromCache: false });
  };
}
