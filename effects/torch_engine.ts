/**
 * The interpreter's `engine` effect on PyTorch. A loaded model runs in a launch of the
 * project's trainer (`torch_engine/trainer.py`, started by `torch_launch.ts`): the first
 * command after `load` starts one from the loaded snapshot (written as an exchange directory,
 * `torch_snapshot.ts`). When the state is disposed — at a stage boundary, where the
 * interpreter transforms the snapshot on the host (`checkpoint/surgery.ts`) and loads the
 * result — the launch is kept, and the next model's first command has it `load` that model
 * (the old one freed) instead of starting another; `shutdown` ends it. Steps, evaluations, ReLoRA restarts and
 * snapshots are commands to the live launch, so the schedules, freezing rules, seeds and
 * checkpoints are the tfjs engine's own.
 *
 * What a handle names is a small mutable holder (the launch is a process, not a value); a step
 * or a restart retires the handle and issues a new one on the same holder
 * (`state_handles.ts`).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import {
  contentInvalid,
  describeUnknown,
  type KernelFailed,
  kernelFailed,
  type LlamaShape,
} from "../base/mod.ts";
import {
  type Engine,
  type EngineSnapshot,
  type StepReport,
  type TokenStreams,
  type TorchSettings,
} from "../pipeline/mod.ts";
import { writeTokenFiles } from "./torch_data.ts";
import { startSession, type TorchSession, usesTorchrun } from "./torch_launch.ts";
import {
  evalCommand,
  loadCommand,
  type ReplyTo,
  type Request,
  resetCommand,
  saveCommand,
  stepCommand,
} from "./torch_protocol.ts";
import { readExchange, writeExchange } from "./torch_snapshot.ts";
import { snapshotProblem } from "./snapshot_check.ts";
import { StateHandles } from "./state_handles.ts";

/** A loaded model: its arrays until its launch starts, then the launch. */
interface Holder {
  readonly shape: LlamaShape;
  /** The state as arrays (before its launch started). */
  snapshot: EngineSnapshot | undefined;
  /** The live launch (it then holds the state). */
  session: TorchSession | undefined;
}

/** The trainer's reply to a step, in the engine's terms. */
function stepReport(r: ReplyTo<"step">): StepReport {
  const { gpuBytes, processBytes } = r.peak;
  return {
    loss: r.loss,
    gradNorm: r.gradNorm,
    skipped: r.skipped,
    accounted: r.state,
    measured: {
      bufferBytes: 0,
      tensorCountBytes: 0,
      ...(gpuBytes === undefined ? {} : { gpuBytes }),
      ...(processBytes === undefined ? {} : { processBytes }),
    },
  };
}

/** Where the engine keeps its files, and what it launches. */
export interface TorchEngineOptions {
  readonly settings: TorchSettings;
  /** The interpreter that imports torch (`findTorchPython`). */
  readonly python: string;
  readonly torchVersion: string;
  /** A directory of its own (inside the run directory): token files and exchange directories. */
  readonly workDir: string;
  /** The token streams batches are windows of (written once as flat files). */
  readonly tokens: TokenStreams | undefined;
  /** CPU threads per rank. */
  readonly threads: number;
}

