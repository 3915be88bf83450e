/**
 * The one rule every writing command applies to its outputs before it writes anything: an
 * output (a file, a folder replaced whole, or a folder a run writes into) is never one of the
 * command's inputs, never inside one, never above one it would replace, never a checkpoint,
 * run or other used folder the command did not create unless `--force` says so, and `--force`
 * never replaces a folder that holds an input or that a live process holds (its lock).
 *
 * Paths are compared as the OS resolves them: absolute, symbolic links followed on the part
 * that exists, `.`/`..` and repeated or trailing slashes applied, and two names of one file
 * (a hard link) counted as the same file. A path that does not exist yet resolves as it will once
 * a writer has made its missing folders: `out/new/../model.safetensors` is `out/model.safetensors`,
 * and a link met after a missing name is still followed.
 *
 * A refusal is a `ConfigInvalid` (exit 2) naming the flag, the output and the input it would
 * destroy; an output that cannot be written (a missing or unwritable folder, a folder held by
 * a live process) is an `IoFailed` (exit 4). Checking writes nothing that stays behind. A
 * command then writes where {@link checkOutput} says ({@link writePath}), so its `mkdir -p` and
 * renames act on the place the check looked at.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { basename, dirname, isAbsolute, join, parse, relative, sep as SEP } from "node:path";
import {
  type ConfigInvalid,
  configInvalid,
  describeUnknown,
  type ext,
  type IoFailed,
  ioFailed,
} from "../base/mod.ts";
import { LOCK_FILE, lockHolder } from "../store/mod.ts";
import { RUN_DIR } from "./run_layout.ts";

/** One path a command reads. */
export interface InputPath {
  /** How a message names it: `the checkpoint`, `the --data file`. */
  readonly what: string;
  /** The path as the user gave it. */
  readonly path: string;
  /**
   * A checkpoint is its whole folder: given as one of its files (`final/model.safetensors`),
   * the folder that holds the file is the input.
   */
  readonly checkpoint?: boolean;
}

/** How a `run`-like command treats the folder it writes into (its `--resume` / `--force`). */
export type IntoMode = "fresh" | "resume" | "replace";

/** One path a command writes. */
export type OutputPath =
  /** One file, replaced atomically. `makeParent`: the command creates its missing folders. */
  | {
    readonly kind: "file";
    readonly flag?: string;
    readonly path: string;
    readonly makeParent?: boolean;
  }
  /** A folder replaced whole; `replace` (`--force`) allows replacing one that exists. */
  | {
    readonly kind: "folder";
    readonly flag?: string;
    readonly path: string;
    readonly replace: boolean;
  }
  /**
   * A folder the command writes `names` into (a run directory). `fresh` refuses a folder holding
   * anything else; `replace` (`--force`) removes the earlier `names` first; `resume` continues
   * what is there. The command takes the folder's lock itself before touching anything in it.
   */
  | {
    readonly kind: "into";
    readonly flag?: string;
    readonly path: string;
    /** What writes it, for messages: `run`, `fine-tuning run`. */
    readonly what: string;
    readonly names: readonly string[];
    readonly mode: IntoMode;
  };

/** Where an output lies relative to an input. */
export type Relation = "same" | "inside" | "above" | "apart";

