/**
 * The token streams as flat files the PyTorch trainer memory-maps: `train.bin` and
 * `validation.bin` (little-endian uint16 when the vocabulary fits, else int32) and
 * `tokens.json` naming the NumPy dtype. Written once per run process, atomically.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import { type KernelFailed, kernelFailed } from "../base/mod.ts";
import type { TokenStreams } from "../pipeline/mod.ts";
import { writeFileAtomic } from "../store/mod.ts";

const LITTLE_ENDIAN = true;

function littleEndianBytes(a: Uint16Array | Int32Array): Uint8Array {
  const bytes = new Uint8Array(a.byteLength);
  const view = new DataView(bytes.buffer);
  if (a instanceof Uint16Array) a.forEach((v, i) => view.setUint16(2 * i, v, LITTLE_ENDIAN));
  else a.forEach((v, i) => view.setInt32(4 * i, v, LITTLE_ENDIAN));
  return bytes;
}

/** Writes `dir/{train,validation}.bin` and `dir/tokens.json`. */
export function writeTokenFiles(dir: string, t: TokenStreams): TE.TaskEither<KernelFailed, void> {
  return async () => {
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      return E.left(kernelFailed(`Cannot create ${dir}: ${e}`));
    }
    const dtype = t.train instanceof Uint16Array ? "<u2" : "<i4";
    const files: [string, Uint8Array][] = [
      ["train.bin", littleEndianBytes(t.train)],
      ["validation.bin", littleEndianBytes(t.validation)],
      ["tokens.json", new TextEncoder().encode(JSON.stringify({ dtype }))],
    ];
    for (const [name, bytes] of files) {
      const w = await writeFileAtomic(path.join(dir, name), bytes)();
      if (E.isLeft(w)) {
        return E.left(kernelFailed(`Cannot write the token file ${name}: ${w.left.message}`));
      }
    }
    return E.right(undefined);
  };
}
