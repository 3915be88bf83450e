/**
 * The torch engine's state between launches: an engine snapshot (plain arrays, our layout),
 * and the STEP transforms on it that stay in TypeScript — initial weights, growth, attaching
 * adapters, merging them — computed by `checkpoint/` and `base/` exactly as the tfjs engine
 * computes them (growth's float32 means and merges are bit-equal, `checkpoint/transforms.ts`).
 * Also the exchange directory the PyTorch trainer reads and writes: HF layouts
 * (`torch_engine/trainer.py`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import {
  type ContentInvalid,
  contentInvalid,
  initialValues,
  isAdapterName,
  type KernelFailed,
  kernelFailed,
  layerOfName,
  type LlamaShape,
  loraAValues,
  loraNames,
} from "../base/mod.ts";
import {
  growCheckpoint,
  isLinearWeight,
  type LazyTensor,
  mergeValues,
  momentName,
  transpose,
} from "../checkpoint/mod.ts";
import type {
  AttachSpec,
  EngineSnapshot,
  GrowSpec,
  MemoryByRole,
  ModelStats,
  NamedArray,
} from "../pipeline/mod.ts";
import {
  readSafetensors,
  tensorToFloat32,
  writeFileAtomic,
  writeSafetensors,
} from "../store/mod.ts";

const FLOAT_BYTES = 4;

function zerosLike(p: NamedArray, name = p.name): NamedArray {
  return { name, shape: p.shape, data: new Float32Array(p.data.length) };
}

/** Zero Adam moments for `trainable` (what attaching, growing and a fresh model start from). */
function freshMoments(params: readonly NamedArray[], trainable: readonly string[]): NamedArray[] {
  const byName = new Map(params.map((p) => [p.name, p]));
  return ["m", "v"].flatMap((kind) =>
    trainable.map((n) => zerosLike(byName.get(n)!, momentName(kind as "m" | "v", n)))
  );
}

/** `depth` layers of `shape` as the tfjs engine initialises them, everything trainable. */
export function initialSnapshot(shape: LlamaShape, depth: number, seed: number): EngineSnapshot {
  const params = initialValues(shape, depth, seed);
  const trainable = params.map((p) => p.name);
  return {
    params,
    moments: freshMoments(params, trainable),
    meta: { trainable, loraScale: 1, adamStep: 0 },
  };
}

function depthOf(params: readonly { readonly name: string }[]): number {
  return params.reduce((d, p) => Math.max(d, (layerOfName(p.name) ?? -1) + 1), 0);
}

/** Every adapter merged into its weight: a plain model with the same function. */
export function mergedSnapshot(s: EngineSnapshot): EngineSnapshot {
  const byName = new Map(s.params.map((p) => [p.name, p]));
  const params = s.params.filter((p) => !isAdapterName(p.name)).map((p) => {
    const ln = p.name.endsWith(".weight") ? loraNames(p.name) : undefined;
    const a = ln === undefined ? undefined : byName.get(ln.a);
    const b = ln === undefined ? undefined : byName.get(ln.b);
    if (a === undefined || b === undefined) return p;
    const rank = a.shape[1]!;
    return {
      ...p,
      data: mergeValues(p.data, { a: a.data, b: b.data, rank, scale: s.meta.loraScale }),
    };
  });
  const trainable = s.meta.trainable.filter((n) => !isAdapterName(n));
  const keep = new Set(trainable.flatMap((n) => [momentName("m", n), momentName("v", n)]));
  return {
    params,
    moments: s.moments.filter((m) => keep.has(m.name)),
    meta: { ...s.meta, trainable },
  };
}

