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
import { toRawTensor, writeFileAtomic } from "../store/mod.ts";

/** Writes `dir/{train,validation}.bin` and `dir/tokens.json`. */
export function writeTokenFiles(dir: string, t: TokenStreams): TE.TaskEither<KernelFailed, void> {
  return async () => {
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      return E.left(kernelFailed(`Cannot create ${dir}: ${e}`));
    }
    const wide = !(t.train instanceof Uint16Array);
    // The safetensors encoder's little-endian bytes, without its header.
    const raw = (name: string, a: Uint16Array | Int32Array) =>
      toRawTensor({ dtype: wide ? "I32" : "U16", shape: [a.length], data: a }, name);
    const train = raw("train", t.train);
    const validation = raw("validation", t.validation);
    if (E.isLeft(train) || E.isLeft(validation)) {
      return E.left(kernelFailed("the token streams do not share one dtype"));
    }
    const files: [string, Uint8Array][] = [
      ["train.bin", train.right.bytes],
      ["validation.bin", validation.right.bytes],
      ["tokens.json", new TextEncoder().encode(JSON.stringify({ dtype: wide ? "<i4" : "<u2" }))],
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
