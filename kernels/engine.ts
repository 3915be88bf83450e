/**
 * The interpreter's `engine` effect (`pipeline/effects.ts`) over the tfjs
 * engine in this folder: backend selection, training steps, growth, ReLoRA,
 * snapshots. Promises and throws from tfjs enter here and leave as
 * `KernelFailed` values.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import type { BackendName as ConfigBackend } from "../pipeline/config.ts";
import type {
  Engine,
  EngineSnapshot,
  EngineState,
  MemoryByRole,
  ModelStats,
  NamedArray,
} from "../pipeline/effects.ts";
import { describeUnknown, type KernelFailed, kernelFailed } from "../pipeline/errors.ts";
import type { LlamaShape } from "../solvers/llama_shape.ts";
import { registerBlasBackend } from "./blas/mod.ts";
import { initBackend } from "./backend.ts";
import { growModel } from "./grow.ts";
import { memoryByRole } from "./memory.ts";
import {
  depthOf,
  disposeParams,
  exportParams,
  importParams,
  initParams,
  isAdapterName,
  paramShapes,
} from "./params.ts";
import { attachRelora, mergeAdapters, reloraReset } from "./relora.ts";
import { createTrainState, disposeState, type TrainState } from "./train_state.ts";
import { evalLoss, trainStep } from "./train_step.ts";

function ts(s: EngineState): TrainState {
  return s as unknown as TrainState;
}

function es(s: TrainState): EngineState {
  return s as unknown as EngineState;
}

function attempt<A>(what: string, f: () => A | Promise<A>): TE.TaskEither<KernelFailed, A> {
  return TE.tryCatch(async () => await f(), (e) => kernelFailed(`${what}: ${describeUnknown(e)}`));
}

/** The engine's byte counts in the interpreter's terms. */
export function toRoles(m: ReturnType<typeof memoryByRole>): MemoryByRole {
  return {
    trainableWeights: m.trainable,
    gradients: m.gradients,
    optimizer: m.optimizer,
    frozen: m.frozen,
    adapters: m.adapters,
    total: m.modelState,
  };
}

/** Parameter counts by role. */
export function statsOf(state: TrainState): ModelStats {
  let trainableParams = 0;
  let frozenParams = 0;
  let adapterParams = 0;
  for (const [name, t] of state.params) {
    if (isAdapterName(name)) adapterParams += t.size;
    else if (state.trainable.has(name)) trainableParams += t.size;
    else frozenParams += t.size;
  }
  return { layers: depthOf(state.params), trainableParams, frozenParams, adapterParams };
}

async function named(
  prefix: string,
  params: ReadonlyMap<string, tf.Tensor>,
): Promise<NamedArray[]> {
  return (await exportParams(params)).map((r) => ({ ...r, name: prefix + r.name }));
}

/** Checks a snapshot against the model shape before any tensor is built. */
function snapshotProblem(shape: LlamaShape, snap: EngineSnapshot): string | undefined {
  const byName = new Map(snap.params.map((p) => [p.name, p]));
  const depth = snap.params.reduce((d, p) => {
    const m = /^model\.layers\.(\d+)\./.exec(p.name);
    return m === null ? d : Math.max(d, Number(m[1]) + 1);
  }, 0);
  for (const [name, dims] of paramShapes(shape, depth)) {
    const p = byName.get(name);
    if (p === undefined) return `parameter "${name}" is missing`;
    if (p.shape.join() !== dims.join()) {
      return `parameter "${name}" has shape [${p.shape}], the model needs [${dims}]`;
    }
    if (p.data.length !== dims.reduce((a, b) => a * b, 1)) {
      return `parameter "${name}" has ${p.data.length} values`;
    }
  }
  const trainable = snap.meta.trainable;
  if (!Array.isArray(trainable)) return "meta.trainable is missing";
  const moments = new Set(snap.moments.map((m) => m.name));
  for (const n of trainable) {
    if (!byName.has(n)) return `trainable "${n}" is not a parameter`;
    if (!moments.has(`m/${n}`) || !moments.has(`v/${n}`)) {
      return `Adam moments of "${n}" are missing`;
    }
  }
  if (typeof snap.meta.loraScale !== "number" || typeof snap.meta.adamStep !== "number") {
    return "meta.loraScale or meta.adamStep is missing";
  }
  return undefined;
}

