/**
 * The effects the interpreter runs on: `Env = { engine, data, store, log,
 * clock, processMemory }`. Each is a narrow interface; `effects/` implements them
 * (the tfjs engine over `kernels/`, the torch engine over `torch_engine/`),
 * the CLI wires real implementations together, tests wire fakes. Nothing here
 * touches tensors: the engine's state is a handle, and the model crosses the
 * seam as a host-side snapshot (`checkpoint/snapshot.ts`).
 *
 * @module
 */
import * as t from "io-ts";
import type {
  ContentInvalid,
  ext,
  FileError,
  IoFailed,
  KernelFailed,
  LlamaShape,
  ReadonlyObjectC,
} from "../base/mod.ts";
import type { EngineSnapshot } from "../checkpoint/mod.ts";
import type { TokenStream, TokenWindows } from "../data/mod.ts";
import type { FusibleOp } from "../solvers/mod.ts";
import type { AccountedState, MetricRecord } from "./metrics_records.ts";
import type { StepHyper } from "./step_hyper.ts";

/** One micro-batch of packed sequences: `targets` are `tokens` shifted by one. */
export interface MicroBatch {
  /** Row-major (batch, seq) token ids. */
  readonly tokens: Int32Array;
  /** Row-major (batch, seq) next-token ids. */
  readonly targets: Int32Array;
  /** Rows (sequences). */
  readonly batch: number;
  /** Positions per row. */
  readonly seq: number;
  /**
   * Where the rows come from, when they are windows of the run's token streams: row k is
   * `tokens[starts[k] .. starts[k] + seq]` of `split` (the torch engine reads them there).
   */
  readonly window?: TokenWindows;
  /** Positions that only fill rows out to `seq` (their targets are -1); unset: none. */
  readonly padding?: number;
}

/**
 * The token streams batches are cut from: a row's window offsets index them. Read window by
 * window (in memory, or from token shards on disk, where `segments` says which files).
 */
export interface TokenStreams {
  /** The training split's tokens, documents one after another. */
  readonly train: TokenStream;
  /** The validation split's tokens. */
  readonly validation: TokenStream;
}

/** The fields every {@link MeasuredPeakCodec} record has, in bytes (0 on the torch engine). */
export const MEASURED_PEAK_REQUIRED = {
  /** The most bytes of distinct tensor buffers alive at once. */
  bufferBytes: t.number,
  /** tfjs's own per-tensor count at its peak (views and the tape's clones counted again). */
  tensorCountBytes: t.number,
};
/** The fields a {@link MeasuredPeakCodec} record has where the engine can tell, in bytes. */
export const MEASURED_PEAK_OPTIONAL = {
  /** The wasm heap's size (wasm and auto). */
  heapBytes: t.number,
  /** The most GPU bytes in use (webgpu; CUDA, the largest over ranks). */
  gpuBytes: t.number,
  /** The torch trainer's peak resident bytes on CPU above its start, the largest over ranks. */
  processBytes: t.number,
};

/**
 * What the engine really held during a stretch of work (`kernels/peak_memory.ts`):
 * `bufferBytes`, the most bytes of distinct tensor buffers alive at once; `tensorCountBytes`,
 * tfjs's own per-tensor count at its peak (views and the tape's clones counted again);
 * `heapBytes`, the wasm heap's size (wasm and auto); `gpuBytes`, the most GPU bytes in use
 * (webgpu; the torch engine on CUDA: `torch.cuda.max_memory_allocated`, the largest over
 * ranks); `processBytes`, the torch trainer's peak resident bytes on CPU above its resident size
 * before any tensor existed (the interpreter and torch's libraries), the largest over ranks
 * (VmHWM − VmRSS at start). The torch engine counts no tfjs buffers: its `bufferBytes` and `tensorCountBytes` are 0.
 */
export const MeasuredPeakCodec: ReadonlyObjectC<
  typeof MEASURED_PEAK_REQUIRED,
  typeof MEASURED_PEAK_OPTIONAL
> = t.readonly(
  t.intersection([t.type(MEASURED_PEAK_REQUIRED), t.partial(MEASURED_PEAK_OPTIONAL)]),
);
/** What the engine held at its peak (see {@link MeasuredPeakCodec}). */
export type MeasuredPeak = ext.TypeOf<typeof MeasuredPeakCodec>;

/**
 * The engine's own measure of a peak: GPU bytes on webgpu and CUDA, the trainer process's peak
 * for torch on CPU, distinct buffers elsewhere.
 */
export function enginePeakBytes(m: MeasuredPeak): number {
  return m.gpuBytes ?? m.processBytes ?? m.bufferBytes;
}

export type { EngineSnapshot, NamedArray, SnapshotMeta } from "../checkpoint/mod.ts";