/**
 * The absolute, link-free form of a path that may not exist yet, resolved name by name as the
 * OS does once a writer has made the missing folders (`mkdir -p`): an existing link is followed,
 * a missing name is a folder to be, `..` goes up from wherever the path has got to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalPath } from "./output_path.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * await Deno.mkdir(`${dir}/a/b`, { recursive: true });
 * await Deno.symlink(`${dir}/a/b`, `${dir}/link`);
 * assert.equal(await canonicalPath(`${dir}/new/../link/../x/`), `${dir}/a/x`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function canonicalPath(p: string): Promise<string> {
  let at = isAbsolute(p) ? parse(p).root : await Deno.realPath(Deno.cwd());
  for (const name of p.split(SEP === "/" ? "/" : /[\\/]/)) {
    if (name === "" || name === ".") continue;
    if (name === "..") {
      at = dirname(at);
      continue;
    }
    const next = join(at, name);
    const info = await Deno.lstat(next).catch(() => undefined);
    // A dangling link is taken as written: what it would create is beyond this check.
    at = info?.isSymlink === true ? await Deno.realPath(next).catch(() => next) : next;
  }
  return at;
}

async function statOf(p: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(p);
  } catch {
    return undefined;
  }
}

/** Whether two existing paths are one file under two names (a hard link). */
async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = [await statOf(a), await statOf(b)];
  return x !== undefined && y !== undefined && x.ino !== null && x.ino === y.ino &&
    x.dev === y.dev;
}

function under(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith(SEP) ? parent : parent + SEP);
}

/**
 * Where `out` lies relative to `input`: the same file or folder, inside it, above it (holding
 * it), or apart.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathRelation } from "./output_path.ts";
 * assert.equal(await pathRelation("runs/t0", "runs/t0/final"), "above");
 * assert.equal(await pathRelation("runs/t0/final/x.json", "runs/t0/final"), "inside");
 * assert.equal(await pathRelation("runs/t0/./final/", "runs/t0/x/../final"), "same");
 * assert.equal(await pathRelation("out/hf", "runs/t0/final"), "apart");
 * ```
 */
export async function pathRelation(out: string, input: string): Promise<Relation> {
  const [o, i] = [await canonicalPath(out), await canonicalPath(input)];
  if (o === i || await sameFile(o, i)) return "same";
  if (under(o, i)) return "inside";
  if (under(i, o)) return "above";
  return "apart";
}

/** The folder a checkpoint given as one of its files stands for. */
async function inputPath(input: InputPath): Promise<string> {
  if (input.checkpoint !== true) return input.path;
  return (await statOf(input.path))?.isFile === true ? dirname(input.path) : input.path;
}

function whereOf(out: OutputPath): string {
  return out.flag === undefined ? out.path : `${out.flag} ${out.path}`;
}

function another(out: OutputPath): string {
  return out.flag === undefined ? "another output folder" : `another ${out.flag}`;
}

/** The name (first path element) under `folder` that holds `inner`. */
async function heldName(folder: string, inner: string): Promise<string> {
  const rel = relative(await canonicalPath(folder), await canonicalPath(inner));
  return rel.split(SEP)[0] ?? rel;
}

/** Why writing `out` would destroy `input`, or undefined when it leaves it alone. */
async function conflict(out: OutputPath, input: InputPath): Promise<ConfigInvalid | undefined> {
  const path = await inputPath(input);
  const relation = await pathRelation(out.path, path);
  const named = `${input.what} "${input.path}"`;
  const where = whereOf(out);
  switch (relation) {
    case "apart":
      return undefined;
    case "same":
      return configInvalid(
        where,
        `is ${named}: writing it would destroy the input; choose ${another(out)}`,
      );
    case "inside":
      return configInvalid(
        where,
        `is inside ${named}: writing there would change the input; choose ${another(out)}`,
      );
    case "above": {
      if (out.kind !== "into") {
        return configInvalid(
          where,
          `holds ${named}; writing it would replace the input: choose ${another(out)}`,
        );
      }
      if (out.mode === "replace") {
        return configInvalid(
          where,
          `holds ${named}; --force would clear the folder that holds the input: choose ${
            another(out)
          }`,
        );
      }
      const name = await heldName(out.path, path);
      return out.names.includes(name)
        ? configInvalid(
          where,
          `holds ${named} in ${name}, which a ${out.what} writes: choose ${another(out)}`,
        )
        : undefined;
    }
  }
}