/** The torch engine effect (one launch per loaded model, see the module doc). */
export function createTorchEngine(o: TorchEngineOptions): Engine {
  const s = o.settings;
  const dataDir = path.join(o.workDir, "data");
  const exchangeIn = path.join(o.workDir, "exchange", "in");
  const exchangeOut = path.join(o.workDir, "exchange", "out");
  const schema = path.join(o.workDir, "protocol.schema.json");
  let tokenFiles: Promise<E.Either<KernelFailed, void>> | undefined;
  const states = new StateHandles<Holder>("torch");
  const live = new Set<TorchSession>();
  // A launch whose model was disposed (a stage boundary), kept for the next model to `load`:
  // a new launch would cost an interpreter, torch's import and a process group again.
  let spare: TorchSession | undefined;

  const closing: Promise<void>[] = [];
  const attempt = <A>(
    what: string,
    f: () => Promise<E.Either<KernelFailed, A>>,
  ): TE.TaskEither<KernelFailed, A> =>
  async () => {
    try {
      return await f();
    } catch (e) {
      return E.left(kernelFailed(`${what}: ${describeUnknown(e)}`));
    }
  };

  const ensureTokens = (): Promise<E.Either<KernelFailed, void>> => {
    tokenFiles ??= o.tokens === undefined
      ? Promise.resolve(E.right(undefined))
      : writeTokenFiles(dataDir, o.tokens)();
    return tokenFiles;
  };

  /** The holder's launch, started from its snapshot when it has none. */
  const sessionOf = async (h: Holder): Promise<E.Either<KernelFailed, TorchSession>> => {
    if (h.session !== undefined) return E.right(h.session);
    const snap = h.snapshot!;
    const files = await ensureTokens();
    if (E.isLeft(files)) return files;
    // A launch ended at a stage boundary is gone before the next one starts (ports, memory).
    await Promise.all(closing.splice(0));
    const written = await writeExchange(exchangeIn, snap, h.shape)();
    if (E.isLeft(written)) return written;
    if (spare !== undefined) {
      const session = spare;
      spare = undefined;
      const loaded = await session.request(loadCommand(exchangeIn));
      if (E.isLeft(loaded)) {
        live.delete(session);
        closing.push(session.close());
        return loaded;
      }
      h.session = session;
      h.snapshot = undefined;
      return E.right(session);
    }
    const started = await startSession({
      python: o.python,
      torchVersion: o.torchVersion,
      settings: s,
      init: exchangeIn,
      schema,
      data: dataDir,
      threads: o.threads,
    });
    if (E.isLeft(started)) return started;
    live.add(started.right);
    h.session = started.right;
    h.snapshot = undefined; // the launch holds the state now
    return started;
  };

  /** The holder's state as arrays; a live launch saves it and keeps running. */
  const snapshotOf = async (h: Holder): Promise<E.Either<KernelFailed, EngineSnapshot>> => {
    if (h.session === undefined) return E.right(h.snapshot!);
    const saved = await h.session.request(saveCommand(exchangeOut));
    if (E.isLeft(saved)) return saved;
    const read = await readExchange(exchangeOut)();
    return E.isLeft(read) ? E.left(kernelFailed(read.left.message)) : read;
  };

  /** Sends a command to the holder's launch (started first when it has none). */
  const command = async <C extends Request>(
    h: Holder,
    cmd: C,
  ): Promise<E.Either<KernelFailed, ReplyTo<C["op"]>>> => {
    const session = await sessionOf(h);
    return E.isLeft(session) ? session : await session.right.request(cmd);
  };

  return {
    backend: {
      description: `torch ${o.torchVersion} (${s.device}, ${s.strategy}, ${s.precision}, ` +
        `${s.nproc * s.nnodes} rank${s.nproc * s.nnodes === 1 ? "" : "s"}` +
        `${s.nnodes > 1 ? ` on ${s.nnodes} nodes` : ""}, ` +
        `${usesTorchrun(s, o.torchVersion) ? "torchrun" : "spawned"}; ${o.python})`,
      fusedOps: [],
    },
    load: (shape, snap, options) => () => {
      const problem = snapshotProblem(shape, snap);
      if (problem !== undefined) {
        return Promise.resolve(
          E.left(contentInvalid("checkpoint", `corrupted checkpoint: ${problem}`)),
        );
      }
      if (options?.galore !== undefined || snap.meta.galore !== undefined) {
        return Promise.resolve(E.left(kernelFailed(
          options?.galore !== undefined
            ? "GaLore runs on the tfjs engine only"
            : "this checkpoint uses GaLore, which runs on the tfjs engine only",
        )));
      }
      return Promise.resolve(E.right(states.issue({ shape, snapshot: snap, session: undefined })));
    },
    stepAhead: (st, batches, hyper) =>
      attempt("Training step failed", async () => {
        const h = states.get(st);
        const session = await sessionOf(h);
        if (E.isLeft(session)) return session;
        const report = session.right.request(stepCommand(hyper, batches)).then(
          E.map(stepReport),
          (e: unknown) => E.left(kernelFailed(`Training step failed: ${describeUnknown(e)}`)),
        );
        return E.right({ state: states.replace(st, h, "a training step"), report });
      }),
    step: (st, batches, hyper) =>
      attempt("Training step failed", async () => {
        const h = states.get(st);
        const r = await command(h, stepCommand(hyper, batches));
        if (E.isLeft(r)) return r;
        return E.right({ state: states.replace(st, h, "a training step"), ...stepReport(r.right) });
      }),
    evaluate: (st, batches) =>
      attempt("Evaluation failed", async () => {
        const r = await command(states.get(st), evalCommand(batches));
        return E.map((reply: ReplyTo<"eval">) => reply.loss)(r);
      }),
    reset: (st, spec) =>
      attempt("ReLoRA reset failed", async () => {
        const h = states.get(st);
        const r = await command(h, resetCommand(spec));
        if (E.isLeft(r)) return r;
        return E.right({
          state: states.replace(st, h, "a ReLoRA restart"),
          merged: r.right.merged,
          prunedFraction: r.right.prunedFraction,
        });
      }),
    snapshot: (st) => attempt("Snapshot failed", () => snapshotOf(states.get(st))),
    dispose: (st) => {
      const h = states.retire(st, "dispose");
      h.snapshot = undefined;
      if (h.session !== undefined) {
        const session = h.session;
        h.session = undefined;
        if (spare === undefined) {
          // Kept for the next model (it frees this one when it loads that); shutdown() ends it.
          spare = session;
        } else {
          live.delete(session);
          // Closed in the background; the next launch and shutdown() wait for it.
          closing.push(session.close());
        }
      }
    },
    shutdown: async () => {
      spare = undefined;
      for (const session of live) closing.push(session.close());
      live.clear();
      await Promise.all(closing.splice(0));
    },
  };
}
