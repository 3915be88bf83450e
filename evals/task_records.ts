/**
 * Reading a task's records: the file formats of {@link Reader}, each record tagged with where
 * it came from (`file:line`) so every later complaint names it. A malformed file is an error
 * naming the file and line; nothing is guessed.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ContentInvalid,
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
} from "../base/mod.ts";
import { jsonLines, readUtf8File } from "../data/mod.ts";
import type { Format, Reader } from "./task_def.ts";

/** One record and where it is (`file:line`, or `file` for a whole-file document). */
export interface TaskRecord {
  /** The record's fields by name, as the template holes name them. */
  readonly fields: Readonly<Record<string, unknown>>;
  /** Where it is, for messages: `file:line`, or `file` for a whole-file document. */
  readonly where: string;
}

/** The format of `path` when the reader does not say: by its extension. */
export function formatOf(reader: Reader, path: string): Format {
  if (reader.format !== undefined) return reader.format;
  if (/\.jsonl$/i.test(path)) return "jsonl";
  if (/\.json$/i.test(path)) return "json";
  return "text";
}

function isObject(u: unknown): u is Record<string, unknown> {
  return typeof u === "object" && u !== null && !Array.isArray(u);
}

function lines(text: string): string[] {
  const all = text.split(/\r?\n/);
  if (all.length > 0 && all[all.length - 1] === "") all.pop();
  return all;
}

/** Records of JSONL text: blank lines are skipped, anything else must be a JSON object. */
export function parseJsonl(text: string, path: string): ext.Either<ContentInvalid, TaskRecord[]> {
  const parsed = jsonLines(text);
  if (E.isLeft(parsed)) {
    const { line, why } = parsed.left;
    return E.left(contentInvalid(`${path}:${line}`, `not valid JSON: ${why}`));
  }
  const out: TaskRecord[] = [];
  for (const { line, value } of parsed.right) {
    const where = `${path}:${line}`;
    if (!isObject(value)) return E.left(contentInvalid(where, "expected a JSON object"));
    out.push({ fields: value, where });
  }
  return E.right(out);
}

function parseJsonArray(text: string, path: string): ext.Either<ContentInvalid, TaskRecord[]> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return E.left(contentInvalid(path, `not valid JSON: ${describeUnknown(e)}`));
  }
  if (!Array.isArray(value)) {
    return E.left(contentInvalid(path, "expected a JSON array of objects"));
  }
  const out: TaskRecord[] = [];
  for (let i = 0; i < value.length; i++) {
    const where = `${path}: record ${i}`;
    const v: unknown = value[i];
    if (!isObject(v)) return E.left(contentInvalid(where, "expected a JSON object"));
    out.push({ fields: v, where });
  }
  return E.right(out);
}

/** Records of `fields.length` consecutive lines each (HellaSwag's text layout). */
export function parseLineBlocks(
  text: string,
  path: string,
  fields: readonly string[],
): ext.Either<ContentInvalid, TaskRecord[]> {
  if (fields.length === 0) {
    return E.left(
      contentInvalid(path, "format lines needs reader.fields (the name of each line of a record)"),
    );
  }
  const all = lines(text);
  if (all.length % fields.length !== 0) {
    return E.left(contentInvalid(
      `${path}:${all.length}`,
      `${all.length} lines is not a whole number of ${fields.length}-line records (${
        fields.join(", ")
      }); the last record is cut short`,
    ));
  }
  const out: TaskRecord[] = [];
  for (let i = 0; i < all.length; i += fields.length) {
    const record: Record<string, unknown> = {};
    fields.forEach((f, j) => (record[f] = all[i + j]));
    out.push({ fields: record, where: `${path}:${i + 1}` });
  }
  return E.right(out);
}

const TITLE = /^ = [^=].* = $/;

/**
 * WikiText's articles: a document starts at each top-level ` = Title = ` line (section
 * headings ` = = … = = ` stay inside their article).
 */
export function wikitextArticles(text: string, path: string): TaskRecord[] {
  const all = lines(text);
  const out: TaskRecord[] = [];
  let start = -1;
  const flush = (end: number): void => {
    if (start < 0) return;
    const body = all.slice(start, end).join("\n");
    if (body.trim() !== "") out.push({ fields: { text: body }, where: `${path}:${start + 1}` });
  };
  for (let i = 0; i < all.length; i++) {
    if (TITLE.test(all[i]!)) {
      flush(i);
      start = i;
    } else if (start < 0 && all[i]!.trim() !== "") start = i;
  }
  flush(all.length);
  return out;
}

/** Parses a data file's text as `format` says. */
export function parseRecords(
  text: string,
  path: string,
  format: Format,
  fields: readonly string[] = [],
): ext.Either<ContentInvalid, TaskRecord[]> {
  switch (format) {
    case "jsonl":
      return parseJsonl(text, path);
    case "json":
      return parseJsonArray(text, path);
    case "lines":
      return parseLineBlocks(text, path, fields);
    case "text":
      return E.right(text.trim() === "" ? [] : [{ fields: { text }, where: path }]);
    case "wikitext":
      return E.right(wikitextArticles(text, path));
  }
}

/** Joins a labels file (one value per line) to the records as field `label`. */
export function joinLabels(
  records: readonly TaskRecord[],
  labelsText: string,
  labelsPath: string,
): ext.Either<ContentInvalid, TaskRecord[]> {
  const labels = lines(labelsText);
  if (labels.length !== records.length) {
    return E.left(contentInvalid(
      labelsPath,
      `${labels.length} labels for ${records.length} records: the files must align line by line`,
    ));
  }
  return E.right(records.map((r, i) => ({
    fields: { ...r.fields, label: labels[i]!.trim() },
    where: r.where,
  })));
}

/**
 * Reads a task's records from `path` (and its labels from `labelsPath`), each file the way
 * every input is read (`readUtf8File`: a FIFO or a device refused by name before it is opened,
 * bytes that are not UTF-8 named by offset and line).
 */
export async function readRecords(
  reader: Reader,
  path: string,
  labelsPath?: string,
): Promise<ext.Either<FileError, TaskRecord[]>> {
  const text = await readUtf8File(path)();
  if (E.isLeft(text)) return text;
  const records = parseRecords(text.right, path, formatOf(reader, path), reader.fields);
  if (E.isLeft(records) || labelsPath === undefined) return records;
  const labels = await readUtf8File(labelsPath)();
  if (E.isLeft(labels)) return labels;
  return joinLabels(records.right, labels.right, labelsPath);
}
