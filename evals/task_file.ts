/**
 * Reading a task definition file (`--task-file DEF`, YAML or JSON): decoded strictly, so a
 * misspelt field is an error naming the file and the field, and every template is checked for
 * its braces then, before any data is read.
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
  type ext,
  type FileError,
} from "../base/mod.ts";
import { readUtf8File } from "../data/mod.ts";
import { codecOfKind, KINDS, type TaskDef } from "./task_def.ts";
import { templateProblem } from "./task_items.ts";

/** Every template of a definition, by the field that holds it (`choices[1]` in a list). */
function templatesOf(def: TaskDef): [string, string][] {
  const listed = (field: string, t: string | readonly string[]): [string, string][] =>
    typeof t === "string" ? [[field, t]] : t.map((x, i) => [`${field}[${i}]`, x]);
  const given = (fields: Record<string, string | undefined>): [string, string][] =>
    Object.entries(fields).filter((e): e is [string, string] => e[1] !== undefined);
  switch (def.kind) {
    case "multiple_choice":
      return [["prompt", def.prompt], ...listed("choices", def.choices), ["gold", def.gold]];
    case "fill_blank":
      return [["sentence", def.sentence], ...listed("options", def.options), ["gold", def.gold]];
    case "last_word":
      return given({ text: def.text, context: def.context, target: def.target });
    case "perplexity":
      return given({ text: def.text });
  }
}

/** The first template whose braces do not parse, or an empty blank, named by file and field. */
function definitionProblem(def: TaskDef, where: string): ConfigInvalid | undefined {
  for (const [field, template] of templatesOf(def)) {
    const problem = templateProblem(template);
    if (problem !== undefined) {
      return configInvalid(`${where}: ${field}`, `${JSON.stringify(template)}: ${problem}`);
    }
  }
  if (def.kind === "fill_blank" && def.blank === "") {
    return configInvalid(`${where}: blank`, "is empty: give the text that marks the blank");
  }
  return undefined;
}

/**
 * Decodes a parsed definition; `where` (the file) prefixes every message.
 *
 * @example
 * ```ts
 * import { decodeTaskDef } from "./task_file.ts";
 * const r = decodeTaskDef({ name: "t", kind: "multiple_choice", reader: { data: "x.jsonl" } }, "t.yaml");
 * console.assert(r._tag === "Left" && r.left.message.includes("prompt"));
 * const open = decodeTaskDef({
 *   name: "t", kind: "perplexity", reader: { data: "x.txt" }, text: "{text",
 * }, "t.yaml");
 * console.assert(open._tag === "Left" && open.left.where === "t.yaml: text");
 * ```
 */
export function decodeTaskDef(u: unknown, where: string): ext.Either<ConfigInvalid, TaskDef> {
  const kind = typeof u === "object" && u !== null ? (u as { kind?: unknown }).kind : undefined;
  const codec = codecOfKind(kind);
  if (codec === undefined) {
    return E.left(configInvalid(
      `${where}: kind`,
      `expected one of ${KINDS.map((k) => `"${k}"`).join(", ")} (got ${JSON.stringify(kind)})`,
    ));
  }
  const decoded = decodeWith(codec, u);
  if (E.isLeft(decoded)) return E.left(configInvalid(where, decoded.left.join("; ")));
  const problem = definitionProblem(decoded.right, where);
  return problem === undefined ? decoded : E.left(problem);
}

/**
 * Reads and decodes a task definition file, read as every input is (`readUtf8File`: a FIFO or
 * a device refused by name, bytes that are not UTF-8 named).
 */
export async function readTaskFile(
  path: string,
): Promise<ext.Either<ConfigInvalid | FileError, TaskDef>> {
  const text = await readUtf8File(path)();
  if (E.isLeft(text)) return text;
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(path) ? JSON.parse(text.right) : YAML.parse(text.right);
  } catch (e) {
    return E.left(configInvalid(path, `not valid YAML/JSON: ${describeUnknown(e)}`));
  }
  return decodeTaskDef(parsed, path);
}
