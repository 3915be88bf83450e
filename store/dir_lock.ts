/**
 * One writer per folder: an OS file lock (`flock`, exclusive) on a file inside it, held for as
 * long as the writing process lives and released by the OS when it dies, `kill -9` included.
 * The pid of the holder is written into the lock file so a refusal can name it.
 *
 * Run directories, fine-tuning runs and comparison folders take it; a command about to
 * replace a folder asks {@link lockHolder} first, so it never removes a folder a live process
 * is writing.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown, type ext, type IoFailed, ioFailed } from "../base/mod.ts";

/** The lock file's name inside the folder it guards. */
export const LOCK_FILE = ".lock";

/** A held lock: `release` frees it (the OS frees it too if the process dies). */
export interface DirLock {
  /** Unlocks and closes the lock file (the file stays for the next holder); again, does nothing. */
  release(): void;
}

// flock's exclusive mode: one holder.
const EXCLUSIVE = true;

/**
 * Whether a live process holds `dir`'s lock: `{ pid }` (the pid it recorded, or undefined
 * when it wrote none) when one does, undefined when the folder has no lock file or nobody
 * holds it. Probing takes the lock for an instant and gives it back; it never creates the file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockDir, lockHolder } from "./dir_lock.ts";
 * const dir = await Deno.makeTempDir();
 * assert.equal(await lockHolder(dir), undefined);
 * const held = await lockDir(dir, "run");
 * assert(held._tag === "Right");
 * // flock locks belong to the open file, so even this process's own lock counts as held.
 * assert.deepEqual(await lockHolder(dir), { pid: Deno.pid });
 * held.right.release();
 * assert.equal(await lockHolder(dir), undefined);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function lockHolder(dir: string): Promise<{ pid?: number } | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${dir}/${LOCK_FILE}`, { read: true });
  } catch {
    return undefined;
  }
  try {
    if (await file.tryLock(EXCLUSIVE)) {
      await file.unlock();
      return undefined;
    }
    const pid = Number.parseInt(
      (await Deno.readTextFile(`${dir}/${LOCK_FILE}`).catch(() => "")).trim(),
      10,
    );
    return Number.isSafeInteger(pid) && pid > 0 ? { pid } : {};
  } finally {
    file.close();
  }
}

/**
 * Takes `dir`'s lock without waiting (the folder must exist). Another live holder is an
 * `IoFailed` naming the folder, the holder's pid and `what` is writing it.
 */
export async function lockDir(dir: string, what: string): Promise<ext.Either<IoFailed, DirLock>> {
  const path = `${dir}/${LOCK_FILE}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true });
  } catch (e) {
    return E.left(ioFailed(dir, `cannot lock it: ${describeUnknown(e)}`));
  }
  try {
    if (!(await file.tryLock(EXCLUSIVE))) {
      const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
      file.close();
      return E.left(ioFailed(
        dir,
        `another ${what} is writing it${holder === "" ? "" : ` (pid ${holder})`}; wait for it ` +
          "to finish or choose another --out",
      ));
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch (e) {
    file.close();
    return E.left(ioFailed(dir, `cannot lock it: ${describeUnknown(e)}`));
  }
  return E.right({
    release: () => {
      try {
        file.unlockSync();
        file.close();
      } catch {
        // Already released.
      }
    },
  });
}