/**
 * The first input that writing `out` would destroy, as the refusal naming it: `out` is the
 * input, inside it, or above it where the write replaces or clears what it holds. Only the
 * paths are compared; {@link checkOutput} also looks at what is already at `out`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { inputConflict } from "./output_path.ts";
 * const ck = { what: "the checkpoint", path: "runs/t0/final" };
 * const inside = await inputConflict(
 *   { kind: "file", flag: "--out", path: "runs/t0/final/model.safetensors" },
 *   [ck],
 * );
 * assert(inside?.message.startsWith('is inside the checkpoint "runs/t0/final"'));
 * const beside = await inputConflict({ kind: "file", path: "runs/t0/eval.json" }, [ck]);
 * assert.equal(beside, undefined);
 * ```
 */
export async function inputConflict(
  out: OutputPath,
  inputs: readonly InputPath[],
): Promise<ConfigInvalid | undefined> {
  for (const input of inputs) {
    const refused = await conflict(out, input);
    if (refused !== undefined) return refused;
  }
  return undefined;
}

// What a checkpoint folder holds, to say so when one is refused.
const CHECKPOINT_NAMES = [
  "config.json",
  "model.safetensors",
  "model.safetensors.index.json",
  "state.json",
  "adapter_config.json",
  "adapter_model.safetensors",
  "adapter",
];

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

function listed(names: readonly string[]): string {
  return names.length <= 4 ? names.join(", ") : `${names.slice(0, 4).join(", ")}, …`;
}

function looksLikeCheckpoint(names: readonly string[]): boolean {
  return names.some((n) => CHECKPOINT_NAMES.includes(n));
}

/** Whether `name` is one of `names`, the lock, or a writer's temporary of one of them. */
function ownEntry(name: string, names: readonly string[]): boolean {
  if (name === LOCK_FILE || names.includes(name)) return true;
  const m = /^\.(.+)\.(?:tmp-.*|old)$/.exec(name);
  return m !== null && names.includes(m[1]!);
}

/** Creates and removes a file in `dir` (named as the atomic writers' temporaries are). */
async function probeWritable(dir: string, target: string): Promise<IoFailed | undefined> {
  try {
    const probe = await Deno.makeTempFile({
      dir,
      prefix: `.${basename(target)}.tmp-${Deno.pid}-`,
      suffix: ".probe",
    });
    await Deno.remove(probe);
    return undefined;
  } catch (e) {
    return ioFailed(target, `cannot write in ${dir}: ${describeUnknown(e)}`);
  }
}

/** The nearest folder of `p` that exists (`p` itself when it does). */
async function nearestExisting(p: string): Promise<string> {
  for (let at = p;; at = dirname(at)) {
    if (await statOf(at) !== undefined || dirname(at) === at) return at;
  }
}

/** A file output: not a folder, and its folder exists (or can be made) and takes files. */
async function fileWritable(
  out: Extract<OutputPath, { kind: "file" }>,
): Promise<IoFailed | undefined> {
  if ((await statOf(out.path))?.isDirectory === true) {
    return ioFailed(out.path, "is a folder: name a file to write");
  }
  const parent = dirname(out.path);
  const dir = out.makeParent === true ? await nearestExisting(parent) : parent;
  const info = await statOf(dir);
  if (info === undefined) return ioFailed(out.path, `the folder ${dir} does not exist`);
  if (!info.isDirectory) return ioFailed(out.path, `${dir} is not a folder`);
  return await probeWritable(dir, out.path);
}

