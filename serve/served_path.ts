/**
 * The folders the dashboard serves, and the one door from a request's path to a file: a path
 * names a served folder by its index, then segments below it. Anything that could reach outside
 * (`..`, `.`, an empty segment, a `/` or `\` smuggled in by percent-encoding, a symlink whose
 * target lies elsewhere) resolves to nothing, so the server answers 404 for it.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown, type ext, type IoFailed, ioFailed } from "../base/mod.ts";

/** A folder the dashboard serves: as the user named it, and its real path (symlinks resolved). */
export interface ServedRoot {
  /** The folder as given on the command line. */
  readonly given: string;
  /** Its real path, the bound every request must stay within. */
  readonly real: string;
}

/**
 * The served folders, each an existing directory; the first that is not is an `IoFailed`
 * naming it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { servedRoots } from "./served_path.ts";
 * const r = await servedRoots(["/no/such/folder"]);
 * assert(r._tag === "Left" && r.left.path === "/no/such/folder");
 * ```
 */
export async function servedRoots(
  dirs: readonly string[],
): Promise<ext.Either<IoFailed, ServedRoot[]>> {
  const roots: ServedRoot[] = [];
  for (const given of dirs) {
    try {
      const real = await Deno.realPath(given);
      if (!(await Deno.stat(real)).isDirectory) {
        return E.left(ioFailed(given, "cannot serve it: not a directory"));
      }
      roots.push({ given, real });
    } catch (e) {
      return E.left(ioFailed(given, `cannot serve it: ${describeUnknown(e)}`));
    }
  }
  return E.right(roots);
}

/** The segments of a percent-encoded path, decoded, or undefined when one is not a plain name. */
function plainSegments(encoded: string): string[] | undefined {
  const out: string[] = [];
  for (const raw of encoded.split("/")) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (seg === "" || seg === "." || seg === "..") return undefined;
    if (/[\\/\0]/.test(seg)) return undefined;
    out.push(seg);
  }
  return out;
}

/**
 * The real path that `id` (`<root index>/<segment>/…`, percent-encoded as in a URL) names inside
 * a served folder, or undefined when it names nothing there: an unknown index, a segment that
 * is not a plain name, a path that does not exist, or one whose real path (symlinks followed)
 * leaves its folder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveServed } from "./served_path.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/run`);
 * const roots = [{ given: dir, real: await Deno.realPath(dir) }];
 * assert.equal(await resolveServed(roots, "0/run"), `${roots[0]!.real}/run`);
 * assert.equal(await resolveServed(roots, "0/run/%2e%2e/%2e%2e"), undefined);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function resolveServed(
  roots: readonly ServedRoot[],
  id: string,
): Promise<string | undefined> {
  const segments = plainSegments(id);
  if (segments === undefined) return undefined;
  const [index, ...rest] = segments;
  if (index === undefined || !/^\d+$/.test(index)) return undefined;
  const root = roots[Number(index)];
  if (root === undefined) return undefined;
  let real: string;
  try {
    real = await Deno.realPath([root.real, ...rest].join("/"));
  } catch {
    return undefined;
  }
  return real === root.real || real.startsWith(`${root.real}/`) ? real : undefined;
}

/** The id of `path`, a folder inside served folder `index` (`rel` below it), as URLs carry it. */
export function servedId(index: number, rel: readonly string[]): string {
  return [String(index), ...rel].map(encodeURIComponent).join("/");
}
