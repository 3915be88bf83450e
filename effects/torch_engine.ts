/**
 * The interpreter's `engine` effect on PyTorch. Each `train`/`continue` node runs in one
 * launch of the project's trainer (`torch_engine/trainer.py`, started by `torch_launch.ts`):
 * the launch begins at the node's first step, from the state this process holds, and ends
 * when the interpreter next needs the model here — to grow it, attach adapters, merge them,
 * or write the final model. Steps, evaluations, ReLoRA restarts and checkpoint snapshots are
 * commands to the live launch; everything else is computed on plain arrays in TypeScript
 * (`torch_snapshot.ts`), so the schedules, freezing rules, seeds and checkpoints are the tfjs
 * engine's own.
 *
 * The state handle is a small mutable holder (the launch is a process, not a value): every
 * transition returns a fresh holder and retires the old one.
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
  type EngineState,
  type MemoryByRole,
  MemoryByRoleCodec,
  type MicroBatch,
  type StepHyper,
  type TokenStreams,
  type TorchSettings,
} from "../pipeline/mod.ts";
import { writeTokenFiles } from "./torch_data.ts";
import { replyNumber, startSession, type TorchSession } from "./torch_launch.ts";
import {
  accountState,
  attachedSnapshot,
  grownSnapshot,
  initialSnapshot,
  mergedSnapshot,
  readExchange,
  writeExchange,
} from "./torch_snapshot.ts";
import { snapshotProblem } from "./snapshot_check.ts";

/** What the interpreter asks between commands, counted once per state (the launch keeps the layout). */
type Layout = ReturnType<typeof accountState>;

interface Holder {
  readonly shape: LlamaShape;
  readonly layout: Layout;
  /** The state as arrays (before the node's launch, or after it ended). */
  snapshot: EngineSnapshot | undefined;
  /** The node's live launch (it then holds the state). */
  session: TorchSession | undefined;
  retired: boolean;
}

function holder(s: EngineState): Holder {
  const h = s as unknown as Holder;
  if (h.retired) throw new Error("torch engine: a state was used after a transition replaced it");
  return h;
}

function state(h: Holder): EngineState {
  return h as unknown as EngineState;
}

