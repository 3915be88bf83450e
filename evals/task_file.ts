/**
 * Reading a task definition file (`--task-file DEF`, YAML or JSON): decoded strictly, so a
 * misspelt field is an error naming the file and the field.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import {
  type ConfigInvalid,
  configInvalid,
  decodeWith,
  describeUnknown,
  type IoFailed,
  ioFailed,
} from "../base/mod.ts";
import { codecOfKind, KINDS, type TaskDef } from "./task_def.ts";

/**
 * Decodes a parsed definition; `where` (the file) prefixes every message.
 *
 * @example
 * ```ts
 * import { decodeTaskDef } from "./task_file.ts";
 * const r = decodeTaskDef({ name: "t", kind: "multiple_choice", reader: { data: "x.jsonl" } }, "t.yaml");
 * console.assert(r._tag === "Left" && r.left.message.includes("prompt"));
 * ```
 */
export function decodeTaskDef(u: unknown, where: string): E.Either<ConfigInvalid, TaskDef> {
  const kind = typeof u === "object" && u !== null ? (u as { kind?: unknown }).kind : undefined;
  const codec = codecOfKind(kind);
  if (codec === undefined) {
    return E.left(configInvalid(
      `${where}: kind`,
      `expected one of ${KINDS.map((k) => `"${k}"`).join(", ")} (got ${JSON.stringify(kind)})`,
    ));
  }
  return E.mapLeft((lines: string[]) => configInvalid(where, lines.join("; ")))(
    decodeWith(codec, u),
  );
}

/** Reads and decodes a task definition file. */
export async function readTaskFile(
  path: string,
): Promise<E.Either<ConfigInvalid | IoFailed, TaskDef>> {
  let parsed: unknown;
  try {
    const text = await Deno.readTextFile(path);
    parsed = /\.json$/i.test(path) ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    return E.left(
      e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied
        ? ioFailed(path, describeUnknown(e))
        : configInvalid(path, `not valid YAML/JSON: ${describeUnknown(e)}`),
    );
  }
  return decodeTaskDef(parsed, path);
}
