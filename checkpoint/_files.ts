/**
 * File helpers private to this folder: JSON files read as values, existence
 * checks, and closing a set of readers whatever happened.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { contentInvalid, describeUnknown, type FileError, ioFailed } from "../base/mod.ts";
import { openSafetensors, type SafetensorsReader } from "../store/mod.ts";

/** Parses a JSON file; a missing file (`IoFailed`) or bad JSON (`ContentInvalid`) names it. */
export function readJson(path: string): TE.TaskEither<FileError, unknown> {
  return async () => {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      return E.left(
        ioFailed(path, e instanceof Deno.errors.NotFound ? "no such file" : describeUnknown(e)),
      );
    }
    try {
      return E.right(JSON.parse(text));
    } catch (e) {
      return E.left(contentInvalid(path, `not valid JSON: ${describeUnknown(e)}`));
    }
  };
}

/** Whether a path exists (any kind of entry). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Opens several safetensors files; if one fails, the ones already open are closed. */
export async function openAll(
  paths: readonly string[],
): Promise<E.Either<FileError, SafetensorsReader[]>> {
  const readers: SafetensorsReader[] = [];
  for (const p of paths) {
    const r = await openSafetensors(p)();
    if (E.isLeft(r)) {
      for (const open of readers) open.close();
      return r;
    }
    readers.push(r.right);
  }
  return E.right(readers);
}

/** Writes JSON with two-space indentation and a final newline, as `transformers` does. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}
