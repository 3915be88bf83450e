/**
 * File effects shared by the CLI entry points, wrapped as TaskEither so a
 * failure becomes an `IoFailed` naming the path.
 *
 * @module
 */
import * as TE from "fp-ts/lib/TaskEither.js";
import { describeUnknown, type FileError, type IoFailed, ioFailed } from "../base/mod.ts";
import { readUtf8File } from "../data/mod.ts";

/**
 * Reads a config or graph file as every input is read (`data/text_file.ts`): a missing file, a
 * FIFO or a device is an error naming it, bytes that are not UTF-8 are named by offset and line.
 */
export function readText(path: string): TE.TaskEither<FileError, string> {
  return readUtf8File(path);
}

/**
 * Writes several files so that either all appear or none does: each goes to a
 * temporary sibling first, and only when every temporary is complete are they
 * renamed into place.
 */
export function writeAllOrNothing(
  files: readonly { readonly path: string; readonly text: string }[],
): TE.TaskEither<IoFailed, void> {
  return TE.tryCatch(
    async () => {
      const temps: string[] = [];
      try {
        for (const f of files) {
          const tmp = `${f.path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
          temps.push(tmp);
          await Deno.writeTextFile(tmp, f.text);
        }
        for (const [i, f] of files.entries()) await Deno.rename(temps[i] ?? "", f.path);
      } catch (e) {
        for (const tmp of temps) await Deno.remove(tmp).catch(() => {});
        throw e;
      }
    },
    (e) => ioFailed(files.map((f) => f.path).join(", "), describeUnknown(e)),
  );
}
