/**
 * Where documents come from, as config data, and how a source resolves to
 * files: a single file, a directory (walked recursively, in name order), or a
 * glob, mixing plain text, JSONL and Parquet by extension; or the built-in
 * generated corpus.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { glob } from "node:fs/promises";
import * as path from "node:path";
import {
  type ConfigInvalid,
  configInvalid,
  describeUnknown,
  type ExactObjectC,
  type ext,
  type IoFailed,
  ioFailed,
} from "../base/mod.ts";
import { BUILTIN_CORPUS_VERSION } from "./builtin_corpus.ts";
import { notRegularFile } from "./text_file.ts";

/** How a file's documents are stored. */
export const SourceFormat: ext.KeyofC<{ text: null; jsonl: null; parquet: null }> = t.keyof({
  text: null,
  jsonl: null,
  parquet: null,
});
/** `text`: the whole file is one document; `jsonl`: one per line; `parquet`: one per row. */
export type SourceFormat = ext.TypeOf<typeof SourceFormat>;

/** The field a {@link FileSource} must give. */
export const FILE_SOURCE_REQUIRED = {
  /** A file, a directory or a glob, relative to the base directory. */
  path: t.string,
};
/** The fields a {@link FileSource} may give. */
export const FILE_SOURCE_OPTIONAL = {
  /** Overrides the format the extension implies. */
  format: SourceFormat,
  /** JSONL field / Parquet column holding the text (default `text`). */
  field: t.string,
  /** Basenames, relative paths or glob patterns to leave out of a directory or glob. */
  exclude: t.array(t.string),
  /** Keep only what lies between Project Gutenberg's `*** START OF` and `*** END OF` lines. */
  gutenberg: t.boolean,
  /** Share of the training rows drawn from this source, relative to the others' (see `corpus.ts`). */
  weight: t.number,
};
/** Files on disk: `path` is a file, a directory or a glob, relative to the base directory. */
export const FileSource: ExactObjectC<typeof FILE_SOURCE_REQUIRED, typeof FILE_SOURCE_OPTIONAL> = t
  .exact(t.intersection([t.type(FILE_SOURCE_REQUIRED), t.partial(FILE_SOURCE_OPTIONAL)]));
/** See {@link FileSource}. */
export type FileSource = ext.TypeOf<typeof FileSource>;

/** The field of a {@link BuiltinSource}. */
export const BUILTIN_SOURCE_FIELDS = {
  /** The generator's settings: `seed`, and optionally how many `documents` or `bytes`. */
  builtin: t.exact(
    t.intersection([
      t.type({ seed: t.number }),
      t.partial({ documents: t.number, bytes: t.number }),
    ]),
  ),
};
/** The optional field of a {@link BuiltinSource}. */
export const BUILTIN_SOURCE_OPTIONAL = {
  /** Share of the training rows drawn from this source, relative to the others' (see `corpus.ts`). */
  weight: t.number,
};
/** The generated corpus (see `builtin_corpus.ts`). */
export const BuiltinSource: ExactObjectC<
  typeof BUILTIN_SOURCE_FIELDS,
  typeof BUILTIN_SOURCE_OPTIONAL
> = t.exact(t.intersection([t.type(BUILTIN_SOURCE_FIELDS), t.partial(BUILTIN_SOURCE_OPTIONAL)]));
/** See {@link BuiltinSource}. */
export type BuiltinSource = ext.TypeOf<typeof BuiltinSource>;

/** A data source in a config: a path string (shorthand for `{path}`), a {@link FileSource} or a {@link BuiltinSource}. */
export const DataSource: ext.UnionC<[ext.StringC, typeof FileSource, typeof BuiltinSource]> = t
  .union([
    t.string,
    FileSource,
    BuiltinSource,
  ]);
/** See {@link DataSource}. */
export type DataSource = ext.TypeOf<typeof DataSource>;

/** One file to read, with what identifies its content for the token cache. */
export interface ResolvedFile {
  /** Tells a file apart from the built-in corpus. */
  readonly kind: "file";
  /** Absolute path. */
  readonly path: string;
  /** How the file's documents are stored: given, or implied by the extension. */
  readonly format: SourceFormat;
  /** JSONL field or Parquet column holding the text (`text` unless the source names another). */
  readonly field: string;
  /** Whether Project Gutenberg's header and footer are cut off. */
  readonly gutenberg: boolean;
  /** Size in bytes when resolved; with `mtimeMs`, what tells the cache the file changed. */
  readonly size: number;
  /** Modification time in milliseconds since the epoch (0 where the system gives none). */
  readonly mtimeMs: number;
}

/** The built-in corpus with its generator version. */
export interface ResolvedBuiltin {
  /** Tells the built-in corpus apart from a file. */
  readonly kind: "builtin";
  /** Seed of the generator. */
  readonly seed: number;
  /** Exactly this many documents, when given. */
  readonly documents?: number;
  /** Documents until their size reaches this many bytes, when given. */
  readonly bytes?: number;
  /** The generator's version ({@link BUILTIN_CORPUS_VERSION}), part of the cache key. */
  readonly version: number;
}

/** A source after resolution: what the reader and the cache key use. */
export type ResolvedUnit = ResolvedFile | ResolvedBuiltin;

const EXTENSIONS: Readonly<Record<string, SourceFormat>> = {
  ".txt": "text",
  ".text": "text",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl",
  ".parquet": "parquet",
};

/** A compression suffix a text or JSONL file may carry (`a.txt.gz`, `b.jsonl.zst`). */
const COMPRESSED = /\.(gz|zst)$/i;

