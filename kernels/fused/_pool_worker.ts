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

Atomics.store(ints, STATE + index, 1);
let seen = Atomics.load(ints, CONTROL.seq);
for (;;) {
  Atomics.wait(ints, CONTROL.seq, seen);
  const seq = Atomics.load(ints, CONTROL.seq);
  if (seq < 0) break;
  if (seq === seen) continue;
  seen = seq;
  const parts = Atomics.load(ints, CONTROL.parts);
  if (part < parts) {
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
