/**
 * Fixtures the command tests share: a tiny random-weight model written the way a run writes its
 * `final/`, a temporary folder removed afterwards, and a small multiple-choice task.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { assert } from "./assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { runDirStore } from "../effects/run_dir.ts";
import { type TokenizerFiles, tokenizerFiles } from "../checkpoint/mod.ts";
import { byteTokenizer } from "../data/mod.ts";
import { disposeParams, exportParams, initBackend, initParams } from "../kernels/mod.ts";

/** What a run writes beside a byte model's weights: HF's tokenizer files and the record. */
export const BYTES_FILES: TokenizerFiles = tokenizerFiles("bytes", byteTokenizer());

/** A byte model that loads in a blink; its context holds the chat and Alpaca templates. */
export const TINY_SHAPE: LlamaShape = {
  hidden: 16,
  intermediate: 32,
  heads: 2,
  kvHeads: 2,
  layers: 1,
  vocab: 257,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 256,
};

/** Options of {@link writeTinyModel}. */
export interface TinyModelOptions {
  readonly shape?: LlamaShape;
  readonly seed?: number;
  /** Changes a weight in place before it is saved (a NaN head, an overflowing one). */
  readonly edit?: (name: string, data: Float32Array) => void;
}

/** A run folder `runDir` whose `final/` holds random weights (byte tokenizer); its final/. */
export async function writeTinyModel(
  runDir: string,
  options: TinyModelOptions = {},
): Promise<string> {
  const shape = options.shape ?? TINY_SHAPE;
  assert(E.isRight(await initBackend("cpu")));
  const params = initParams(shape, shape.layers, options.seed ?? 7);
  const records = await exportParams(params);
  disposeParams(params);
  for (const r of records) options.edit?.(r.name, r.data);
  const saved = await runDirStore(runDir, BYTES_FILES).saveFinal({
    params: records,
    moments: [],
    meta: { trainable: [], loraScale: 1, adamStep: 0 },
  }, shape)();
  assert(E.isRight(saved));
  return `${runDir}/final`;
}

/** Runs `f` in a new temporary folder (its real path, links resolved), removed afterwards. */
export async function withTempDir(
  prefix: string,
  f: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix }));
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether anything (a link included) is at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** A multiple-choice task definition reading `colors.jsonl` beside it. */
export const COLORS_TASK = `name: colors
kind: multiple_choice
reader: { data: colors.jsonl }
prompt: "Q: {query}\\nA:"
choices: "{choices}"
gold: "{gold}"
`;

/** `n` records of {@link COLORS_TASK}, one per line. */
export function colorsData(n: number, choices: readonly string[] = ["red", "blue"]): string {
  return Array.from(
    { length: n },
    (_, i) => JSON.stringify({ query: `item ${i}`, choices, gold: i % choices.length }),
  ).join("\n") + "\n";
}