function layoutOf(s: EngineSnapshot): Layout {
  return accountState(s.params, s.meta.trainable);
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

/** The trainer's by-role state bytes, read from its tensors, when the reply carries them whole. */
function stateOf(v: unknown): MemoryByRole | undefined {
  const d = MemoryByRoleCodec.decode(v);
  return E.isRight(d) ? d.right : undefined;
}

/** What a micro-batch becomes in a command: start offsets when it has them, else its ids. */
function batchCommand(b: MicroBatch): Record<string, unknown> {
  return b.window === undefined
    ? { rows: b.batch, seq: b.seq, tokens: [...b.tokens], targets: [...b.targets] }
    : { rows: b.batch, seq: b.seq, split: b.window.split, starts: b.window.starts };
}

/** The torch engine effect (one launch per training node, see the module doc). */
export function createTorchEngine(o: TorchEngineOptions): Engine {
  const s = o.settings;
  const dataDir = path.join(o.workDir, "data");
  const exchangeIn = path.join(o.workDir, "exchange", "in");
  const exchangeOut = path.join(o.workDir, "exchange", "out");
  let tokenFiles: Promise<E.Either<KernelFailed, void>> | undefined;
  const live = new Set<TorchSession>();

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
    const written = await writeExchange(exchangeIn, snap, h.shape)();
    if (E.isLeft(written)) return written;
    const started = await startSession({
      python: o.python,
      settings: s,
      init: exchangeIn,
      data: dataDir,
      threads: o.threads,
    });
    if (E.isLeft(started)) return started;
    live.add(started.right);
    h.session = started.right;
    h.snapshot = undefined; // the launch holds the state now
    return started;
  };

  /** The holder's state as arrays; a live launch saves it, then keeps running or ends. */
  const snapshotOf = async (
    h: Holder,
    launch: "keep" | "end",
  ): Promise<E.Either<KernelFailed, EngineSnapshot>> => {
    if (h.session === undefined) return E.right(h.snapshot!);
    const saved = await h.session.request({ op: "save", dir: exchangeOut });
    if (E.isLeft(saved)) return saved;
    const read = await readExchange(exchangeOut)();
    if (E.isLeft(read)) return E.left(kernelFailed(read.left.message));
    if (launch === "end") await endSession(h, read.right);
    return read;
  };

  const endSession = async (h: Holder, snap: EngineSnapshot): Promise<void> => {
    const session = h.session;
    h.session = undefined;
    h.snapshot = snap;
    if (session !== undefined) {
      live.delete(session);
      await session.close();
    }
  };

  /** A new holder for `snap`, retiring `old`. */
  const replace = (
    old: Holder | undefined,
    shape: LlamaShape,
    snap: EngineSnapshot,
  ): EngineState => {
    if (old !== undefined) old.retired = true;
    return state({
      shape,
      layout: layoutOf(snap),
      snapshot: snap,
      session: undefined,
      retired: false,
    });
  };

  /** A transform of the model as arrays: the launch (if any) ends first. */
  const transform = (
    what: string,
    st: EngineState,
    f: (snap: EngineSnapshot, shape: LlamaShape) => Promise<E.Either<KernelFailed, EngineSnapshot>>,
  ) =>
    attempt(what, async () => {
      const h = holder(st);
      const snap = await snapshotOf(h, "end");
      if (E.isLeft(snap)) return snap;
      const next = await f(snap.right, h.shape);
      return E.map((n: EngineSnapshot) => replace(h, h.shape, n))(next);
    });

  /** Sends a command to the holder's launch (started first when it has none). */
  const command = async (
    h: Holder,
    cmd: Readonly<Record<string, unknown>>,
  ): Promise<E.Either<KernelFailed, Record<string, unknown>>> => {
    const session = await sessionOf(h);
    return E.isLeft(session) ? session : await session.right.request(cmd);
  };

  const rowsCommand = (batches: readonly MicroBatch[]) => ({
    batches: batches.map(batchCommand),
    microBatch: Math.max(1, ...batches.map((b) => b.batch)),
  });

  const stepCommand = (h: StepHyper) => ({
    lr: h.lr,
    beta1: h.beta1,
    beta2: h.beta2,
    eps: h.eps,
    weightDecay: h.weightDecay,
    // JSON has no Infinity: an unbounded clip travels as null.
    clip: Number.isFinite(h.clip) ? h.clip : null,
    recompute: h.recompute,
  });

  return {
    backend: `torch ${o.torchVersion} (${s.device}, ${s.strategy}, ${s.precision}, ` +
      `${s.nproc * s.nnodes} rank${s.nproc * s.nnodes === 1 ? "" : "s"}` +
      `${s.nnodes > 1 ? ` on ${s.nnodes} nodes` : ""}; ${o.python})`,
    fusedOps: [],
    init: (shape, layers, seed, options) =>
      attempt("Cannot initialise the model", () => {
        if (options?.galore !== undefined) {
          return Promise.resolve(E.left(kernelFailed("GaLore runs on the tfjs engine only")));
        }
        return Promise.resolve(
          E.right(replace(undefined, shape, initialSnapshot(shape, layers, seed))),
        );
      }),
    step: (st, batches, hyper) =>
      attempt("Training step failed", async () => {
        const h = holder(st);
        const r = await command(h, {
          op: "step",
          hyper: stepCommand(hyper),
          ...rowsCommand(batches),
        });
        if (E.isLeft(r)) return r;
        const peak = (r.right.peak ?? {}) as Record<string, unknown>;
        const gpu = replyNumber(peak, "gpuBytes");
        const processBytes = replyNumber(peak, "processBytes");
        return E.right({
          state: st,
          loss: replyNumber(r.right, "loss"),
          gradNorm: replyNumber(r.right, "gradNorm"),
          skipped: r.right.skipped === true,
          peak: stateOf(r.right.state) ?? h.layout.memory,
          measured: {
            bufferBytes: 0,
            tensorCountBytes: 0,
            ...(Number.isFinite(gpu) ? { gpuBytes: gpu } : {}),
            ...(Number.isFinite(processBytes) ? { processBytes } : {}),
          },
        });
      }),
    evaluate: (st, batches) =>
      attempt("Evaluation failed", async () => {
        const r = await command(holder(st), { op: "eval", ...rowsCommand(batches) });
        return E.map((reply: Record<string, unknown>) => replyNumber(reply, "loss"))(r);
      }),
    grow: (st, spec) =>
      transform("Growth failed", st, (snap, shape) => grownSnapshot(snap, shape, spec)),
    attach: (st, spec) =>
      transform(
        "Attaching ReLoRA failed",
        st,
        (snap) => Promise.resolve(attachedSnapshot(snap, spec)),
      ),
    reset: (st, spec) =>
      attempt("ReLoRA reset failed", async () => {
        const r = await command(holder(st), {
          op: "reset",
          pruneRatio: spec.pruneRatio,
          seed: spec.seed,
        });
        if (E.isLeft(r)) return r;
        return E.right({
          state: st,
          merged: replyNumber(r.right, "merged"),
          prunedFraction: replyNumber(r.right, "prunedFraction"),
        });
      }),
    mergeAll: (st) =>
      transform(
        "Merging adapters failed",
        st,
        (snap) => Promise.resolve(E.right(mergedSnapshot(snap))),
      ),
    stats: (st) => {
      const h = holder(st);
      return h.layout.stats;
    },
    memory: (st) => {
      const h = holder(st);
      return h.layout.memory;
    },
    snapshot: (st) => attempt("Snapshot failed", () => snapshotOf(holder(st), "keep")),
    restore: (shape, snap) => () => {
      const problem = snapshotProblem(shape, snap);
      if (problem !== undefined) {
        return Promise.resolve(
          E.left(contentInvalid("checkpoint", `corrupted checkpoint: ${problem}`)),
        );
      }
      if (snap.meta.galore !== undefined) {
        return Promise.resolve(E.left(
          kernelFailed("this checkpoint uses GaLore, which runs on the tfjs engine only"),
        ));
      }
      return Promise.resolve(E.right(replace(undefined, shape, snap)));
    },
    dispose: (st) => {
      const h = st as unknown as Holder;
      h.retired = true;
      h.snapshot = undefined;
      if (h.session !== undefined) {
        const session = h.session;
        h.session = undefined;
        live.delete(session);
        // Closed in the background; shutdown() waits for it.
        closing.push(session.close());
      }
    },
    shutdown: async () => {
      for (const session of live) closing.push(session.close());
      live.clear();
      await Promise.all(closing);
    },
  };
}
