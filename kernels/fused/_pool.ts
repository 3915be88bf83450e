/**
 * A pool of worker threads that run the fused kernels' parts (./_parts.ts) on
 * the wasm backend's memory beside the main thread, when that memory is shared
 * (../_shared_wasm_memory.ts). The tfjs kernels are synchronous, so a job is handed
 * over through a small shared control block and `Atomics.wait`/`notify` (a
 * round trip of 6–12 µs here), not through messages: the main thread writes
 * the arguments, wakes the workers, runs part 0 itself and waits for the rest.
 *
 * The workers are `node:worker_threads` workers, unreferenced so that they
 * never keep the process alive; each compiles its own instance of ./_simd.ts
 * on the shared memory. A job is cut into the planned parts whichever threads are ready: the
 * calling thread runs the parts of workers still starting (or failed), so what a job writes
 * never depends on when the workers came up (a product's bits can depend on its cut). On a
 * memory that is not shared, jobs run whole on the calling thread. Private to
 * `kernels/fused/`.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import { attachHeapSgemm, type HeapSgemm } from "../blas/mod.ts";
import { JOB_NAMES, type JobName, MAX_ARGS, type PartContext, PARTS } from "./_parts.ts";
import { simdKernels } from "./_simd.ts";

/** Control block layout: Int32 slots, then the arguments as float64 from byte `argsAt`. */
export const CONTROL = {
  /** Bumped once per job; workers wait on it. −1 asks them to stop. */
  seq: 0,
  /** The job's number in JOB_NAMES. */
  job: 1,
  /** Parts the job is cut into. */
  parts: 2,
  /** Workers that run a part of this job (worker i runs part i + 1); the others sit it out. */
  helpers: 3,
  /** Per worker from here: the last seq it finished. */
  done: 8,
  /** Per worker from here: 1 once its kernels are instantiated, 2 if a part threw. */
  state: 8 + 32,
  /** Byte offset of the arguments. */
  argsAt: 4 * (8 + 32 + 32),
  /** Byte offset of the attached BLAS library's name: its UTF-8 length (int32), then the bytes. */
  libraryAt: 4 * (8 + 32 + 32) + 8 * MAX_ARGS,
} as const;
/** Longest library name the control block holds. */
const LIBRARY_BYTES = 4096;
const MAX_WORKERS = 32;
const STATE = CONTROL.state;
const CONTROL_BYTES = CONTROL.libraryAt + 4 + LIBRARY_BYTES;
/**
 * How long the caller spins for a worker's part before it sleeps, ms: a futex wake costs tens of
 * µs here, as much as a small product's part. Small bench step, the caller's waits summed, three
 * alternating runs of 30 steps: 7.58, 7.06, 6.42 ms per step without the spin; 5.82, 6.20, 5.88
 * with 0.3 ms (bench/NOTES.md §11).
 */
const WAIT_SPIN_MS = 0.3;
/** A worker that has not answered after this long has died: the job fails instead of hanging. */
const WAIT_LIMIT_MS = 120_000;

/** Runs jobs on the calling thread and the pool's workers. */
export interface KernelPool {
  /** Threads running a job's parts now: the workers that are ready, plus the caller. */
  readonly threads: () => number;
  /** Threads once every worker started is ready: 1 when none could start or the memory is plain. */
  readonly planned: number;
  /** Parts a job is cut into: {@link planned} while the pool is open, 1 once closed. */
  readonly parts: () => number;
  /**
   * Runs every part of `job`, cut into at most `maxParts` parts (default {@link parts}), and
   * returns when all are done, with the number of parts it was cut into. Parts whose worker is
   * not ready run on the caller.
   */
  run(job: JobName, args: readonly number[], maxParts?: number): number;
  /**
   * Makes the heap sgemm named `library` (`HeapSgemm.library` of ../blas, already opened and
   * set up in this process) available to the jobs that multiply; idempotent for the same
   * library.
   */
  attach(library: string): void;
  /** Stops the workers; later jobs run on the calling thread. */
  close(): void;
}

/** The sgemm accessor of a part context: the library attached by name, opened once. */
export function lazySgemm(name: () => string | undefined): () => HeapSgemm {
  let opened: HeapSgemm | undefined;
  return () => {
    const library = name();
    if (library === undefined) throw new Error("kernel pool: no BLAS library attached");
    if (opened === undefined || opened.library !== library) opened = attachHeapSgemm(library);
    return opened;
  };
}

/** Writes `library` into the control block, where the workers read it. */
function writeLibrary(control: SharedArrayBuffer, library: string): void {
  const bytes = new TextEncoder().encode(library);
  if (bytes.length > LIBRARY_BYTES) throw new Error(`kernel pool: library name too long`);
  new Uint8Array(control, CONTROL.libraryAt + 4, bytes.length).set(bytes);
  Atomics.store(new Int32Array(control, CONTROL.libraryAt, 1), 0, bytes.length);
}

/** The library name in the control block, or undefined when none was written. */
export function readLibrary(control: SharedArrayBuffer): string | undefined {
  const length = Atomics.load(new Int32Array(control, CONTROL.libraryAt, 1), 0);
  if (length === 0) return undefined;
  return new TextDecoder().decode(new Uint8Array(control, CONTROL.libraryAt + 4, length));
}

/** Workers to start for `threads` threads in all (the caller is one). */
export function workersFor(threads: number): number {
  return Math.max(0, Math.min(MAX_WORKERS, Math.floor(threads) - 1));
}

