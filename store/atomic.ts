/**
 * Crash-safe writes: a file or a whole directory appears under its final name
 * only once it is complete and flushed, so a run killed at any instant leaves
 * either the previous version or the new one, never a half-written mix.
 *
 * The recipe is the POSIX one: write under a temporary name in the same
 * directory (rename is atomic only within one file system), fsync the data,
 * rename over the target, fsync the parent directory so the rename itself is
 * durable.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import { describeUnknown, type ext, type IoFailed, ioFailed } from "../base/mod.ts";

/** A file being written under a temporary name; nothing is visible at `path` until `commit`. */
export interface AtomicFile {
  /** The final path. */
  readonly path: string;
  /** The temporary path the bytes go to meanwhile. */
  readonly tempPath: string;
  /** The open handle on `tempPath` (seekable, for positional writes). */
  readonly file: Deno.FsFile;
  /** Appends bytes at the current position. */
  write(bytes: Uint8Array): ext.TaskEither<IoFailed, void>;
  /** Flushes, closes and renames onto `path`. */
  commit(): ext.TaskEither<IoFailed, void>;
  /** Closes and deletes the temporary file; `path` is untouched. */
  abort(): Promise<void>;
}

/** Writes the whole buffer: `FsFile.write` may write fewer bytes than asked. */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** fsync of a directory, so renames and creations inside it survive a power cut. */
async function syncDir(dir: string): Promise<void> {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch {
    // Some platforms (Windows) cannot open or fsync a directory; the rename is still atomic.
  } finally {
    handle?.close();
  }
}

/**
 * Temporary files and directories are created private (0600/0700); give the result the
 * permissions a plain write gives under the usual umask 022, so other tools can read checkpoints.
 */
async function usualMode(p: string, mode: number): Promise<void> {
  if (Deno.build.os !== "windows") await Deno.chmod(p, mode);
}

/**
 * Where temporaries of `target` go: hidden siblings named `.<name>.tmp-<pid>-<random>`, so a
 * later writer can tell a dead writer's leftovers from a live writer's work.
 */
function hiddenSibling(target: string, tag: string): { dir: string; prefix: string } {
  const dir = path.dirname(target);
  return { dir, prefix: `.${path.basename(target)}.${tag}-${Deno.pid}-` };
}

/** Whether a process is running, as far as this platform can tell (true when it cannot). */
function processAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync("/proc/self");
  } catch {
    return true;
  }
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

const TEMP_NAME = /^\.(.+)\.tmp-(?:(\d+)-)?[^/]*$/;

