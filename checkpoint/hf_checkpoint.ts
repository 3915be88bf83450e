/**
 * Hugging Face LLaMA checkpoints on disk: `config.json` plus either
 * `model.safetensors` or shards `model-0000k-of-0000n.safetensors` with
 * `model.safetensors.index.json` (`{"metadata": {"total_size": bytes},
 * "weight_map": {tensor: file}}`), as `save_pretrained` writes them.
 *
 * Tensor names are HF's; linear weights are [out, in] and are transposed on
 * the way in and out (bit-exact); dtypes F32, F16 and BF16 are read, and one
 * of them is written. Every file carries `{"format": "pt"}` metadata, which
 * `transformers` requires of safetensors it loads.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  configInvalid,
  contentInvalid,
  type ext,
  ioFailed,
  LM_HEAD,
  paramShapes,
} from "../base/mod.ts";
import {
  createSafetensorsWriter,
  type SafetensorsReader,
  type TensorSpec,
  writeFileAtomic,
} from "../store/mod.ts";
import { exists, jsonText, openAll, readJson } from "./_files.ts";
import {
  fromHfConfig,
  type HfDtype,
  safetensorsDtype,
  toHfConfig,
  torchDtype,
} from "./hf_config.ts";
import { hfShape, isLinearWeight, transpose } from "./layout.ts";
import {
  type CkptError,
  floatValues,
  type LazyTensor,
  type ModelView,
  shapeMismatch,
  sizeOf,
} from "./model_view.ts";

/** The single-file weights name. */
export const SINGLE_FILE = "model.safetensors";
/** The shard index name. */
export const INDEX_FILE = "model.safetensors.index.json";
/** `save_pretrained`'s default `max_shard_size`. */
export const DEFAULT_MAX_SHARD_BYTES = 5e9;

/** The name of shard `k` (1-based) of `n`: `model-00001-of-00003.safetensors`. */
export function shardName(k: number, n: number): string {
  return `model-${String(k).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`;
}

/**
 * Splits tensors, in order, into shards of at most `maxBytes` (a tensor larger than that
 * gets a shard of its own), as `save_pretrained` does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planShards } from "./hf_checkpoint.ts";
 * const s = planShards([["a", 6], ["b", 6], ["c", 3]], 10);
 * assert(JSON.stringify(s) === '[["a"],["b","c"]]');
 * ```
 */
export function planShards(
  sizes: ReadonlyArray<readonly [string, number]>,
  maxBytes: number,
): string[][] {
  const shards: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const [name, size] of sizes) {
    if (current.length > 0 && bytes + size > maxBytes) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(name);
    bytes += size;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

/** Tensor name → file, from the index or the single file. */
async function weightFiles(dir: string): Promise<ext.Either<CkptError, Map<string, string>>> {
  const indexPath = `${dir}/${INDEX_FILE}`;
  if (await exists(indexPath)) {
    const index = await readJson(indexPath)();
    if (E.isLeft(index)) return index;
    const map = (index.right as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) {
      return E.left(configInvalid(`${indexPath}: weight_map`, "missing or not an object"));
    }
    const out = new Map<string, string>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== "string" || file.includes("/") || file.includes("\\")) {
        return E.left(
          configInvalid(
            `${indexPath}: weight_map.${name}`,
            `bad file name ${JSON.stringify(file)}`,
          ),
        );
      }
      out.set(name, file);
    }
    return E.right(out);
  }
  if (await exists(`${dir}/${SINGLE_FILE}`)) return E.right(new Map([["*", SINGLE_FILE]]));
  const bin = await exists(`${dir}/pytorch_model.bin`) ||
    await exists(`${dir}/pytorch_model.bin.index.json`);
  return E.left(
    ioFailed(
      dir,
      bin
        ? "only safetensors weights are supported, found pytorch_model.bin (re-save with safe_serialization=True)"
        : `no ${SINGLE_FILE} or ${INDEX_FILE}`,
    ),
  );
}

