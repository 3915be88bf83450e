/**
 * The effects the interpreter runs on: `Env = { engine, data, store, log,
 * clock }`. Each is a narrow interface; `kernels/` implements the engine, the
 * CLI wires real implementations together, tests wire fakes. Nothing here
 * touches tensors: the engine's state is an opaque handle.
 *
 * @module
 */
import type * as TE from "fp-ts/lib/TaskEither.js";
import * as t from "io-ts";
import type {
  ContentInvalid,
  FileError,
  IoFailed,
  KernelFailed,
  LlamaShape,
  Placement,
} from "../base/mod.ts";
import type { SnapshotMeta } from "../checkpoint/mod.ts";
import type { TokenWindows } from "../data/mod.ts";
import type { FusibleOp } from "../solvers/mod.ts";
import type { MemoryByRole, MetricRecord } from "./metrics_records.ts";

/** One micro-batch of packed sequences: `targets` are `tokens` shifted by one. */
export interface MicroBatch {
  /** Row-major (batch, seq) token ids. */
  readonly tokens: Int32Array;
  /** Row-major (batch, seq) next-token ids. */
  readonly targets: Int32Array;
  readonly batch: number;
  readonly seq: number;
  /**
   * Where the rows come from, when they are windows of the run's token streams: row k is
   * `tokens[starts[k] .. starts[k] + seq]` of `split` (the torch engine reads them there).
   */
  readonly window?: TokenWindows;
}

/** The token streams batches are cut from (uint16 when the vocabulary fits, else int32). */
export interface TokenStreams {
  readonly train: Uint16Array | Int32Array;
  readonly validation: Uint16Array | Int32Array;
}

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
export const MeasuredPeakCodec = t.readonly(t.intersection([
  t.type({ bufferBytes: t.number, tensorCountBytes: t.number }),
  t.partial({ heapBytes: t.number, gpuBytes: t.number, processBytes: t.number }),
]));
/** What the engine held at its peak (see {@link MeasuredPeakCodec}). */
export type MeasuredPeak = t.TypeOf<typeof MeasuredPeakCodec>;

/**
 * The engine's own measure of a peak: GPU bytes on webgpu and CUDA, the trainer process's peak
 * for torch on CPU, distinct buffers elsewhere.
 */
export function enginePeakBytes(m: MeasuredPeak): number {
  return m.gpuBytes ?? m.processBytes ?? m.bufferBytes;
}

/** Parameter counts of the engine's current model, by role. */
export interface ModelStats {
  /** Current depth. */
  readonly layers: number;
  readonly trainableParams: number;
  readonly frozenParams: number;
  readonly adapterParams: number;
}

/** Optimizer hyper-parameters for one step. */
export interface StepHyper {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Global gradient-norm clip. */
  readonly clip: number;
  /** `layers`: recompute each layer in the backward pass instead of keeping its activations. */
  readonly recompute: "none" | "layers";
  /** Tokens per chunk of the LM head and cross-entropy (unset: all at once). */
  readonly lossChunk?: number;
}

