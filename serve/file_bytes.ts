/**
 * Reading the end of a file that another process appends to: the dashboard reads a long run's
 * log once, then only what was appended since, and its last lines for the run's status.
 *
 * @module
 */

/**
 * The bytes of `path` from `offset` to its end, or `truncated` when the file is now shorter
 * than `offset` (it was rewritten). A negative `offset` counts back from the end.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readBytesFrom } from "./file_bytes.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/f`, "abcdef");
 * assert.deepEqual(await readBytesFrom(`${dir}/f`, 4), new TextEncoder().encode("ef"));
 * assert.deepEqual(await readBytesFrom(`${dir}/f`, -2), new TextEncoder().encode("ef"));
 * assert.equal(await readBytesFrom(`${dir}/f`, 9), "truncated");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readBytesFrom(
  path: string,
  offset: number,
): Promise<Uint8Array | "truncated"> {
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const start = offset < 0 ? Math.max(0, size + offset) : offset;
  if (size < start) return "truncated";
  await file.seek(start, Deno.SeekMode.Start);
  const buf = new Uint8Array(size - start);
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return buf.subarray(0, got);
}