/** Pairs every tensor with its reader, checking the index and the files agree. */
function locate(
  dir: string,
  files: Map<string, string>,
  readers: ReadonlyMap<string, SafetensorsReader>,
): ext.Either<CkptError, Map<string, SafetensorsReader>> {
  const where = new Map<string, SafetensorsReader>();
  if (files.has("*")) {
    const r = readers.get(SINGLE_FILE)!;
    for (const [name] of r.header.tensors) where.set(name, r);
    return E.right(where);
  }
  for (const [name, file] of files) {
    const r = readers.get(file)!;
    if (r.info(name) === undefined) {
      return E.left(
        contentInvalid(
          `${dir}/${INDEX_FILE}`,
          `weight_map puts "${name}" in ${file}, which lacks it`,
        ),
      );
    }
    where.set(name, r);
  }
  for (const [file, r] of readers) {
    for (const [name] of r.header.tensors) {
      if (files.get(name) !== file) {
        return E.left(
          contentInvalid(
            `${dir}/${INDEX_FILE}`,
            `${file} holds "${name}", which weight_map does not list`,
          ),
        );
      }
    }
  }
  return E.right(where);
}

/**
 * Opens a Hugging Face LLaMA checkpoint directory and checks every tensor against
 * `config.json` (names, shapes, float dtypes) before any weight is read. With
 * `tie_word_embeddings`, a stored `lm_head.weight` is ignored, as `transformers` does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openHfCheckpoint } from "./hf_checkpoint.ts";
 * const r = await openHfCheckpoint("/no/such/dir")();
 * assert(r._tag === "Left");
 * ```
 */
export function openHfCheckpoint(dir: string): ext.TaskEither<CkptError, ModelView> {
  return async () => {
    const configPath = `${dir}/config.json`;
    const json = await readJson(configPath)();
    if (E.isLeft(json)) return json;
    const shape = fromHfConfig(json.right, configPath);
    if (E.isLeft(shape)) return shape;
    const files = await weightFiles(dir);
    if (E.isLeft(files)) return files;
    const names = [...new Set(files.right.values())];
    const opened = await openAll(names.map((f) => `${dir}/${f}`));
    if (E.isLeft(opened)) return opened;
    const readers = new Map(names.map((f, i) => [f, opened.right[i]!] as const));
    const close = (): void => readers.forEach((r) => r.close());
    const fail = (e: CkptError): ext.Either<CkptError, never> => {
      close();
      return E.left(e);
    };
    const located = locate(dir, files.right, readers);
    if (E.isLeft(located)) return fail(located.left);
    const because = `${configPath} (${describe(shape.right)})`;
    const tensors: LazyTensor[] = [];
    const expected = new Set<string>();
    for (const [name, ours] of paramShapes(shape.right)) {
      expected.add(name);
      const reader = located.right.get(name);
      if (reader === undefined) {
        return fail(contentInvalid(dir, `tensor "${name}" is missing (${because})`));
      }
      const info = reader.info(name)!;
      const bad = shapeMismatch(name, info.shape, hfShape(name, ours), because);
      if (bad !== undefined) return fail(configInvalid(reader.path, bad));
      if (torchDtype(info.dtype) === undefined) {
        return fail(
          configInvalid(
            `${reader.path}: tensor "${name}"`,
            `dtype ${info.dtype} is not supported (expected F32, F16 or BF16)`,
          ),
        );
      }
      tensors.push({ name, shape: ours, load: () => loadHf(reader, name, ours) });
    }
    for (const [name, reader] of located.right) {
      // Old `transformers` saved the rotary inverse frequencies; they are recomputed on load.
      if (expected.has(name) || name.endsWith(".rotary_emb.inv_freq")) continue;
      if (name === LM_HEAD && shape.right.tiedEmbeddings) continue;
      return fail(contentInvalid(reader.path, `unexpected tensor "${name}" (${because})`));
    }
    const declared = (json.right as { torch_dtype?: unknown }).torch_dtype;
    const first = located.right.get(tensors[0]!.name)!.info(tensors[0]!.name)!.dtype;
    const dtype = typeof declared === "string" && isHfDtype(declared)
      ? safetensorsDtype(declared)
      : first;
    return E.right({ shape: shape.right, dtype, tensors, adapters: undefined, source: dir, close });
  };
}

function isHfDtype(s: string): s is HfDtype {
  return s === "float32" || s === "float16" || s === "bfloat16";
}

function describe(s: { layers: number; hidden: number; vocab: number }): string {
  return `${s.layers} layers, hidden ${s.hidden}, vocab ${s.vocab}`;
}

function loadHf(
  reader: SafetensorsReader,
  name: string,
  ours: readonly number[],
): ext.TaskEither<CkptError, Float32Array> {
  return TE.flatMapEither(reader.read(name), (raw) => {
    const values = floatValues(raw, reader.path, name);
    if (E.isLeft(values) || !isLinearWeight(name)) return values;
    // HF [out, in] → ours [in, out].
    return E.right(transpose(values.right, ours[1]!, ours[0]!));
  });
}

