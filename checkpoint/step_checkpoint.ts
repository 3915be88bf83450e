/**
 * This project's own checkpoint directories, as `deno task run` writes them:
 *
 * - `final/`: `model.safetensors` (F32, our layout, metadata
 *   `format: step-llama`) and `config.json` (our shape: hidden,
 *   intermediate, heads, kvHeads, layers, vocab, tiedEmbeddings, rmsNormEps,
 *   ropeTheta, maxSeqLen);
 * - `checkpoint/`: `model.safetensors` (weights and, during a PET stage,
 *   ReLoRA adapters `<proj>.lora_A` [in, r], `<proj>.lora_B` [r, out]),
 *   `moments.safetensors` and `state.json` (`meta.loraScale` = α / r). It has
 *   no shape file: the shape comes from `--shape`, or from the run
 *   directory's `final/config.json` or `pipeline.yaml`.
 *
 * The depth is the number of layers in the file, whatever `layers` says
 * (a stage checkpoint is shallower than the target).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import YAML from "yaml";
import {
  completeShape,
  configInvalid,
  contentInvalid,
  decodeWith,
  describeUnknown,
  type ext,
  ioFailed,
  layerOfName,
  type LlamaShape,
  LlamaShapeCodec,
  paramShapes,
  parseProjectionName,
  type Projection,
  projectionDims,
  PROJECTIONS,
  shapeProblem,
} from "../base/mod.ts";
import { createSafetensorsWriter, type SafetensorsReader, writeFileAtomic } from "../store/mod.ts";
import { exists, openAll } from "./_files.ts";
import {
  CHECKPOINT_FILES,
  FINAL_FILES,
  readCheckpointState,
  shapeConfigText,
  shapeFileCandidates,
  STEP_METADATA,
} from "./run_layout.ts";
import {
  type CkptError,
  floatValues,
  type LazyTensor,
  type LoraAdapters,
  type ModelView,
  shapeMismatch,
} from "./model_view.ts";

/** Our shape from parsed JSON/YAML: the object itself, or its `model:` section. */
export function decodeShape(json: unknown, where: string): ext.Either<CkptError, LlamaShape> {
  const body = typeof json === "object" && json !== null && "model" in json
    ? (json as { model: unknown }).model
    : json;
  const decoded = decodeWith(LlamaShapeCodec, body);
  if (E.isLeft(decoded)) return E.left(configInvalid(where, decoded.left.join("; ")));
  const shape = completeShape(decoded.right);
  const problem = shapeProblem(shape);
  return problem === undefined ? E.right(shape) : E.left(configInvalid(where, problem));
}

/** Reads a shape file: JSON (`final/config.json`) or YAML (a config or pipeline). */
export function readShapeFile(path: string): ext.TaskEither<CkptError, LlamaShape> {
  return async () => {
    let parsed: unknown;
    try {
      const text = await Deno.readTextFile(path);
      parsed = /\.ya?ml$/i.test(path) ? YAML.parse(text) : JSON.parse(text);
    } catch (e) {
      return E.left(ioFailed(path, describeUnknown(e)));
    }
    return decodeShape(parsed, path);
  };
}

/** Options of {@link openStepCheckpoint}. */
export interface StepOpenOptions {
  /** A shape file for a `checkpoint/` directory (which has no config.json). */
  readonly shapeFile?: string;
}

async function findShape(
  dir: string,
  options: StepOpenOptions,
): Promise<ext.Either<CkptError, LlamaShape>> {
  if (options.shapeFile !== undefined) return await readShapeFile(options.shapeFile)();
  for (const candidate of shapeFileCandidates(dir)) {
    if (await exists(candidate)) return await readShapeFile(candidate)();
  }
  return E.left(
    configInvalid(
      dir,
      "no model shape: a checkpoint/ directory has no config.json; give --shape FILE (the run's config or pipeline YAML)",
    ),
  );
}

async function loraScale(dir: string): Promise<ext.Either<CkptError, number>> {
  const path = `${dir}/${CHECKPOINT_FILES.state}`;
  const state = await readCheckpointState(dir)();
  if (E.isLeft(state)) return state;
  const scale = state.right.meta.loraScale;
  return Number.isFinite(scale) && scale > 0
    ? E.right(scale)
    : E.left(configInvalid(`${path}: meta.loraScale`, `${scale} is not a positive number`));
}

function lazy(reader: SafetensorsReader, name: string, shape: readonly number[]): LazyTensor {
  return {
    name,
    shape,
    load: () => TE.flatMapEither(reader.read(name), (raw) => floatValues(raw, reader.path, name)),
  };
}