/** Growth as `kernels/grow.ts` does it, on arrays: adapters merged, new layers the mean of their neighbours. */
export async function grownSnapshot(
  s: EngineSnapshot,
  shape: LlamaShape,
  spec: GrowSpec,
): Promise<E.Either<KernelFailed, EngineSnapshot>> {
  const plain = mergedSnapshot(s);
  const tensors: LazyTensor[] = plain.params.map((p) => ({
    name: p.name,
    shape: p.shape,
    load: () => TE.right(p.data),
  }));
  const view = growCheckpoint({
    shape: { ...shape, layers: depthOf(plain.params) },
    dtype: "F32",
    tensors,
    adapters: undefined,
    source: "the torch engine's state",
    close: () => {},
  }, { add: spec.add, placement: spec.placement, seed: spec.seed });
  const params: NamedArray[] = [];
  for (const t of view.tensors) {
    const data = await t.load()();
    if (E.isLeft(data)) return E.left(kernelFailed(`Growth failed: ${data.left.message}`));
    params.push({ name: t.name, shape: t.shape, data: data.right });
  }
  const names = new Set(params.map((p) => p.name));
  const missing = spec.trainable.find((n) => !names.has(n));
  if (missing !== undefined) {
    return E.left(
      kernelFailed(`Trainable name "${missing}" is not a parameter of the grown model`),
    );
  }
  return E.right({
    params,
    moments: freshMoments(params, spec.trainable),
    meta: { trainable: [...spec.trainable], loraScale: plain.meta.loraScale, adamStep: 0 },
  });
}

/** Adapters attached as `kernels/relora.ts` attaches them: A Kaiming-uniform, B zero, fresh moments. */
export function attachedSnapshot(
  s: EngineSnapshot,
  spec: AttachSpec,
): E.Either<KernelFailed, EngineSnapshot> {
  const byName = new Map(s.params.map((p) => [p.name, p]));
  const adapters: NamedArray[] = [];
  for (const w of spec.adapted) {
    const weight = byName.get(w);
    if (weight === undefined) return E.left(kernelFailed(`Missing parameter "${w}"`));
    const [inDim, outDim] = weight.shape as [number, number];
    const { a, b } = loraNames(w);
    adapters.push({
      name: a,
      shape: [inDim, spec.rank],
      data: loraAValues(inDim, spec.rank, spec.seed, a),
    });
    adapters.push({
      name: b,
      shape: [spec.rank, outDim],
      data: new Float32Array(spec.rank * outDim),
    });
  }
  const added = new Set(adapters.map((p) => p.name));
  const params = [...s.params.filter((p) => !added.has(p.name)), ...adapters];
  const names = new Set(params.map((p) => p.name));
  const missing = spec.trainable.find((n) => !names.has(n));
  if (missing !== undefined) {
    return E.left(kernelFailed(`Trainable name "${missing}" is not a parameter`));
  }
  return E.right({
    params,
    moments: freshMoments(params, spec.trainable),
    meta: { trainable: [...spec.trainable], loraScale: spec.alpha / spec.rank, adamStep: 0 },
  });
}

/** A parameter's name and shape: all the accounting below needs. */
export interface ParamShape {
  readonly name: string;
  readonly shape: readonly number[];
}

/**
 * Parameter counts by role and model-state bytes by role in float32 (the roles of
 * `pipeline/effects.ts`), from the parameters' names and shapes and the trainable list.
 */
export function accountState(
  params: readonly ParamShape[],
  trainable: readonly string[],
): { readonly stats: ModelStats; readonly memory: MemoryByRole } {
  const trains = new Set(trainable);
  let trainableParams = 0;
  let frozenParams = 0;
  let adapterParams = 0;
  let adaptersTrained = 0;
  for (const p of params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (isAdapterName(p.name)) {
      adapterParams += n;
      if (trains.has(p.name)) adaptersTrained += n;
    } else if (trains.has(p.name)) trainableParams += n;
    else frozenParams += n;
  }
  const trained = trainableParams + adaptersTrained;
  const roles = {
    trainableWeights: trainableParams * FLOAT_BYTES,
    gradients: trained * FLOAT_BYTES,
    optimizer: 2 * trained * FLOAT_BYTES,
    frozen: frozenParams * FLOAT_BYTES,
    adapters: adapterParams * FLOAT_BYTES,
  };
  return {
    stats: { layers: depthOf(params), trainableParams, frozenParams, adapterParams },
    memory: { ...roles, total: Object.values(roles).reduce((a, b) => a + b, 0) },
  };
}