/**
 * Threads for the fused kernels: `STEP_KERNEL_THREADS` when set (1 turns the pool off),
 * else the cores this process may use.
 */
export function kernelThreads(): number {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("STEP_KERNEL_THREADS");
  } catch {
    fromEnv = undefined;
  }
  const n = fromEnv === undefined || fromEnv === ""
    ? navigator.hardwareConcurrency
    : Number(fromEnv);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`STEP_KERNEL_THREADS must be a whole number ≥ 1, got "${fromEnv}"`);
  }
  return n;
}

function inline(memory: WebAssembly.Memory): KernelPool {
  let library: string | undefined;
  const ctx: PartContext = { simd: simdKernels(memory), memory, sgemm: lazySgemm(() => library) };
  return {
    threads: () => 1,
    planned: 1,
    parts: () => 1,
    run: (job, args) => {
      PARTS[job](ctx, Float64Array.from(args), 0, 1);
      return 1;
    },
    attach: (name) => {
      library = name;
      ctx.sgemm();
    },
    close: () => {},
  };
}

/** Starts `workers` workers on `memory` (shared); with none, or a plain memory, jobs run inline. */
export function startPool(memory: WebAssembly.Memory, workers: number): KernelPool {
  if (workers < 1 || !(memory.buffer instanceof SharedArrayBuffer)) return inline(memory);
  const control = new SharedArrayBuffer(CONTROL_BYTES);
  const ints = new Int32Array(control);
  const args = new Float64Array(control, CONTROL.argsAt, MAX_ARGS);
  let library: string | undefined;
  const ctx: PartContext = { simd: simdKernels(memory), memory, sgemm: lazySgemm(() => library) };
  const threads: Worker[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      const w = new Worker(new URL("./_pool_worker.ts", import.meta.url), {
        workerData: { memory, control, index: i },
      });
      w.unref();
      threads.push(w);
    }
  } catch (e: unknown) {
    // Without permission to read the worker's module, say: the kernels still run, on one thread.
    for (const w of threads) void w.terminate();
    console.error(`Note: the fused kernels run on one thread: no worker thread started (${e})`);
    return inline(memory);
  }
  let closed = false;
  let seq = 0;
  const ready = (): number => {
    if (closed) return 0;
    let n = 0;
    while (n < workers && Atomics.load(ints, STATE + n) === 1) n++;
    return n;
  };
  const waitFor = (worker: number, job: JobName): void => {
    const slot = CONTROL.done + worker;
    const started = performance.now();
    for (let spin = 1; Atomics.load(ints, slot) !== seq; spin++) {
      if ((spin & 63) !== 0 || performance.now() - started < WAIT_SPIN_MS) continue;
      Atomics.wait(ints, slot, Atomics.load(ints, slot), 10);
      if (performance.now() - started > WAIT_LIMIT_MS) {
        throw new Error(`kernel pool: worker ${worker} did not finish ${job} in 120 s`);
      }
    }
    if (Atomics.load(ints, STATE + worker) === 2) {
      throw new Error(`kernel pool: worker ${worker} failed in ${job} (its error is on stderr)`);
    }
  };
  return {
    threads: () => ready() + 1,
    planned: workers + 1,
    parts: () => closed ? 1 : workers + 1,
    run(job, values, maxParts = MAX_WORKERS + 1) {
      const parts = Math.max(1, Math.min(maxParts, closed ? 1 : workers + 1));
      if (parts === 1) {
        PARTS[job](ctx, Float64Array.from(values), 0, 1);
        return 1;
      }
      if (values.length > MAX_ARGS) throw new Error(`kernel pool: ${job} has too many arguments`);
      // Workers 0 … helpers − 1 run parts 1 … helpers; a worker that turns ready meanwhile
      // sits this job out, since the caller runs its part.
      const helpers = Math.min(ready(), parts - 1);
      args.set(values);
      if (helpers > 0) {
        Atomics.store(ints, CONTROL.job, JOB_NAMES.indexOf(job));
        Atomics.store(ints, CONTROL.parts, parts);
        Atomics.store(ints, CONTROL.helpers, helpers);
        seq = seq + 1;
        Atomics.store(ints, CONTROL.seq, seq);
        Atomics.notify(ints, CONTROL.seq);
      }
      PARTS[job](ctx, args, 0, parts);
      for (let part = helpers + 1; part < parts; part++) PARTS[job](ctx, args, part, parts);
      for (let w = 0; w < helpers; w++) waitFor(w, job);
      return parts;
    },
    attach(name) {
      if (name === library) return;
      writeLibrary(control, name);
      library = name;
      // Opened here, not at the first part: opening oneDNN sets this thread to one thread, which
      // must come before the caller's own setting (threadsFor), not after it.
      ctx.sgemm();
    },
    close() {
      if (closed) return;
      closed = true;
      Atomics.store(ints, CONTROL.seq, -1);
      Atomics.notify(ints, CONTROL.seq);
      for (const w of threads) void w.terminate();
    },
  };
}

const pools = new WeakMap<WebAssembly.Memory, KernelPool>();

/** The pool of `memory`, started on first use with {@link kernelThreads} threads. */
export function poolOf(memory: WebAssembly.Memory): KernelPool {
  let p = pools.get(memory);
  if (p === undefined) {
    p = startPool(memory, workersFor(kernelThreads()));
    pools.set(memory, p);
  }
  return p;
}