/**
 * Removes the temporaries a killed writer left beside `target` (`.<name>.tmp-*` files and
 * directories whose writer is no longer running); returns how many it removed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { removeStaleTemps } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/.out.tmp-999999999-abc`);
 * assert(await removeStaleTemps(`${dir}/out`) === 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function removeStaleTemps(target: string): Promise<number> {
  const dir = path.dirname(target);
  const name = path.basename(target);
  let removed = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const m = TEMP_NAME.exec(entry.name);
      if (m === null || m[1] !== name) continue;
      if (m[2] !== undefined && processAlive(Number(m[2]))) continue;
      await Deno.remove(path.join(dir, entry.name), { recursive: true });
      removed++;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return removed;
}

/**
 * Opens a temporary file beside `target` (same directory, hidden name ending in `.tmp`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openAtomicFile } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * const opened = await openAtomicFile(`${dir}/a.bin`)();
 * if (opened._tag === "Right") {
 *   await opened.right.write(new Uint8Array([1, 2]))();
 *   await opened.right.commit()();
 * }
 * assert((await Deno.readFile(`${dir}/a.bin`)).length === 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function openAtomicFile(target: string): ext.TaskEither<IoFailed, AtomicFile> {
  return TE.tryCatch(
    async () => {
      const { dir, prefix } = hiddenSibling(target, "tmp");
      const tempPath = await Deno.makeTempFile({ dir, prefix, suffix: ".tmp" });
      const file = await Deno.open(tempPath, { read: true, write: true });
      let closed = false;
      const close = (): void => {
        if (!closed) file.close();
        closed = true;
      };
      return {
        path: target,
        tempPath,
        file,
        write: (bytes: Uint8Array) =>
          TE.tryCatch(
            () => writeAll(file, bytes),
            (e) => ioFailed(target, `Cannot write temporary file: ${describeUnknown(e)}`),
          ),
        commit: () =>
          TE.tryCatch(
            async () => {
              await file.sync();
              close();
              await usualMode(tempPath, 0o644);
              await Deno.rename(tempPath, target);
              await syncDir(dir);
            },
            (e) => ioFailed(target, `Cannot commit file: ${describeUnknown(e)}`),
          ),
        abort: async () => {
          close();
          await Deno.remove(tempPath).catch(() => undefined);
        },
      };
    },
    (e) => ioFailed(target, `Cannot create temporary file: ${describeUnknown(e)}`),
  );
}

/**
 * Writes `data` to `target` atomically: readers see the old content or the new, never a part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeFileAtomic } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/meta.json`, '{"step":1}')();
 * assert(await Deno.readTextFile(`${dir}/meta.json`) === '{"step":1}');
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function writeFileAtomic(
  target: string,
  data: Uint8Array | string,
): ext.TaskEither<IoFailed, void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return async () => {
    const opened = await openAtomicFile(target)();
    if (opened._tag === "Left") return opened;
    const f = opened.right;
    const written = await f.write(bytes)();
    if (written._tag === "Left") {
      await f.abort();
      return written;
    }
    const committed = await f.commit()();
    if (committed._tag === "Left") await f.abort();
    return committed;
  };
}

/** fsyncs every regular file under `dir`, then `dir` and its subdirectories. */
async function syncTree(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory) await syncTree(p);
    else if (entry.isFile) {
      const f = await Deno.open(p, { read: true, write: true });
      try {
        await f.sync();
      } finally {
        f.close();
      }
    }
  }
  await syncDir(dir);
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Where a previous directory waits while its replacement is renamed in. */
function oldName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.old`);
}

/**
 * Writes a directory atomically. `fill` receives an empty temporary directory
 * beside `target` and writes the content there; only when it succeeds is the
 * temporary directory flushed and renamed to `target`. A previous `target` is
 * kept (moved to a hidden `.name.old`) until the new one is in place, then
 * deleted. If `fill` fails, the temporary directory is removed and `target`
 * is untouched.
 *
 * A crash between the two renames leaves no `target` but a complete
 * `.name.old`; {@link recoverDir} puts it back, so call it before reading.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeDirAtomic, writeFileAtomic } from "./atomic.ts";
 * const root = await Deno.makeTempDir();
 * await writeDirAtomic(`${root}/ckpt`, (tmp) => writeFileAtomic(`${tmp}/w.bin`, "x"))();
 * assert(await Deno.readTextFile(`${root}/ckpt/w.bin`) === "x");
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function writeDirAtomic<Err>(
  target: string,
  fill: (tempDir: string) => ext.TaskEither<Err, void>,
): ext.TaskEither<Err | IoFailed, void> {
  return async () => {
    const { dir, prefix } = hiddenSibling(target, "tmp");
    let tempDir: string;
    try {
      await Deno.mkdir(dir, { recursive: true });
      tempDir = await Deno.makeTempDir({ dir, prefix });
    } catch (e) {
      return E.left(ioFailed(target, `Cannot create temporary directory: ${describeUnknown(e)}`));
    }
    const filled = await fill(tempDir)();
    if (filled._tag === "Left") {
      await Deno.remove(tempDir, { recursive: true }).catch(() => undefined);
      return filled;
    }
    try {
      await syncTree(tempDir);
      await usualMode(tempDir, 0o755);
      const old = oldName(target);
      if (await exists(target)) {
        // A stale `.old` is from an earlier crash after `target` was restored: drop it.
        if (await exists(old)) await Deno.remove(old, { recursive: true });
        await Deno.rename(target, old);
      }
      await Deno.rename(tempDir, target);
      await syncDir(dir);
      if (await exists(old)) await Deno.remove(old, { recursive: true });
      return E.right(undefined);
    } catch (e) {
      await Deno.remove(tempDir, { recursive: true }).catch(() => undefined);
      return E.left(ioFailed(target, `Cannot commit directory: ${describeUnknown(e)}`));
    }
  };
}

/** What {@link recoverDir} found. */
export type RecoverOutcome = "present" | "restored" | "absent";

/**
 * Repairs what a crash inside {@link writeDirAtomic} can leave: if `target`
 * is missing but its previous version waits as `.name.old`, renames it back.
 * Unfinished temporaries of dead writers (`.name.tmp-*`) are removed. Returns
 * what it found.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recoverDir } from "./atomic.ts";
 * const root = await Deno.makeTempDir();
 * const r = await recoverDir(`${root}/ckpt`)();
 * assert(r._tag === "Right" && r.right === "absent");
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export function recoverDir(target: string): ext.TaskEither<IoFailed, RecoverOutcome> {
  return TE.tryCatch(
    async () => {
      const dir = path.dirname(target);
      await removeStaleTemps(target);
      if (await exists(target)) return "present" as const;
      const old = oldName(target);
      if (!(await exists(old))) return "absent" as const;
      await Deno.rename(old, target);
      await syncDir(dir);
      return "restored" as const;
    },
    (e) => ioFailed(target, `Cannot recover directory: ${describeUnknown(e)}`),
  );
}
