/**
 * The effects the interpreter runs on: `Env = { engine, data, store, log,
 * clock }`. Each is a narrow interface; `kernels/` implements the engine, the
 * CLI wires real implementations together, tests wire fakes. Nothing here
 * touches tensors: the engine's state is an opaque handle.
 *
 * @module
 */
import type * as TE from "fp-ts/lib/TaskEither.js";
import type { LlamaShape, Projection } from "../solvers/llama_shape.ts";
import type { Placement } from "./config.ts";
import type { IoFailed, KernelFailed } from "./errors.ts";

/** One micro-batch of packed sequences: `targets` are `tokens` shifted by one. */
export interface MicroBatch {
  /** Row-major (batch, seq) token ids. */
  readonly tokens: Int32Array;
  /** Row-major (batch, seq) next-token ids. */
  readonly targets: Int32Array;
  readonly batch: number;
  readonly seq: number;
}

/** Live model-state bytes by role, read from the engine's tensors. */
export interface MemoryByRole {
  /** Weights trained at full rank. */
  readonly trainableWeights: number;
  /** Gradients of trained tensors (adapters included). */
  readonly gradients: number;
  /** Optimizer state (Adam m and v) of trained tensors (adapters included). */
  readonly optimizer: number;
  /** Frozen weights. */
  readonly frozen: number;
  /** Adapter weights (their gradients and moments are in the rows above). */
  readonly adapters: number;
  /** Sum of the rows. */
  readonly total: number;
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
}

/** What one optimizer step reports. */
export interface StepOutcome {
  readonly state: EngineState;
  /** Mean cross-entropy (nats/token) over all micro-batches of the step. */
  readonly loss: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** Model-state bytes at the step's peak (gradients alive). */
  readonly peak: MemoryByRole;
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
  /** Everything else (trainable set, adapter scale, optimizer step, …): JSON-serialisable. */
  readonly meta: Readonly<Record<string, unknown>>;
}

/** Growth settings. */
export interface GrowSpec {
  readonly add: number;
  readonly placement: Placement;
  readonly seed: number;
}

/** ReLoRA attachment settings. */
export interface AttachSpec {
  readonly rank: number;
  readonly alpha: number;
  readonly targets: readonly Projection[];
  readonly seed: number;
  /** Keep embeddings, final norm and LM head trainable. */
  readonly trainEmbeddings: boolean;
}

/** What a ReLoRA merge-and-reset did. */
export interface ResetOutcome {
  readonly state: EngineState;
  /** Adapters merged into their frozen weights. */
  readonly merged: number;
  /** Fraction of the adapters' Adam moments set to zero. */
  readonly prunedFraction: number;
}

/** The tensor engine, as the interpreter sees it. Every method owns and disposes what it replaces. */
export interface Engine {
  /** Backend actually in use, e.g. "wasm" or "blas (OpenBLAS, 2 threads)". */
  readonly backend: string;
  init(shape: LlamaShape, layers: number, seed: number): TE.TaskEither<KernelFailed, EngineState>;
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
  restore(shape: LlamaShape, snapshot: EngineSnapshot): TE.TaskEither<KernelFailed, EngineState>;
  dispose(state: EngineState): void;
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
  /** Nats/token a perfect model reaches on this data, when known (the built-in corpus). */
  readonly floorNats?: number;
  /** Unigram entropy of the training tokens in nats. */
  readonly unigramNats?: number;
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
  loadCheckpoint(): TE.TaskEither<IoFailed, Checkpoint | undefined>;
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
  metric(record: Readonly<Record<string, unknown>>): void;
  /** Keeps only the first `records` metrics (a resumed run rewrites the rest). */
  truncate(records: number): TE.TaskEither<IoFailed, void>;
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
}