/** Parameter counts of a model, by role (`model_account.ts` counts them from a snapshot). */
export interface ModelStats {
  /** Current depth. */
  readonly layers: number;
  /** Parameters trained at full rank. */
  readonly trainableParams: number;
  /** Parameters that do not train. */
  readonly frozenParams: number;
  /** The adapters' parameters. */
  readonly adapterParams: number;
}

/** What one optimizer step reports. */
export interface StepOutcome {
  /** The handle on the stepped model (the input's is retired). */
  readonly state: EngineState;
  /** Mean cross-entropy (nats/token) over all micro-batches of the step. */
  readonly loss: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** The loss or the gradient norm was not finite: nothing was updated (`state` names the input's values). */
  readonly skipped: boolean;
  /** Model state accounted role by role where it peaks (every gradient alive). */
  readonly accounted: AccountedState;
  /** What the engine really held at the step's peak. */
  readonly measured: MeasuredPeak;
  /** GaLore projectors recomputed in this step (engines with GaLore report it). */
  readonly projectorUpdates?: number;
  /** GaLore decompositions that failed in this step; the weights never saw their output. */
  readonly svdFailures?: number;
}

/** What a step sent ahead reports when it is done: {@link StepOutcome} but the handle. */
export type StepReport = Omit<StepOutcome, "state">;

/**
 * A step an engine took on and has not finished: the handle on the model after it, at once, so
 * the next step can be sent behind it, and its report to come.
 */
export interface StepInFlight {
  /** The handle on the model after this step (the input's is retired). */
  readonly state: EngineState;
  /** The step's report; resolves (never rejects) once the engine has run it. */
  readonly report: Promise<ext.Either<KernelFailed, StepReport>>;
}

/**
 * A handle on a model state the engine holds (weights, trainable set, adapters, optimizer).
 * A handle is used once: `step` and `reset` return a new one and retire theirs, `dispose`
 * retires it, and an engine refuses a retired handle with an error naming what retired it.
 */
export interface EngineState {
  /** The engine that issued it, e.g. "tfjs". */
  readonly engine: string;
  /** Its number among the engine's handles. */
  readonly id: number;
}

/** What a ReLoRA merge-and-reset did. */
export interface ResetOutcome {
  /** The handle on the restarted model (the input's is retired). */
  readonly state: EngineState;
  /** Adapters merged into their frozen weights. */
  readonly merged: number;
  /** Fraction of the adapters' Adam moments set to zero. */
  readonly prunedFraction: number;
}

/**
 * GaLore from {@link Engine.load} on (spec §5): Adam on rank-`rank` projections of the
 * `targets`' gradients, projectors refreshed every `updateEvery` steps, updates multiplied by
 * `scale`.
 */
export interface GaloreEngineSpec {
  /** Rank of the projections (clamped to each matrix). */
  readonly rank: number;
  /** Steps between refreshes of a projector. */
  readonly updateEvery: number;
  /** Factor applied to the update projected back. */
  readonly scale: number;
  /** Weight names (2-D, trainable) that GaLore optimises; the others take plain AdamW. */
  readonly targets: readonly string[];
}

/** What runs an engine's tensors. */
export interface EngineBackend {
  /** One line, e.g. "wasm" or "blas (OpenBLAS, 2 threads)". */
  readonly description: string;
  /** Ops that run as fused kernels on it (the memory prediction depends on them). */
  readonly fusedOps: readonly FusibleOp[];
  /** Threads its fused kernels cut a call over (fused attention's scratch is per part); 1 if unset. */
  readonly kernelThreads?: number;
}

/**
 * The tensor engine, as the interpreter sees it: it loads a model snapshot, takes steps,
 * evaluates, restarts ReLoRA's adapters and copies the model back out. STEP's surgery between
 * stages happens on snapshots (`checkpoint/surgery.ts`): a stage boundary is snapshot →
 * transform → load. Every method owns and disposes what it replaces.
 */
export interface Engine {
  /** What runs the tensors. */
  readonly backend: EngineBackend;
  /**
   * The model of `snapshot` (fresh from `initialSnapshot`, transformed, or read back); `galore`
   * starts GaLore on a fresh optimizer. A snapshot that does not fit `shape` is
   * `ContentInvalid` (a damaged checkpoint: the surgery's snapshots always fit).
   */
  load(
    shape: LlamaShape,
    snapshot: EngineSnapshot,
    options?: { readonly galore?: GaloreEngineSpec },
  ): ext.TaskEither<KernelFailed | ContentInvalid, EngineState>;
  /** One optimizer step over `batches` (gradients accumulated); retires `state`. */
  step(
    state: EngineState,
    batches: readonly MicroBatch[],
    hyper: StepHyper,
  ): ext.TaskEither<KernelFailed, StepOutcome>;
  /**
   * The same step as {@link Engine.step}, sent without waiting for it (engines whose steps run
   * elsewhere: the torch engine's trainer): resolves once the step is on its way, with the next
   * handle and the report to come. Steps, evaluations and restarts run in the order they were
   * sent; the training loop keeps a window of these in flight and waits for reports only where
   * it needs them. Unset: the loop waits for every step.
   */
  stepAhead?(
    state: EngineState,
    batches: readonly MicroBatch[],
    hyper: StepHyper,
  ): ext.TaskEither<KernelFailed, StepInFlight>;
  /** Mean validation cross-entropy in nats/token. */
  evaluate(
    state: EngineState,
    batches: readonly MicroBatch[],
  ): ext.TaskEither<KernelFailed, number>;
  /** ReLoRA's restart: W += scale·B·A, re-initialise A and B, prune the adapters' moments. */
  reset(
    state: EngineState,
    spec: { readonly pruneRatio: number; readonly seed: number },
  ): ext.TaskEither<KernelFailed, ResetOutcome>;
  /** The model as host-side arrays; the state stays live. */
  snapshot(state: EngineState): ext.TaskEither<KernelFailed, EngineSnapshot>;
  /** Frees the state and retires its handle. */
  dispose(state: EngineState): void;
  /** Releases what the engine holds outside this process (the torch engine's launches). */
  shutdown?(): Promise<void>;
}

/** Where the data stream stands: plain JSON, stored in checkpoints. */
export type DataPosition = Readonly<Record<string, unknown>>;

/** Batches for training and a fixed validation set. */
export interface DataEffect {
  /** One line for the log: what the batches come from (tokens and split, or examples). */
  readonly description: string;
  /** Token ids run from 0 to `vocabSize` − 1. */
  readonly vocabSize: number;
  /** Tokens in the training split. */
  readonly trainTokens: number;
  /** The position of a fresh run. */
  readonly start: DataPosition;
  /** The next `count` micro-batches and the position after them. */
  next(position: DataPosition, count: number): { batches: MicroBatch[]; next: DataPosition };
  /** The first `count` validation micro-batches (always the same ones). */
  validation(count: number): MicroBatch[];
  /**
   * The first `count` micro-batches of the corpus an `eval` node with a `source` reads, by the
   * node's id (loaded with the run's data); undefined when the node has none.
   */
  evaluationSet?(nodeId: string, count: number): MicroBatch[] | undefined;
  /** Nats/token a perfect model reaches on this data, when known (the built-in corpus). */
  readonly floorNats?: number;
  /** Unigram entropy of the training tokens in nats. */
  readonly unigramNats?: number;
  /** The streams `next` and `validation` cut their windows from. */
  readonly tokenStreams?: TokenStreams;
}

/** A checkpoint: engine snapshot plus the interpreter's progress. */
export interface Checkpoint {
  /** The model: weights, trainable set, adapters, optimizer moments. */
  readonly snapshot: EngineSnapshot;
  /** The interpreter's progress (`RunProgress`, decoded by the interpreter when it resumes). */
  readonly progress: Readonly<Record<string, unknown>>;
}

/** Durable storage of a run directory. */
export interface StoreEffect {
  /** Replaces the run's checkpoint atomically. */
  saveCheckpoint(c: Checkpoint): ext.TaskEither<IoFailed, void>;
  /** The run's checkpoint, or undefined when there is none. */
  loadCheckpoint(): ext.TaskEither<FileError, Checkpoint | undefined>;
  /** Writes the merged final model; returns its path. */
  saveFinal(snapshot: EngineSnapshot, shape: LlamaShape): ext.TaskEither<IoFailed, string>;
  /** Writes a text file inside the run directory; returns its path. */
  writeText(name: string, text: string): ext.TaskEither<IoFailed, string>;
}

/** Progress for people, metrics for programs. */
export interface LogEffect {
  /** One human-readable line (progress, events). */
  line(text: string): void;
  /** One metrics record (appended to metrics.jsonl). */
  metric(record: MetricRecord): void;
  /** Keeps only the first `records` metrics (a resumed run rewrites the rest). */
  truncate(records: number): ext.TaskEither<IoFailed, void>;
}

/** The process's resident memory, as the operating system counts it. */
export interface ProcessMemoryEffect {
  /** Peak resident bytes since the last reset (or since the process began), when the OS says. */
  peakBytes(): number | undefined;
  /** Starts a new peak from the current resident size (where the OS allows it). */
  resetPeak(): void;
}

/** Wall-clock time in milliseconds (injected so tests are deterministic). */
export interface ClockEffect {
  /** Milliseconds since an arbitrary origin (only differences are read). */
  now(): number;
}

/** Everything a run needs from the outside world. */
export interface Env {
  /** The tensors: the model's steps, evaluations and snapshots. */
  readonly engine: Engine;
  /** The batches. */
  readonly data: DataEffect;
  /** The run directory's checkpoint and final model. */
  readonly store: StoreEffect;
  /** Progress lines and metrics records. */
  readonly log: LogEffect;
  /** Wall-clock time. */
  readonly clock: ClockEffect;
  /** The process's resident memory, as the OS counts it (a measured figure). */
  readonly processMemory: ProcessMemoryEffect;
}