/**
 * Starts a backend. `auto` is `wasm` for now: the `blas` backend multiplies
 * matrices fast but runs every other op on tfjs's plain-JavaScript CPU kernels,
 * which makes a whole training step slower than wasm (measured in bench/NOTES.md).
 */
export function startBackend(name: ConfigBackend): TE.TaskEither<KernelFailed, string> {
  return async () => {
    if (name === "auto") name = "wasm";
    if (name === "blas") {
      const cpu = await initBackend("cpu");
      if (E.isLeft(cpu)) return cpu;
      const blas = registerBlasBackend();
      if (E.isRight(blas)) {
        const ok = await tf.setBackend("blas");
        if (ok) {
          (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
          return E.right(
            `blas: tfjs CPU kernels with matmuls on ${blas.right.library} (${blas.right.threads} threads)`,
          );
        }
      }
      if (name === "blas") {
        return E.left(kernelFailed(E.isLeft(blas) ? blas.left : `Cannot activate backend "blas"`));
      }
      console.error(
        `Note: ${E.isLeft(blas) ? blas.left : "blas unavailable"}; falling back to wasm`,
      );
      name = "wasm";
    }
    const got = await initBackend(name);
    return E.map((info: { description: string }) => info.description)(got);
  };
}

/** Creates the engine effect on a backend. */
export function createEngine(backend: ConfigBackend): TE.TaskEither<KernelFailed, Engine> {
  return TE.map((description: string) => engineOn(description))(startBackend(backend));
}

/** The engine effect on the active tfjs backend. */
export function engineOn(description: string): Engine {
  return {
    backend: description,
    init: (shape, layers, seed) =>
      attempt(
        "Cannot initialise the model",
        () => es(createTrainState(shape, initParams(shape, layers, seed))),
      ),
    step: (s, batches, h) =>
      attempt("Training step failed", async () => {
        const r = await trainStep(ts(s), batches, {
          lr: h.lr,
          beta1: h.beta1,
          beta2: h.beta2,
          eps: h.eps,
          weightDecay: h.weightDecay,
          clipNorm: h.clip,
        });
        return { state: es(r.state), loss: r.loss, gradNorm: r.gradNorm, peak: toRoles(r.peak) };
      }),
    evaluate: (s, batches) => attempt("Evaluation failed", () => evalLoss(ts(s), batches)),
    grow: (s, spec) => attempt("Growth failed", () => es(growModel(ts(s), spec))),
    attach: (s, spec) => attempt("Attaching ReLoRA failed", () => es(attachRelora(ts(s), spec))),
    reset: (s, spec) =>
      attempt("ReLoRA reset failed", async () => {
        const r = await reloraReset(ts(s), spec);
        return { state: es(r.state), merged: r.merged, prunedFraction: r.prunedFraction };
      }),
    mergeAll: (s) => attempt("Merging adapters failed", () => es(mergeAdapters(ts(s)))),
    stats: (s) => statsOf(ts(s)),
    memory: (s) => toRoles(memoryByRole(ts(s))),
    snapshot: (s) =>
      attempt("Snapshot failed", async () => {
        const state = ts(s);
        return {
          params: await named("", state.params),
          moments: [...await named("m/", state.adam.m), ...await named("v/", state.adam.v)],
          meta: {
            trainable: [...state.trainable],
            loraScale: state.loraScale,
            adamStep: state.adam.step,
          },
        };
      }),
    restore: (shape, snap) => async () => {
      const problem = snapshotProblem(shape, snap);
      if (problem !== undefined) return E.left(kernelFailed(`Corrupted checkpoint: ${problem}`));
      return await attempt("Cannot restore the checkpoint", () => {
        const params = importParams(snap.params);
        const trainable = snap.meta.trainable as string[];
        const state = createTrainState(shape, params, {
          trainable,
          loraScale: snap.meta.loraScale as number,
        });
        disposeParams(state.adam.m);
        disposeParams(state.adam.v);
        const moments = new Map(snap.moments.map((m) => [m.name, m]));
        const pick = (prefix: string) =>
          importParams(trainable.map((n) => ({ ...moments.get(prefix + n)!, name: n })));
        return es({
          ...state,
          adam: { step: snap.meta.adamStep as number, m: pick("m/"), v: pick("v/") },
        });
      })();
    },
    dispose: (s) => disposeState(ts(s)),
  };
}