/** Whether a tensor is stored transposed in HF/PEFT layouts: linear weights and LoRA matrices. */
function transposedInHf(name: string): boolean {
  return isLinearWeight(name) || isAdapterName(name);
}

function toHf(p: NamedArray, paramName = p.name): { shape: number[]; data: Float32Array } {
  if (!transposedInHf(paramName)) return { shape: [...p.shape], data: p.data };
  const [rows, cols] = p.shape as [number, number];
  return { shape: [cols, rows], data: transpose(p.data, rows, cols) };
}

const EXCHANGE = {
  model: "model.safetensors",
  moments: "moments.safetensors",
  state: "state.json",
} as const;

/** Writes `s` as an exchange directory for the trainer (HF layouts, float32). */
export function writeExchange(
  dir: string,
  s: EngineSnapshot,
  shape: LlamaShape,
): TE.TaskEither<KernelFailed, void> {
  return async () => {
    const fail = (e: { readonly message: string }) =>
      E.left(kernelFailed(`Cannot hand the model to PyTorch (${dir}): ${e.message}`));
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      return fail({ message: String(e) });
    }
    const model = Object.fromEntries(
      s.params.map((p) => [p.name, { dtype: "F32" as const, ...toHf(p) }]),
    );
    const w = await writeSafetensors(path.join(dir, EXCHANGE.model), model)();
    if (E.isLeft(w)) return fail(w.left);
    const moments = Object.fromEntries(
      s.moments.map((m) => [m.name, { dtype: "F32" as const, ...toHf(m, m.name.slice(2)) }]),
    );
    const mo = await writeSafetensors(path.join(dir, EXCHANGE.moments), moments)();
    if (E.isLeft(mo)) return fail(mo.left);
    const state = JSON.stringify({ shape, ...s.meta });
    const st = await writeFileAtomic(
      path.join(dir, EXCHANGE.state),
      new TextEncoder().encode(state),
    )();
    return E.isLeft(st) ? fail(st.left) : E.right(undefined);
  };
}

function fromHf(
  name: string,
  paramName: string,
  shape: readonly number[],
  data: Float32Array,
): NamedArray {
  if (!transposedInHf(paramName)) return { name, shape, data };
  const [rows, cols] = shape as [number, number];
  return { name, shape: [cols, rows], data: transpose(data, rows, cols) };
}

/** Reads an exchange directory the trainer wrote back into a snapshot (our layout). */
export function readExchange(
  dir: string,
): TE.TaskEither<KernelFailed | ContentInvalid, EngineSnapshot> {
  return async () => {
    const bad = (m: string) => E.left(contentInvalid(dir, `PyTorch's state is unreadable: ${m}`));
    const model = await readSafetensors(path.join(dir, EXCHANGE.model))();
    if (E.isLeft(model)) return bad(model.left.message);
    const moments = await readSafetensors(path.join(dir, EXCHANGE.moments))();
    if (E.isLeft(moments)) return bad(moments.left.message);
    let meta: EngineSnapshot["meta"];
    try {
      meta = JSON.parse(await Deno.readTextFile(path.join(dir, EXCHANGE.state)));
    } catch (e) {
      return bad(String(e));
    }
    const arrays = (
      d: typeof model.right,
      paramOf: (n: string) => string,
    ): E.Either<string, NamedArray[]> => {
      const out: NamedArray[] = [];
      for (const [name, raw] of d.tensors) {
        const data = tensorToFloat32(raw, name);
        if (E.isLeft(data)) return E.left(data.left.message);
        out.push(fromHf(name, paramOf(name), raw.shape, data.right));
      }
      return E.right(out);
    };
    const params = arrays(model.right, (n) => n);
    if (E.isLeft(params)) return bad(params.left);
    const adam = arrays(moments.right, (n) => n.slice(2));
    if (E.isLeft(adam)) return bad(adam.left);
    return E.right({
      params: params.right,
      moments: adam.right,
      meta: { trainable: meta.trainable, loraScale: meta.loraScale, adamStep: meta.adamStep },
    });
  };
}
