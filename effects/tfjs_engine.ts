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
import type {
  BackendName as ConfigBackend,
  Engine,
  EngineState,
  MemoryByRole,
  ModelStats,
  NamedArray,
} from "../pipeline/mod.ts";
import { momentName, projectorName } from "../checkpoint/mod.ts";
import { snapshotProblem } from "./snapshot_check.ts";
import {
  contentInvalid,
  describeUnknown,
  isAdapterName,
  type KernelFailed,
  kernelFailed,
} from "../base/mod.ts";
import {
  openHeapSgemm,
  registerBlasBackend,
  registerBlasWasmMatMul,
  unregisterBlasWasmMatMul,
} from "../kernels/blas/mod.ts";
import { registerFusedWasmAttention, unregisterFusedWasmAttention } from "../kernels/fused/mod.ts";
import {
  attachRelora,
  createTrainState,
  depthOf,
  disposeParams,
  disposeState,
  evalLoss,
  exportParams,
  fusedOps,
  growModel,
  importParams,
  initBackend,
  initParams,
  measurePeak,
  memoryByRole,
  mergeAdapters,
  reloraReset,
  type TrainState,
  trainStep,
} from "../kernels/mod.ts";

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

/**
 * Starts a backend and returns its one-line description.
 *
 * `auto` is the fastest correct CPU path measured here (bench/NOTES.md): the
 * wasm backend with every matrix product on OpenBLAS in place on the wasm
 * heap (linear layers and their gradients through BatchMatMul, attention
 * through its fused kernel) and the fused wasm SIMD kernels of kernels/fused.
 * Without OpenBLAS it prints a one-line notice and runs `wasm`. `wasm` is the
 * same without OpenBLAS (XNNPACK products, composite attention); `blas` is
 * tfjs's CPU backend with OpenBLAS products, slower for whole steps because
 * its other kernels are plain JavaScript.
 */
export function startBackend(name: ConfigBackend): TE.TaskEither<KernelFailed, string> {
  return async () => {
    if (name === "auto" || name === "wasm") return await startWasm(name === "auto");
    if (name === "blas") {
      const cpu = await initBackend("cpu");
      if (E.isLeft(cpu)) return cpu;
      const blas = registerBlasBackend();
      if (E.isLeft(blas)) return E.left(kernelFailed(blas.left));
      if (!(await tf.setBackend("blas"))) {
        return E.left(kernelFailed(`Cannot activate backend "blas"`));
      }
      (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
      return E.right(
        `blas: tfjs CPU kernels with matmuls on ${blas.right.library} (${blas.right.threads} threads)`,
      );
    }
    const got = await initBackend(name);
    return E.map((info: { description: string }) => info.description)(got);
  };
}

async function startWasm(withBlas: boolean): Promise<E.Either<KernelFailed, string>> {
  const got = await initBackend("wasm");
  if (E.isLeft(got)) return got;
  if (withBlas) {
    const matMul = registerBlasWasmMatMul();
    const heap = E.isRight(matMul) ? openHeapSgemm() : matMul;
    if (E.isRight(matMul) && E.isRight(heap)) {
      registerFusedWasmAttention(heap.right.sgemm);
      const blas = matMul.right;
      if (blas.warning !== undefined) console.error(`Note: ${blas.warning}`);
      return E.right(
        `wasm + OpenBLAS: products (matmuls, attention) on ${blas.library} ` +
          `(${blas.core}, ${blas.threads} threads) in place on the wasm heap; fused wasm SIMD ` +
          "kernels for RMSNorm, RoPE, attention softmax, SwiGLU, cross-entropy, AdamW (in place) " +
          "and the embedding; other ops on tfjs wasm (XNNPACK SIMD, 1 thread)",
      );
    }
    console.error(`Note: ${E.isLeft(heap) ? heap.left : "OpenBLAS unavailable"}; running wasm`);
  }
  unregisterBlasWasmMatMul();
  unregisterFusedWasmAttention();
  return E.right(got.right.description);
}

/** Creates the engine effect on a backend. */
export function createEngine(backend: ConfigBackend): TE.TaskEither<KernelFailed, Engine> {
  return TE.map((description: string) => engineOn(description))(startBackend(backend));
}

/** The engine effect on the active tfjs backend. */
export function engineOn(description: string): Engine {
  return {
    backend: description,
    fusedOps: fusedOps(),
    init: (shape, layers, seed, options) =>
      attempt("Cannot initialise the model", () => {
        const params = initParams(shape, layers, seed);
        const galore = options?.galore;
        try {
          return es(createTrainState(shape, params, galore === undefined ? {} : { galore }));
        } catch (e) {
          disposeParams(params); // a rejected GaLore spec must not leak the new weights
          throw e;
        }
      }),
    step: (s, batches, h) =>
      attempt("Training step failed", async () => {
        const { value: r, peak } = await measurePeak(() =>
          trainStep(ts(s), batches, {
            lr: h.lr,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weightDecay: h.weightDecay,
            clipNorm: h.clip,
            recompute: h.recompute,
            ...(h.lossChunk === undefined ? {} : { lossChunk: h.lossChunk }),
          })
        );
        return {
          state: es(r.state),
          loss: r.loss,
          gradNorm: r.gradNorm,
          skipped: r.skipped,
          peak: toRoles(r.peak),
          measured: peak,
          projectorUpdates: r.projectorUpdates,
          svdFailures: r.svdFailures,
        };
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
        const g = state.galore;
        return {
          params: await named("", state.params),
          moments: [
            ...await named(momentName("m", ""), state.adam.m),
            ...await named(momentName("v", ""), state.adam.v),
            ...(g === undefined ? [] : await named(projectorName(""), g.projectors)),
          ],
          meta: {
            trainable: [...state.trainable],
            loraScale: state.loraScale,
            adamStep: state.adam.step,
            ...(g === undefined ? {} : {
              galore: {
                ...g.config,
                targets: [...g.targets],
              },
            }),
          },
        };
      }),
    restore: (shape, snap) => async () => {
      const problem = snapshotProblem(shape, snap);
      if (problem !== undefined) {
        return E.left(contentInvalid("checkpoint", `corrupted checkpoint: ${problem}`));
      }
      return await attempt("Cannot restore the checkpoint", () => {
        const params = importParams(snap.params);
        const trainable = snap.meta.trainable;
        const g = snap.meta.galore;
        const state = createTrainState(shape, params, {
          trainable,
          loraScale: snap.meta.loraScale,
          ...(g === undefined ? {} : { galore: g }),
        });
        disposeParams(state.adam.m);
        disposeParams(state.adam.v);
        const moments = new Map(snap.moments.map((m) => [m.name, m]));
        const pick = (names: readonly string[], key: (n: string) => string) =>
          importParams(
            names.filter((n) => moments.has(key(n))).map((n) => ({
              ...moments.get(key(n))!,
              name: n,
            })),
          );
        const adam = {
          step: snap.meta.adamStep,
          m: pick(trainable, (n) => momentName("m", n)),
          v: pick(trainable, (n) => momentName("v", n)),
        };
        return es({
          ...state,
          adam,
          ...(state.galore === undefined || g === undefined ? {} : {
            galore: { ...state.galore, projectors: pick(g.targets, projectorName) },
          }),
        });
      })();
    },
    dispose: (s) => disposeState(ts(s)),
  };
}