/** What one optimizer step reports. */
export interface StepOutcome {
  readonly state: EngineState;
  /** Mean cross-entropy (nats/token) over all micro-batches of the step. */
  readonly loss: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** The loss or the gradient norm was not finite: nothing was updated (the state is the input's). */
  readonly skipped: boolean;
  /** Model state accounted role by role where it peaks (every gradient alive). */
  readonly peak: MemoryByRole;
  /** What the engine really held at the step's peak. */
  readonly measured: MeasuredPeak;
  /** GaLore projectors recomputed in this step (engines with GaLore report it). */
  readonly projectorUpdates?: number;
  /** GaLore decompositions that failed in this step; the weights never saw their output. */
  readonly svdFailures?: number;
}

/** The engine's training state (weights, trainable set, adapters, optimizer): opaque here. */
export interface EngineState {
  readonly __engineState: unique symbol;
}

/** A named float32 tensor as plain data (for checkpoints). */
export interface NamedArray {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** The engine's state as plain data: enough to restore it exactly. */
export interface EngineSnapshot {
  /** Weights and adapters. */
  readonly params: readonly NamedArray[];
  /** Adam first and second moments, by parameter name. */
  readonly moments: readonly NamedArray[];
  /** Trainable set, adapter scale and optimizer step (`checkpoint/run_layout.ts`). */
  readonly meta: SnapshotMeta;
}

/** Growth settings. */
export interface GrowSpec {
  readonly add: number;
  readonly placement: Placement;
  readonly seed: number;
  /** What trains after growth, in order (`base/stage_roles.ts`). */
  readonly trainable: readonly string[];
}

/** ReLoRA attachment settings. */
export interface AttachSpec {
  readonly rank: number;
  readonly alpha: number;
  readonly seed: number;
  /** Projection weights that get adapters (`base/stage_roles.ts`). */
  readonly adapted: readonly string[];
  /** Everything that trains afterwards, in order, adapters included. */
  readonly trainable: readonly string[];
}

/** What a ReLoRA merge-and-reset did. */
export interface ResetOutcome {
  readonly state: EngineState;
  /** Adapters merged into their frozen weights. */
  readonly merged: number;
  /** Fraction of the adapters' Adam moments set to zero. */
  readonly prunedFraction: number;
}

/**
 * GaLore for {@link Engine.init} (spec §5): Adam on rank-`rank` projections of the `targets`'
 * gradients, projectors refreshed every `updateEvery` steps, updates multiplied by `scale`.
 */
export interface GaloreEngineSpec {
  readonly rank: number;
  readonly updateEvery: number;
  readonly scale: number;
  /** Weight names (2-D, trainable) that GaLore optimises; the others take plain AdamW. */
  readonly targets: readonly string[];
}

/** The tensor engine, as the interpreter sees it. Every method owns and disposes what it replaces. */
export interface Engine {
  /** Backend actually in use, e.g. "wasm" or "blas (OpenBLAS, 2 threads)". */
  readonly backend: string;
  /** Ops that run as fused kernels on it (the memory prediction depends on them). */
  readonly fusedOps: readonly FusibleOp[];
  init(
    shape: LlamaShape,
    layers: number,
    seed: number,
    options?: { readonly galore?: GaloreEngineSpec },
  ): TE.TaskEither<KernelFailed, EngineState>;
  step(
    state: EngineState,
    batches: readonly MicroBatch[],
    hyper: StepHyper,
  ): TE.TaskEither<KernelFailed, StepOutcome>;
  /** Mean validation cross-entropy in nats/token. */
  evaluate(state: EngineState, batches: readonly MicroBatch[]): TE.TaskEither<KernelFailed, number>;
  grow(state: EngineState, spec: GrowSpec): TE.TaskEither<KernelFailed, EngineState>;
  attach(state: EngineState, spec: AttachSpec): TE.TaskEither<KernelFailed, EngineState>;
  /** ReLoRA: W += scale·B·A, re-initialise A and B, prune the adapters' moments. */
  reset(
    state: EngineState,
    spec: { readonly pruneRatio: number; readonly seed: number },
  ): TE.TaskEither<KernelFailed, ResetOutcome>;
  /** Merges every adapter: a plain LLaMA with the same function. */
  mergeAll(state: EngineState): TE.TaskEither<KernelFailed, EngineState>;
  stats(state: EngineState): ModelStats;
  memory(state: EngineState): MemoryByRole;
  snapshot(state: EngineState): TE.TaskEither<KernelFailed, EngineSnapshot>;
  /** A snapshot that does not fit `shape` is `ContentInvalid` (the checkpoint is damaged). */
  restore(
    shape: LlamaShape,
    snapshot: EngineSnapshot,
  ): TE.TaskEither<KernelFailed | ContentInvalid, EngineState>;
  dispose(state: EngineState): void;
  /** Releases what the engine holds outside this process (the torch engine's launches). */
  shutdown?(): Promise<void>;
}

/** Where the data stream stands: plain JSON, stored in checkpoints. */
export type DataPosition = Readonly<Record<string, unknown>>;

/** Batches for training and a fixed validation set. */
export interface DataEffect {
  readonly description: string;
  readonly vocabSize: number;
  readonly trainTokens: number;
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
  readonly snapshot: EngineSnapshot;
  readonly progress: Readonly<Record<string, unknown>>;
}

/** Durable storage of a run directory. */
export interface StoreEffect {
  /** Replaces the run's checkpoint atomically. */
  saveCheckpoint(c: Checkpoint): TE.TaskEither<IoFailed, void>;
  /** The run's checkpoint, or undefined when there is none. */
  loadCheckpoint(): TE.TaskEither<FileError, Checkpoint | undefined>;
  /** Writes the merged final model; returns its path. */
  saveFinal(snapshot: EngineSnapshot, shape: LlamaShape): TE.TaskEither<IoFailed, string>;
  /** Writes a text file inside the run directory; returns its path. */
  writeText(name: string, text: string): TE.TaskEither<IoFailed, string>;
}

/** Progress for people, metrics for programs. */
export interface LogEffect {
  /** One human-readable line (progress, events). */
  line(text: string): void;
  /** One metrics record (appended to metrics.jsonl). */
  metric(record: MetricRecord): void;
  /** Keeps only the first `records` metrics (a resumed run rewrites the rest). */
  truncate(records: number): TE.TaskEither<IoFailed, void>;
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
  now(): number;
}

/** Everything a run needs from the outside world. */
export interface Env {
  readonly engine: Engine;
  readonly data: DataEffect;
  readonly store: StoreEffect;
  readonly log: LogEffect;
  readonly clock: ClockEffect;
  readonly memory: ProcessMemoryEffect;
}