/**
 * The format a file name implies, or `undefined` when the extension is not a data extension.
 * Text and JSONL may be compressed (`.gz`, `.zst` after the extension: the streaming reader
 * decompresses them); Parquet compresses inside the file, so `x.parquet.gz` is not data.
 */
export function formatOfPath(p: string): SourceFormat | undefined {
  const inner = p.replace(COMPRESSED, "");
  const format = EXTENSIONS[path.extname(inner).toLowerCase()];
  return inner !== p && format === "parquet" ? undefined : format;
}

function hasGlobChars(p: string): boolean {
  return /[*?[\]{}]/.test(p);
}

function excluded(patterns: readonly string[], absolute: string, root: string): boolean {
  const rel = path.relative(root, absolute);
  const base = path.basename(absolute);
  return patterns.some((p) =>
    hasGlobChars(p)
      ? path.matchesGlob(rel, p) || path.matchesGlob(base, p)
      : p === base || p === rel
  );
}

/**
 * The data files under `dir`, in name order. Symbolic links are followed as the user sees them
 * (a folder of links to books is a folder of books); a link back into a folder already walked is
 * skipped, and anything that is not a regular file (a FIFO, a socket, a device) is left out.
 */
async function walk(dir: string, out: string[], seen: Set<string> = new Set()): Promise<void> {
  const real = await Deno.realPath(dir);
  if (seen.has(real)) return;
  seen.add(real);
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue; // hidden files, caches, temporaries
    const p = path.join(dir, e.name);
    const info = e.isSymlink ? await statOrUndefined(p) : e;
    if (info === undefined) continue; // a dangling link
    if (info.isDirectory) await walk(p, out, seen);
    else if (info.isFile && formatOfPath(p) !== undefined) out.push(p);
  }
}

async function statOrUndefined(p: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Expands one file source into its files, in a stable order. */
async function expand(
  source: FileSource,
  baseDir: string,
): Promise<ext.Either<IoFailed, ResolvedFile[]>> {
  const target = path.resolve(baseDir, source.path);
  const exclude = source.exclude ?? [];
  let files: string[];
  let explicit = false;
  if (hasGlobChars(source.path)) {
    const matched: string[] = [];
    for await (const m of glob(source.path, { cwd: baseDir })) {
      matched.push(path.resolve(baseDir, m));
    }
    files = matched.filter((p) => formatOfPath(p) !== undefined && !excluded(exclude, p, baseDir))
      .sort();
    if (files.length === 0) {
      return E.left(ioFailed(source.path, "Glob matched no .txt, .jsonl or .parquet files"));
    }
  } else {
    const info = await statOrUndefined(target);
    if (info === undefined) return E.left(ioFailed(target, "No such file or directory"));
    if (info.isDirectory) {
      const found: string[] = [];
      await walk(target, found);
      files = found.filter((p) => !excluded(exclude, p, target));
      if (files.length === 0) {
        return E.left(ioFailed(target, "Directory holds no .txt, .jsonl or .parquet files"));
      }
    } else {
      const refused = notRegularFile(target, info, "a file, a directory or a glob");
      if (refused !== undefined) return E.left(refused);
      files = [target];
      explicit = true;
    }
  }
  const out: ResolvedFile[] = [];
  for (const f of files) {
    const info = await Deno.stat(f);
    const refused = notRegularFile(f, info);
    if (refused !== undefined) return E.left(refused);
    const format = source.format ?? formatOfPath(f) ?? (explicit ? "text" : undefined);
    if (format === undefined) continue;
    out.push({
      kind: "file",
      path: f,
      format,
      field: source.field ?? "text",
      gutenberg: source.gutenberg ?? false,
      size: info.size,
      mtimeMs: info.mtime?.getTime() ?? 0,
    });
  }
  return E.right(out);
}

/**
 * Resolves sources to concrete units: files with size and modification time (for the cache
 * key), or the built-in corpus. Relative paths are taken from `baseDir`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveSources } from "./sources.ts";
 * const r = await resolveSources([{ builtin: { seed: 1 } }], ".")();
 * assert(r._tag === "Right" && r.right[0]!.kind === "builtin");
 * ```
 */
export function resolveSources(
  sources: readonly DataSource[],
  baseDir: string,
): ext.TaskEither<IoFailed | ConfigInvalid, ResolvedUnit[]> {
  return async () => {
    if (sources.length === 0) return E.left(configInvalid("data.sources", "no data sources given"));
    const out: ResolvedUnit[] = [];
    for (const s of sources) {
      if (typeof s !== "string" && "builtin" in s) {
        const b = s.builtin;
        // Plain numbers in the codec keep configs easy to write in TypeScript; check them here.
        const bad = (["seed", "documents", "bytes"] as const).find((k) => {
          const v = b[k];
          return v !== undefined && !(Number.isSafeInteger(v) && (k === "seed" || v > 0));
        });
        if (bad !== undefined) {
          return E.left(
            configInvalid(
              `data.sources.builtin.${bad}`,
              `must be ${bad === "seed" ? "an" : "a positive"} integer, got ${b[bad]}`,
            ),
          );
        }
        out.push({
          kind: "builtin",
          seed: b.seed,
          ...(b.documents === undefined ? {} : { documents: b.documents }),
          ...(b.bytes === undefined ? {} : { bytes: b.bytes }),
          version: BUILTIN_CORPUS_VERSION,
        });
        continue;
      }
      const fs: FileSource = typeof s === "string" ? { path: s } : s;
      try {
        const files = await expand(fs, baseDir);
        if (E.isLeft(files)) return files;
        out.push(...files.right);
      } catch (e) {
        return E.left(ioFailed(fs.path, `Cannot list data files: ${describeUnknown(e)}`));
      }
    }
    return E.right(out);
  };
}