/** Groups `<proj>.lora_A`/`lora_B` tensors into adapters, checking their shapes. */
function adaptersOf(
  reader: SafetensorsReader,
  shape: LlamaShape,
  names: readonly string[],
  scale: number,
): ext.Either<CkptError, LoraAdapters> {
  const found = new Map<string, { layer: number; p: Projection; rest: string }>();
  let rank: number | undefined;
  for (const name of names) {
    const at = parseProjectionName(name)!;
    const d = projectionDims(shape, at.p);
    const s = reader.info(name)!.shape;
    rank ??= at.rest === "lora_A" ? s[1] : s[0];
    const want = at.rest === "lora_A" ? [d.in, rank ?? 0] : [rank ?? 0, d.out];
    const bad = shapeMismatch(name, s, want, `rank ${rank} and the model shape`);
    if (bad !== undefined) return E.left(configInvalid(reader.path, bad));
    found.set(name, at);
  }
  const tensors: LazyTensor[] = [];
  const layers = new Set<number>();
  const targets = new Set<Projection>();
  for (const [name, at] of found) {
    const other = at.rest === "lora_A"
      ? name.slice(0, -"lora_A".length) + "lora_B"
      : name.slice(0, -"lora_B".length) + "lora_A";
    if (!found.has(other)) {
      return E.left(contentInvalid(reader.path, `"${name}" has no "${other}"`));
    }
    if (at.rest !== "lora_A") continue;
    tensors.push(lazy(reader, name, reader.info(name)!.shape));
    tensors.push(lazy(reader, other, reader.info(other)!.shape));
    layers.add(at.layer);
    targets.add(at.p);
  }
  const r = rank ?? 1;
  return E.right({
    rank: r,
    alpha: scale * r,
    scale,
    targets: PROJECTIONS.filter((p) => targets.has(p)),
    layers: [...layers].sort((a, b) => a - b),
    tensors,
  });
}

/**
 * Opens our `final/` or `checkpoint/` directory and checks every tensor against the shape
 * before any weight is read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStepCheckpoint } from "./step_checkpoint.ts";
 * const r = await openStepCheckpoint("/no/such/final")();
 * assert(r._tag === "Left");
 * ```
 */
export function openStepCheckpoint(
  dir: string,
  options: StepOpenOptions = {},
): ext.TaskEither<CkptError, ModelView> {
  return async () => {
    const target = await findShape(dir, options);
    if (E.isLeft(target)) return target;
    const opened = await openAll([`${dir}/${FINAL_FILES.model}`]);
    if (E.isLeft(opened)) return opened;
    const reader = opened.right[0]!;
    const fail = (e: CkptError): ext.Either<CkptError, never> => {
      reader.close();
      return E.left(e);
    };
    const names = reader.header.tensors.map(([n]) => n);
    const depth = names.reduce((d, n) => Math.max(d, (layerOfName(n) ?? -1) + 1), 0);
    const shape: LlamaShape = { ...target.right, layers: depth };
    const because =
      `the model shape (${depth} layers, hidden ${shape.hidden}, vocab ${shape.vocab})`;
    const tensors: LazyTensor[] = [];
    const expected = new Set<string>();
    for (const [name, want] of paramShapes(shape)) {
      expected.add(name);
      const info = reader.info(name);
      if (info === undefined) {
        return fail(contentInvalid(reader.path, `tensor "${name}" is missing (${because})`));
      }
      const bad = shapeMismatch(name, info.shape, want, because);
      if (bad !== undefined) return fail(configInvalid(reader.path, bad));
      tensors.push(lazy(reader, name, want));
    }
    const adapterNames: string[] = [];
    for (const name of names) {
      if (expected.has(name)) continue;
      const rest = parseProjectionName(name)?.rest;
      if ((rest === "lora_A" || rest === "lora_B") && (layerOfName(name) ?? depth) < depth) {
        adapterNames.push(name);
      } else {
        return fail(contentInvalid(reader.path, `unexpected tensor "${name}" (${because})`));
      }
    }
    let adapters: LoraAdapters | undefined;
    if (adapterNames.length > 0) {
      const scale = await loraScale(dir);
      if (E.isLeft(scale)) return fail(scale.left);
      const grouped = adaptersOf(reader, shape, adapterNames, scale.right);
      if (E.isLeft(grouped)) return fail(grouped.left);
      adapters = grouped.right;
    }
    return E.right({
      shape,
      dtype: "F32",
      tensors,
      adapters,
      source: dir,
      close: () => reader.close(),
    });
  };
}

/**
 * Writes a plain view (no adapters: merge them first) as our `final/`-style directory into
 * the existing directory `dir`: `model.safetensors` (F32) and `config.json`.
 */
export function writeStepCheckpoint(
  view: ModelView,
  dir: string,
): ext.TaskEither<CkptError, string[]> {
  return async () => {
    if (view.adapters !== undefined) {
      return E.left(
        configInvalid(view.source, "the model has adapters: merge them before writing"),
      );
    }
    const path = `${dir}/${FINAL_FILES.model}`;
    const writer = await createSafetensorsWriter(
      path,
      view.tensors.map((t) => [t.name, { dtype: "F32", shape: t.shape }] as const),
      STEP_METADATA,
    )();
    if (E.isLeft(writer)) return writer;
    for (const t of view.tensors) {
      const values = await t.load()();
      const w = E.isLeft(values)
        ? values
        : await writer.right.write(t.name, { dtype: "F32", shape: t.shape, data: values.right })();
      if (E.isLeft(w)) {
        await writer.right.abort();
        return w;
      }
    }
    const committed = await writer.right.commit()();
    if (E.isLeft(committed)) return committed;
    const c = await writeFileAtomic(`${dir}/${FINAL_FILES.config}`, shapeConfigText(view.shape))();
    return E.isLeft(c) ? c : E.right([FINAL_FILES.model, FINAL_FILES.config]);
  };
}
