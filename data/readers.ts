/**
 * Readers that turn a resolved source into documents (strings): plain text
 * (one document per file), JSONL (one per line, a configurable string field)
 * and Parquet (one per row of a string column, via `hyparquet`), plus the
 * built-in generated corpus. Empty documents are dropped: they would only add
 * runs of end-of-text tokens.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { parquetMetadataAsync, parquetRead, parquetSchema } from "hyparquet";
import { parquetFileBuffer } from "./_parquet_buffer.ts";
import {
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
  ioFailed,
} from "../base/mod.ts";
import { builtinCorpus } from "./builtin_corpus.ts";
import { jsonLines } from "./jsonl.ts";
import type { ResolvedFile, ResolvedUnit } from "./sources.ts";
import { readUtf8File } from "./text_file.ts";

/**
 * Keeps the body of a Project Gutenberg e-book: the text between the line that starts
 * `*** START OF` and the one that starts `*** END OF`. Text without the markers is
 * returned unchanged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stripGutenberg } from "./readers.ts";
 * const s = stripGutenberg("licence\n*** START OF X ***\nBody.\n*** END OF X ***\nmore");
 * assert(s === "Body.");
 * ```
 */
export function stripGutenberg(text: string): string {
  const start = /^\*\*\* ?START OF[^\n]*\n/m.exec(text);
  const from = start === null ? 0 : start.index + start[0].length;
  const end = /^\*\*\* ?END OF/m.exec(text.slice(from));
  const to = end === null ? text.length : from + end.index;
  return text.slice(from, to).trim();
}

/** Text files: UTF-8 (a byte-order mark is dropped), CRLF normalised to LF, one document. */
async function readText(file: ResolvedFile): Promise<ext.Either<FileError, string[]>> {
  const read = await readUtf8File(file.path)();
  if (E.isLeft(read)) return read;
  let text = read.right.replace(/\r\n?/g, "\n");
  if (file.gutenberg) text = stripGutenberg(text);
  return E.right(text.length > 0 ? [text] : []);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** JSONL: one JSON object per non-blank line; `field` must be a string on every line. */
async function readJsonl(file: ResolvedFile): Promise<ext.Either<FileError, string[]>> {
  const text = await readUtf8File(file.path)();
  if (E.isLeft(text)) return text;
  const parsed = jsonLines(text.right);
  if (E.isLeft(parsed)) {
    return E.left(
      contentInvalid(file.path, `Line ${parsed.left.line} is not valid JSON: ${parsed.left.why}`),
    );
  }
  const docs: string[] = [];
  for (const { line, value: record } of parsed.right) {
    const value = isRecord(record) ? record[file.field] : undefined;
    if (typeof value !== "string") {
      const why = isRecord(record) && file.field in record ? "is not a string" : "is missing";
      return E.left(contentInvalid(file.path, `Line ${line}: field "${file.field}" ${why}`));
    }
    if (value.length > 0) docs.push(value);
  }
  return E.right(docs);
}

/** Parquet: the string column `field`, one document per row. */
async function readParquet(file: ResolvedFile): Promise<ext.Either<FileError, string[]>> {
  const handle = await Deno.open(file.path, { read: true });
  try {
    const buffer = parquetFileBuffer(handle, (await handle.stat()).size);
    const metadata = await parquetMetadataAsync(buffer);
    const columns = parquetSchema(metadata).children.map((c) => c.element.name);
    if (!columns.includes(file.field)) {
      return E.left(
        contentInvalid(
          file.path,
          `Column "${file.field}" not found (columns: ${columns.join(", ")})`,
        ),
      );
    }
    let rows: unknown[][] = [];
    await parquetRead({
      file: buffer,
      metadata,
      columns: [file.field],
      onComplete: (r: unknown[][]) => {
        rows = r;
      },
    });
    const docs: string[] = [];
    for (let i = 0; i < rows.length; i++) {
      const value = rows[i]![0];
      if (typeof value !== "string") {
        return E.left(
          contentInvalid(file.path, `Row ${i}: column "${file.field}" is not a string`),
        );
      }
      if (value.length > 0) docs.push(value);
    }
    return E.right(docs);
  } finally {
    handle.close();
  }
}

/**
 * The documents of one resolved source, in file order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readDocuments } from "./readers.ts";
 * const r = await readDocuments({ kind: "builtin", seed: 1, documents: 2, version: 1 })();
 * assert(r._tag === "Right" && r.right.length === 2);
 * ```
 */
export function readDocuments(unit: ResolvedUnit): ext.TaskEither<FileError, string[]> {
  return async () => {
    if (unit.kind === "builtin") {
      const options = {
        seed: unit.seed,
        ...(unit.documents === undefined ? {} : { documents: unit.documents }),
        ...(unit.bytes === undefined ? {} : { bytes: unit.bytes }),
      };
      return E.right([...builtinCorpus(options).documents]);
    }
    try {
      switch (unit.format) {
        case "text":
          return await readText(unit);
        case "jsonl":
          return await readJsonl(unit);
        case "parquet":
          return await readParquet(unit);
      }
    } catch (e) {
      return E.left(ioFailed(unit.path, `Cannot read ${unit.format} file: ${describeUnknown(e)}`));
    }
  };
}
