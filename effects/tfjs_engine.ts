/**
 * The interpreter's `engine` effect (`pipeline/effects.ts`) over the tfjs
 * engine of `kernels/`: backend selection, loading a snapshot, training steps,
 * ReLoRA's restarts, snapshots. Promises and throws from tfjs enter here and
 * leave as `KernelFailed` values; a retired state handle is refused
 * (`state_handles.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import type { AccountedState, BackendName as ConfigBackend, Engine } from "../pipeline/mod.ts";
import { snapshotProblem } from "./snapshot_check.ts";
import { StateHandles } from "./state_handles.ts";
import { contentInvalid, describeUnknown, type KernelFailed, kernelFailed } from "../base/mod.ts";
import {
  openHeapSgemm,
  registerBlasBackend,
  registerBlasWasmMatMul,
  unregisterBlasWasmMatMul,
} from "../kernels/blas/mod.ts";
import {
  registerFusedWasmAttention,
  registerPooledWasmMatMul,
  unregisterFusedWasmAttention,
  unregisterPooledWasmMatMul,
} from "../kernels/fused/mod.ts";
import {
  type AccountedBytes,
  disposeState,
  evalLoss,
  fusedKernelThreads,
  fusedOps,
  initBackend,
  loadTrainState,
  measurePeak,
  reloraReset,
  snapshotState,
  threadsText,
  type TrainState,
  trainStep,
} from "../kernels/mod.ts";

function attempt<A>(what: string, f: () => A | Promise<A>): TE.TaskEither<KernelFailed, A> {
  return TE.tryCatch(async () => await f(), (e) => kernelFailed(`${what}: ${describeUnknown(e)}`));
}

/** The engine's byte counts in the interpreter's terms. */
function toRoles(m: AccountedBytes): AccountedState {
  return {
    trainableWeights: m.trainable,
    gradients: m.gradients,
    optimizer: m.optimizer,
    frozen: m.frozen,
    adapters: m.adapters,
    total: m.modelState,
  };
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
  // The pooled products wrap OpenBLAS's BatchMatMul: off first, so a restart never stacks them.
  unregisterPooledWasmMatMul();
  if (withBlas) {
    const matMul = registerBlasWasmMatMul();
    const heap = E.isRight(matMul) ? openHeapSgemm() : matMul;
    if (E.isRight(matMul) && E.isRight(heap)) {
      registerFusedWasmAttention(heap.right.sgemm);
      registerPooledWasmMatMul(heap.right.sgemm);
      const blas = matMul.right;
      if (blas.warning !== undefined) console.error(`Note: ${blas.warning}`);
      const threads = got.right.fusedThreads ?? 1;
      const cut = threads > 1
        ? "cut into row or column blocks over the kernel threads, one thread each"
        : `${blas.threads} threads`;
      return E.right(
        `wasm + BLAS: products (matmuls, attention) on ${heap.right.sgemm.label}, ${cut}, in ` +
          `place on the wasm heap (batched ones on ${blas.library}, ${blas.core}); ` +
          "fused wasm SIMD kernels for RMSNorm, RoPE, " +
          "attention softmax, SwiGLU, cross-entropy, AdamW (in place), the gradient norm and the " +
          `embedding (${threadsText(threads)}); other ops on tfjs wasm (XNNPACK SIMD, 1 thread)`,
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
  const states = new StateHandles<TrainState>("tfjs");
  return {
    backend: { description, fusedOps: fusedOps(), kernelThreads: fusedKernelThreads() },
    load: (shape, snap, options) => async () => {
      const problem = snapshotProblem(shape, snap);
      if (problem !== undefined) {
        return E.left(contentInvalid("checkpoint", `corrupted checkpoint: ${problem}`));
      }
      const galore = options?.galore;
      return await attempt(
        "Cannot load the model",
        () => states.issue(loadTrainState(shape, snap, galore === undefined ? {} : { galore })),
      )();
    },
    step: (s, batches, h) =>
      attempt("Training step failed", async () => {
        const { value: r, peak } = await measurePeak(() => trainStep(states.get(s), batches, h));
        return {
          state: states.replace(s, r.state, "a training step"),
          loss: r.loss,
          gradNorm: r.gradNorm,
          skipped: r.skipped,
          accounted: toRoles(r.accounted),
          measured: peak,
          projectorUpdates: r.projectorUpdates,
          svdFailures: r.svdFailures,
        };
      }),
    evaluate: (s, batches) => attempt("Evaluation failed", () => evalLoss(states.get(s), batches)),
    reset: (s, spec) =>
      attempt("ReLoRA reset failed", async () => {
        const r = await reloraReset(states.get(s), spec);
        return {
          state: states.replace(s, r.state, "a ReLoRA restart"),
          merged: r.merged,
          prunedFraction: r.prunedFraction,
        };
      }),
    snapshot: (s) => attempt("Snapshot failed", () => snapshotState(states.get(s))),
    dispose: (s) => disposeState(states.retire(s, "dispose")),
  };
}
