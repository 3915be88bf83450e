/**
 * The JSON files beside a run's log that have no codec of their own (`report.json`,
 * `eval.json`, a comparison's `report.json`): read as an object, or a sentence saying why
 * not, so a damaged file is shown as damaged rather than read as missing numbers.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown } from "../base/mod.ts";

/** A JSON object as read. */
export type JsonObject = Readonly<Record<string, unknown>>;

/**
 * The object in `path`: undefined when the file does not exist, a sentence when it cannot be
 * read or is not a JSON object.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonObject } from "./json_file.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.json`, '{"x": 1');
 * const r = await readJsonObject(`${dir}/a.json`);
 * assert(r?._tag === "Left" && r.left.startsWith("not valid JSON"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readJsonObject(
  path: string,
): Promise<E.Either<string, JsonObject> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    return E.left(`cannot read it: ${describeUnknown(e)}`);
  }
  let u: unknown;
  try {
    u = JSON.parse(text);
  } catch (e) {
    return E.left(`not valid JSON: ${describeUnknown(e)}`);
  }
  return typeof u === "object" && u !== null && !Array.isArray(u)
    ? E.right(u as JsonObject)
    : E.left("not a JSON object");
}

/** A finite number, else null. */
export function finite(u: unknown): number | null {
  return typeof u === "number" && Number.isFinite(u) ? u : null;
}

/** The numbers of `o`'s fields `keys` (null where absent or not a number). */
export function numbers(o: JsonObject, keys: readonly string[]): Record<string, number | null> {
  return Object.fromEntries(keys.map((k) => [k, finite(o[k])]));
}
