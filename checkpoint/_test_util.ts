/**
 * Test helpers for this folder: models held in memory as views, temporary
 * directories, and a reader of whole directories back into name → values.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { createRng } from "../base/prng.ts";
import { type LlamaShape, projectionDims, PROJECTIONS } from "../base/llama_shape.ts";
import type { LazyTensor, LoraAdapters, ModelView } from "./model_view.ts";
import { paramShapes, projectionWeight } from "../base/param_names.ts";

/** A small GQA shape with an untied head. */
export const TINY: LlamaShape = {
  hidden: 8,
  intermediate: 12,
  heads: 2,
  kvHeads: 1,
  layers: 3,
  vocab: 11,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};

/** Uniform values in (−1, 1) from a seed. */
export function randomValues(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => 2 * rng.nextFloat() - 1);
}

/** Every weight of `shape` (our layout) with random values. */
export function randomWeights(shape: LlamaShape, seed: number): Map<string, Float32Array> {
  return new Map(
    paramShapes(shape).map(([name, dims], i) => [
      name,
      randomValues(dims.reduce((a, b) => a * b, 1), seed * 1000 + i),
    ]),
  );
}

function memoryTensor(name: string, shape: readonly number[], values: Float32Array): LazyTensor {
  return { name, shape, load: () => TE.right(values.slice()) };
}

/** A view over in-memory weights (and adapters). */
export function memoryView(
  shape: LlamaShape,
  weights: ReadonlyMap<string, Float32Array>,
  adapters?: LoraAdapters,
): ModelView {
  const dims = new Map(paramShapes(shape));
  return {
    shape,
    dtype: "F32",
    tensors: [...weights].map(([n, v]) => memoryTensor(n, dims.get(n)!, v)),
    adapters,
    source: "memory",
    close: () => undefined,
  };
}

/** Random adapters of rank `rank` on `layers` × `targets`, in our layout. */
export function randomAdapters(
  shape: LlamaShape,
  options: { rank: number; alpha: number; layers: number[]; seed: number },
): LoraAdapters {
  const tensors: LazyTensor[] = [];
  let k = 0;
  for (const layer of options.layers) {
    for (const p of PROJECTIONS) {
      const d = projectionDims(shape, p);
      const base = projectionWeight(layer, p).slice(0, -".weight".length);
      const r = options.rank;
      tensors.push(
        memoryTensor(`${base}.lora_A`, [d.in, r], randomValues(d.in * r, options.seed + k++)),
        memoryTensor(`${base}.lora_B`, [r, d.out], randomValues(r * d.out, options.seed + k++)),
      );
    }
  }
  return {
    rank: options.rank,
    alpha: options.alpha,
    scale: options.alpha / options.rank,
    targets: PROJECTIONS,
    layers: options.layers,
    tensors,
  };
}

/** Loads every tensor of a view (weights then adapters) into a map. */
export async function loadAll(view: ModelView): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const t of [...view.tensors, ...(view.adapters?.tensors ?? [])]) {
    const v = await t.load()();
    if (E.isLeft(v)) throw new Error(`${t.name}: ${v.left.message}`);
    out.set(t.name, v.right);
  }
  return out;
}

/** Runs `f` in a fresh temporary directory, removed afterwards. */
export async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ckpt-test-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The Right of an Either, or a thrown error with the Left's message. */
export function right<A>(e: E.Either<{ readonly message: string }, A>): A {
  if (E.isLeft(e)) throw new Error(`expected Right, got Left: ${e.left.message}`);
  return e.right;
}

/** The Left of an Either, or a thrown error. */
export function left<L>(e: E.Either<L, unknown>): L {
  if (E.isRight(e)) throw new Error("expected Left, got Right");
  return e.left;
}
