/**
 * A kernel pool worker (./_pool.ts): instantiates ./_simd.ts on the shared
 * wasm memory, reports ready, then runs its part of each job as the control
 * block announces them, until told to stop. It never returns to its event
 * loop while running: the jobs come through `Atomics.wait`, not messages.
 *
 * @module
 */
import { workerData } from "node:worker_threads";
import { CONTROL, lazySgemm, readLibrary } from "./_pool.ts";
import { JOB_NAMES, MAX_ARGS, PARTS } from "./_parts.ts";
import { simdKernels } from "./_simd.ts";

const { memory, control, index } = workerData as {
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  index: number;
};
const ints = new Int32Array(control);
const STATE = CONTROL.state;
const args = new Float64Array(control, CONTROL.argsAt, MAX_ARGS);
const ctx = { simd: simdKernels(memory), memory, sgemm: lazySgemm(() => readLibrary(control)) };
const part = index + 1;
/**
 * How long a worker spins for the next job before it sleeps, ms. Small bench step (products on
 * the pool), median of 20, three alternating runs: no spin 63.6–68.5 ms, 0.3 ms 55.0–59.6,
 * 1 ms 55.7–56.9 (bench/NOTES.md §10).
 */
const SPIN_MS = 1;

Atomics.store(ints, STATE + index, 1);
let seen = Atomics.load(ints, CONTROL.seq);
for (;;) {
  // Spin a while before sleeping: a training step's kernels and products follow each other
  // within microseconds, and a futex wake costs more than the smaller ones take.
  const until = performance.now() + SPIN_MS;
  for (let i = 1; Atomics.load(ints, CONTROL.seq) === seen; i++) {
    if ((i & 63) === 0 && performance.now() > until) break;
  }
  Atomics.wait(ints, CONTROL.seq, seen);
  const seq = Atomics.load(ints, CONTROL.seq);
  if (seq < 0) break;
  if (seq === seen) continue;
  seen = seq;
  if (part <= Atomics.load(ints, CONTROL.helpers)) {
    const parts = Atomics.load(ints, CONTROL.parts);
    try {
      PARTS[JOB_NAMES[Atomics.load(ints, CONTROL.job)]!](ctx, args, part, parts);
    } catch (e: unknown) {
      Atomics.store(ints, STATE + index, 2);
      console.error(`kernel pool worker ${index}:`, e);
    }
  }
  Atomics.store(ints, CONTROL.done + index, seq);
  Atomics.notify(ints, CONTROL.done + index);
}
