/**
 * What the served folders hold: every run directory and every comparison folder under them
 * (a comparison's runs listed with it), each with its status. A folder is a comparison when
 * it has `graphs/`, a run when it has any of a run's own files; others are searched a few
 * levels down. Symlinked folders are not followed, so a listing never leaves its folders.
 *
 * @module
 */
import { RUN_DIR } from "../checkpoint/mod.ts";
import { COMPARE_DIR } from "./compare_view.ts";
import { servedId, type ServedRoot } from "./served_path.ts";
import { comparisonStatus, runStatus, type StatusView } from "./run_status.ts";

/** What a folder is to the dashboard. */
export type FolderKind = "run" | "comparison";

/** One run or comparison found. */
export interface ListedFolder {
  /** Its id in URLs (`<root index>/<segments>`). */
  readonly id: string;
  /** Its path as the user would write it: the served folder as given, then the segments. */
  readonly path: string;
  readonly kind: FolderKind;
  readonly status: StatusView;
  /** The comparison it belongs to (its id), for a comparison's run. */
  readonly comparison: string | null;
}

// Deep enough for runs/<group>/<name>/ layouts; a served tree is a folder of runs, not a disk.
const MAX_DEPTH = 4;

async function isDir(path: string): Promise<boolean> {
  return await Deno.lstat(path).then((s) => s.isDirectory, () => false);
}

async function isFile(path: string): Promise<boolean> {
  return await Deno.lstat(path).then((s) => s.isFile, () => false);
}

/** Whether `path` is a run directory, a comparison folder, or neither. */
export async function folderKind(path: string): Promise<FolderKind | undefined> {
  if (await isDir(`${path}/${COMPARE_DIR.graphs}`)) return "comparison";
  if (
    await isFile(`${path}/${RUN_DIR.metrics}`) || await isFile(`${path}/${RUN_DIR.pipeline}`) ||
    await isDir(`${path}/${RUN_DIR.checkpoint}`)
  ) return "run";
  return undefined;
}

async function subfolders(path: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(path)) {
      if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") out.push(e.name);
    }
  } catch {
    // An unreadable folder lists nothing.
  }
  return out.sort();
}

/**
 * Every run and comparison under the served folders, in path order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listServed } from "./run_listing.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/a/b`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/a/b/metrics.jsonl`, "");
 * const found = await listServed([{ given: "runs", real: await Deno.realPath(dir) }]);
 * assert.deepEqual(found.map((f) => [f.path, f.kind]), [["runs/a/b", "run"]]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function listServed(roots: readonly ServedRoot[]): Promise<ListedFolder[]> {
  const found: ListedFolder[] = [];
  const visit = async (index: number, root: ServedRoot, rel: string[]): Promise<void> => {
    const path = [root.real, ...rel].join("/");
    const shown = [root.given.replace(/\/+$/, ""), ...rel].join("/");
    const kind = await folderKind(path);
    const id = servedId(index, rel);
    if (kind === "run") {
      found.push({ id, path: shown, kind, status: await runStatus(path), comparison: null });
    } else if (kind === "comparison") {
      found.push({ id, path: shown, kind, status: await comparisonStatus(path), comparison: null });
      for (const run of await subfolders(`${path}/${COMPARE_DIR.runs}`)) {
        const runRel = [...rel, COMPARE_DIR.runs, run];
        found.push({
          id: servedId(index, runRel),
          path: `${shown}/${COMPARE_DIR.runs}/${run}`,
          kind: "run",
          status: await runStatus(`${path}/${COMPARE_DIR.runs}/${run}`),
          comparison: id,
        });
      }
    } else if (rel.length < MAX_DEPTH) {
      for (const sub of await subfolders(path)) await visit(index, root, [...rel, sub]);
    }
  };
  for (const [i, root] of roots.entries()) await visit(i, root, []);
  return found;
}
