/**
 * What the PyTorch trainer reads its rows from: per split, a segment table
 * `<split>.segments.json` naming the token files and the runs of them the split is made of,
 * in order. A split backed by token shards (or a view of them) names the shard files
 * themselves, so nothing is copied; a split held in memory is written once as `<split>.bin`
 * (little-endian, the stream's dtype) and named as a single segment. `torch_engine/data.py`
 * memory-maps each file and reads a window across segments. Written once per run process,
 * atomically (a table is renamed into place after the files it names).
 *
 * Table: `{ "format": "step-token-segments", "version": 1, "tokens": N,
 * "files": [{ "path", "dtype": "<u2" | "<u4" }], "segments": [[file, start, length], …] }`
 * with `start` and `length` counted in tokens.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import { describeUnknown, type KernelFailed, kernelFailed } from "../base/mod.ts";
import { type FileSegment, forEachChunk, type TokenStream } from "../data/mod.ts";
import type { TokenStreams } from "../pipeline/mod.ts";
import { writeFileAtomic } from "../store/mod.ts";

/** The segment table's `format`. */
export const SEGMENT_TABLE_FORMAT = "step-token-segments";

/** NumPy's name for a stored id type. */
function numpyDtype(dtype: FileSegment["dtype"]): "<u2" | "<u4" {
  return dtype === "uint16" ? "<u2" : "<u4";
}

/** The JSON of a segment table over `segments`. */
export function segmentTable(segments: readonly FileSegment[]): string {
  const files: { path: string; dtype: string }[] = [];
  const index = new Map<string, number>();
  const rows: [number, number, number][] = [];
  let tokens = 0;
  for (const s of segments) {
    let f = index.get(s.file);
    if (f === undefined) {
      f = files.length;
      index.set(s.file, f);
      files.push({ path: path.resolve(s.file), dtype: numpyDtype(s.dtype) });
    }
    rows.push([f, s.start, s.length]);
    tokens += s.length;
  }
  return JSON.stringify({
    format: SEGMENT_TABLE_FORMAT,
    version: 1,
    tokens,
    files,
    segments: rows,
  });
}

/** Writes a stream's tokens to `file` (through a temporary name), chunk by chunk. */
async function writeStream(file: string, stream: TokenStream): Promise<void> {
  const tmp = `${file}.tmp-${Deno.pid}`;
  const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const narrow = stream.dtype === "uint16";
    forEachChunk(stream, (chunk) => {
      const ids = narrow ? Uint16Array.from(chunk) : chunk;
      const bytes = new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
      for (let done = 0; done < bytes.length;) done += out.writeSync(bytes.subarray(done));
    });
    out.syncSync();
  } finally {
    out.close();
  }
  await Deno.rename(tmp, file);
}

/**
 * Writes `dir/{train,validation}.segments.json`, and `dir/<split>.bin` for a split held in
 * memory.
 */
export function writeTokenFiles(dir: string, t: TokenStreams): TE.TaskEither<KernelFailed, void> {
  return async () => {
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      return E.left(kernelFailed(`Cannot create ${dir}: ${describeUnknown(e)}`));
    }
    for (const [name, stream] of [["train", t.train], ["validation", t.validation]] as const) {
      let segments: FileSegment[];
      if (stream.segments !== undefined) segments = stream.segments();
      else {
        const file = path.resolve(dir, `${name}.bin`);
        try {
          await writeStream(file, stream);
        } catch (e) {
          return E.left(
            kernelFailed(`Cannot write the token file ${name}.bin: ${describeUnknown(e)}`),
          );
        }
        segments = stream.length === 0
          ? []
          : [{ file, dtype: stream.dtype, start: 0, length: stream.length }];
      }
      const table = `${name}.segments.json`;
      const w = await writeFileAtomic(path.join(dir, table), segmentTable(segments))();
      if (E.isLeft(w)) {
        return E.left(kernelFailed(`Cannot write the token file ${table}: ${w.left.message}`));
      }
    }
    return E.right(undefined);
  };
}