/** A folder output: what is there may be replaced or written into. */
async function folderWritable(
  out: Exclude<OutputPath, { kind: "file" }>,
): Promise<ConfigInvalid | IoFailed | undefined> {
  const info = await statOf(out.path);
  if (info === undefined) {
    const dir = await nearestExisting(dirname(out.path));
    if (!(await statOf(dir))?.isDirectory) return ioFailed(out.path, `${dir} is not a folder`);
    return await probeWritable(dir, out.path);
  }
  if (!info.isDirectory) return ioFailed(out.path, "is a file, not a folder");
  const found = await entries(out.path).catch(() => undefined);
  if (found === undefined) return ioFailed(out.path, "cannot list the folder");
  if (out.kind === "folder") {
    const holder = await lockHolder(out.path);
    if (holder !== undefined) {
      return ioFailed(
        out.path,
        `a live process${
          holder.pid === undefined ? "" : ` (pid ${holder.pid})`
        } holds its lock and is writing it; wait for it to finish or choose ${another(out)}`,
      );
    }
    if (found.length === 0 || out.replace) return undefined;
    const what = looksLikeCheckpoint(found)
      ? " (a checkpoint)"
      : found.some((n) => n === RUN_DIR.lock || n === RUN_DIR.metrics)
      ? " (a run folder)"
      : "";
    return configInvalid(
      whereOf(out),
      `already exists${what}; pass --force to replace it, or choose ${another(out)}`,
    );
  }
  if (out.mode !== "fresh") return undefined;
  const foreign = found.filter((n) => !ownEntry(n, out.names));
  if (foreign.length === 0) return undefined;
  return configInvalid(
    whereOf(out),
    `holds ${listed(foreign)}, which no ${out.what} wrote${
      looksLikeCheckpoint(foreign) ? " (it is a checkpoint)" : ""
    }; pass --force to write into it anyway, or choose ${another(out)}`,
  );
}

/**
 * Where a command writes `p`: `p` as given, unless a `.` or `..` follows a name in it (or ends
 * it); then its folder's canonical path and its last name, or the canonical path itself when
 * the last name is `.` or `..`. Writers make missing folders (`mkdir -p`), rename a folder they
 * replace and name their temporaries by joining strings, all of which would read such a
 * spelling otherwise than the OS does (`a/link/../b`, `new/./x`, `out/../out`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writePath } from "./output_path.ts";
 * assert.equal(await writePath("../runs/t0"), "../runs/t0");
 * assert.equal(await writePath("/tmp/x/../y/"), "/tmp/y");
 * ```
 */
export async function writePath(p: string): Promise<string> {
  const names = p.split(SEP === "/" ? "/" : /[\\/]/).filter((n) => n !== "");
  const dot = (n: string) => n === "." || n === "..";
  const first = names.findIndex((n) => !dot(n));
  const tidy = names.slice(Math.max(first, 0)).some(dot) || first < 0;
  if (!tidy) return p;
  const last = basename(p);
  return dot(last) || last === ""
    ? await canonicalPath(p)
    : join(await canonicalPath(dirname(p)), last);
}

/**
 * Checks one output against the command's inputs and what is already at its path, and says
 * where to write it ({@link writePath}). Nothing is written (a probe file that shows a folder
 * takes files is removed at once).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkOutput } from "./output_path.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/q.jsonl`, "{}\n");
 * const input = { what: "--questions", path: `${dir}/q.jsonl` };
 * const same = await checkOutput({ kind: "file", flag: "--out", path: `${dir}/q.jsonl` }, [input]);
 * assert(same._tag === "Left" && same.left._tag === "ConfigInvalid");
 * const missing = await checkOutput({ kind: "file", flag: "--out", path: `${dir}/no/a.json` }, []);
 * assert(missing._tag === "Left" && missing.left._tag === "IoFailed");
 * assert((await checkOutput({ kind: "file", path: `${dir}/a.json` }, [input]))._tag === "Right");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function checkOutput(
  out: OutputPath,
  inputs: readonly InputPath[],
): Promise<ext.Either<ConfigInvalid | IoFailed, string>> {
  if (out.path.trim() === "") {
    return E.left(configInvalid(out.flag ?? "output", "is empty: name a path to write"));
  }
  const refused = await inputConflict(out, inputs);
  if (refused !== undefined) return E.left(refused);
  // What is there is looked at where the command will write.
  const at = { ...out, path: await writePath(out.path) };
  const unwritable = at.kind === "file" ? await fileWritable(at) : await folderWritable(at);
  return unwritable === undefined ? E.right(at.path) : E.left(unwritable);
}