/** Options of {@link writeHfCheckpoint}. */
export interface HfWriteOptions {
  /** Element type of the stored weights: float32, float16 or bfloat16 (rounded to nearest even). */
  readonly dtype: HfDtype;
  /** Largest shard in bytes; a model above it is split, with an index. */
  readonly maxShardBytes: number;
  /**
   * The tokeniser's special ids, written as `config.json`'s `bos_token_id` (null: none) and
   * `eos_token_id`, where `transformers` takes them for generation; unset: not written (and
   * LlamaConfig's defaults, 1 and 2, apply).
   */
  readonly specialTokens?: SpecialTokens;
}

/** A tokeniser's special ids as a Hugging Face `config.json` names them. */
export interface SpecialTokens {
  /** The id put before every document; undefined when the tokeniser prepends none. */
  readonly bos?: number;
  /** The end-of-text id. */
  readonly eos: number;
}

/** What {@link writeHfCheckpoint} wrote. */
export interface HfWritten {
  /** File names, relative to the directory. */
  readonly files: readonly string[];
  /** Bytes of tensor data. */
  readonly totalBytes: number;
}

/**
 * Writes the view's weights (not its adapters) as a Hugging Face LLaMA checkpoint into
 * the existing directory `dir`, one tensor in memory at a time. Wrap it in
 * `writeDirAtomic` so a failure leaves nothing behind.
 */
export function writeHfCheckpoint(
  view: ModelView,
  dir: string,
  options: HfWriteOptions,
): ext.TaskEither<CkptError, HfWritten> {
  return async () => {
    const dtype = safetensorsDtype(options.dtype);
    const specs = new Map<string, TensorSpec>(
      view.tensors.map((t) => [t.name, { dtype, shape: hfShape(t.name, t.shape) }]),
    );
    const bytesOf = (s: TensorSpec): number => sizeOf(s.shape) * (dtype === "F32" ? 4 : 2);
    const shards = planShards(
      [...specs].map(([n, s]) => [n, bytesOf(s)] as const),
      options.maxShardBytes,
    );
    const byName = new Map(view.tensors.map((t) => [t.name, t]));
    const files: string[] = [];
    const weightMap: Record<string, string> = {};
    for (const [k, shard] of shards.entries()) {
      const file = shards.length === 1 ? SINGLE_FILE : shardName(k + 1, shards.length);
      const writer = await createSafetensorsWriter(
        `${dir}/${file}`,
        shard.map((n) => [n, specs.get(n)!] as const),
        { format: "pt" },
      )();
      if (E.isLeft(writer)) return writer;
      for (const name of shard) {
        const t = byName.get(name)!;
        const values = await t.load()();
        const written = E.isLeft(values) ? values : await writer.right.write(name, {
          dtype,
          shape: specs.get(name)!.shape,
          // ours [in, out] → HF [out, in]
          data: isLinearWeight(name)
            ? transpose(values.right, t.shape[0]!, t.shape[1]!)
            : values.right,
        })();
        if (E.isLeft(written)) {
          await writer.right.abort();
          return written;
        }
        weightMap[name] = file;
      }
      const committed = await writer.right.commit()();
      if (E.isLeft(committed)) return committed;
      files.push(file);
    }
    const totalBytes = [...specs.values()].reduce((sum, s) => sum + bytesOf(s), 0);
    const extra: [string, string][] = [[
      "config.json",
      jsonText({
        ...toHfConfig(view.shape, options.dtype),
        ...(options.specialTokens === undefined ? {} : {
          bos_token_id: options.specialTokens.bos ?? null,
          eos_token_id: options.specialTokens.eos,
        }),
      }),
    ]];
    if (shards.length > 1) {
      const sorted = Object.fromEntries(
        Object.entries(weightMap).sort(([a], [b]) => a < b ? -1 : 1),
      );
      extra.push([
        INDEX_FILE,
        jsonText({ metadata: { total_size: totalBytes }, weight_map: sorted }),
      ]);
    }
    for (const [file, text] of extra) {
      const w = await writeFileAtomic(`${dir}/${file}`, text)();
      if (E.isLeft(w)) return w;
      files.push(file);
    }
    return E.right({ files, totalBytes });
  };
}
