import * as E from "fp-ts/lib/Either.js";
import { WASM32_PAGES } from "../../base/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/assert.ts";
import { openHeapSgemm } from "../blas/mod.ts";
import { backwardScratch, dimArgs, forwardScratch } from "./_attention.ts";
import { JOB_NAMES, type JobName, partRange } from "./_parts.ts";
import { type KernelPool, kernelThreads, startPool, workersFor } from "./_pool.ts";
import { assertClose, stridedProductRef } from "../_test_util.ts";

Deno.test("partRange: parts cover [0, n) in order, without overlap, cut on the alignment", () => {
  for (let n = 0; n <= 70; n++) {
    for (let parts = 1; parts <= 5; parts++) {
      for (const align of [1, 4]) {
        let next = 0;
        for (let p = 0; p < parts; p++) {
          const [s, e] = partRange(n, p, parts, align);
          assertEquals(s, Math.min(next, n), `n ${n} parts ${parts} part ${p}`);
          assert(e >= s);
          if (e < n) assertEquals(e % align, 0, `n ${n} parts ${parts} part ${p} ends at ${e}`);
          next = e;
        }
        assertEquals(next, n, `n ${n} parts ${parts}: the last part ends at n`);
      }
    }
  }
});

Deno.test("workersFor and kernelThreads: the caller is one of the threads; bad values are refused", () => {
  assertEquals(workersFor(1), 0);
  assertEquals(workersFor(2), 1);
  assertEquals(workersFor(1000), 32);
  const saved = Deno.env.get("STEP_KERNEL_THREADS");
  try {
    Deno.env.set("STEP_KERNEL_THREADS", "3");
    assertEquals(kernelThreads(), 3);
    Deno.env.set("STEP_KERNEL_THREADS", "");
    assertEquals(kernelThreads(), navigator.hardwareConcurrency);
    for (const bad of ["0", "1.5", "two"]) {
      Deno.env.set("STEP_KERNEL_THREADS", bad);
      let message = "";
      try {
        kernelThreads();
      } catch (e: unknown) {
        message = String(e);
      }
      assertStringIncludes(message, `STEP_KERNEL_THREADS must be a whole number ≥ 1, got "${bad}"`);
    }
  } finally {
    if (saved === undefined) Deno.env.delete("STEP_KERNEL_THREADS");
    else Deno.env.set("STEP_KERNEL_THREADS", saved);
  }
});

/** Float32 tensors laid out one after another in a memory, from byte 1024. */
class Arena {
  private next = 1024;
  constructor(readonly memory: WebAssembly.Memory) {}
  alloc(n: number, fill: (i: number) => number = () => 0): number {
    const at = this.next;
    this.next += 4 * n + 64;
    const f = new Float32Array(this.memory.buffer, at, n);
    for (let i = 0; i < n; i++) f[i] = fill(i);
    return at;
  }
  read(at: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, at, n).slice();
  }
}

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 * 4 - 2;
  };
}

/** A job's arguments and the outputs to compare, on fresh inputs in `arena`. */
interface Case {
  readonly job: JobName;
  readonly args: number[];
  readonly outputs: [at: number, n: number][];
}

/**
 * Causal attention with grouped kv heads over a sequence that ends in a short block: forward,
 * then backward on its outputs. Scratch for up to 6 parts, one per (batch, kv head).
 */
function attentionCases(arena: Arena): Case[] {
  const r = random(11);
  const x = { batch: 3, seq: 70, heads: 4, kvHeads: 2, d: 8 };
  const qn = x.batch * x.seq * x.heads * x.d;
  const kn = x.batch * x.seq * x.kvHeads * x.d;
  const ln = x.batch * x.heads * x.seq;
  const [q, k, v, dy] = [qn, kn, kn, qn].map((n) => arena.alloc(n, r)) as [
    number,
    number,
    number,
    number,
  ];
  const [o, lse, dq, dk, dv] = [qn, ln, qn, kn, kn].map((n) => arena.alloc(n)) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const dims = dimArgs({ ...x, qStride: x.heads * x.d, kvStride: x.kvHeads * x.d });
  const full = { ...x, qStride: 0, kvStride: 0 };
  const fScratch = arena.alloc(6 * forwardScratch(full));
  const bScratch = arena.alloc(6 * backwardScratch(full));
  const scale = 1 / Math.sqrt(x.d);
  return [
    {
      job: "attentionForward",
      args: [q, k, v, o, lse, ...dims, scale, fScratch],
      outputs: [[o, qn], [lse, ln]],
    },
    {
      job: "attentionBackward",
      args: [dy, q, k, v, o, lse, dq, dk, dv, ...dims, scale, bScratch],
      outputs: [[dq, qn], [dk, kn], [dv, kn]],
    },
  ];
}

function cases(arena: Arena): Case[] {
  const r = random(7);
  const rows = 37;
  const h = 64;
  const vocab = 203;
  const n = rows * h + 3; // an odd count: the last part ends in the scalar tail
  const x = (count: number) => arena.alloc(count, r);
  const out = (count: number) => arena.alloc(count);
  const targets = arena.alloc(rows);
  const t = new Int32Array(arena.memory.buffer, targets, rows);
  for (let i = 0; i < rows; i++) t[i] = i === 5 ? -1 : (i * 37) % vocab; // one row ignored
  const [g, u, y, dy, dg, du] = [x(n), x(n), out(n), x(n), out(n), out(n)];
  const [p, grad, m] = [x(n), x(n), x(n)];
  const v = arena.alloc(n, (i) => (i % 7) / 10);
  const [outP, outM, outV] = [out(n), out(n), out(n)];
  const [rx, rw, ry, rstd, rdy, rdx, rdw, partials] = [
    x(rows * h),
    x(h),
    out(rows * h),
    out(rows),
    x(rows * h),
    out(rows * h),
    out(h),
    out(4 * h),
  ];
  const seqs = 6;
  const seq = 5;
  const heads = 2;
  const half = 8;
  const ropeRows = seqs * seq;
  const ropeSize = ropeRows * heads * 2 * half;
  const [qx, cos, sin, qy] = [x(ropeSize), x(seq * half), x(seq * half), out(ropeSize)];
  const [logits, rowLoss, lse, ceDy, dLogits] = [
    x(rows * vocab),
    out(rows),
    out(rows),
    x(rows),
    out(rows * vocab),
  ];
  const adamScalars = [1, 0.9, 0.1, 0.999, 0.001, 1e-8, 0.99, 0.01, 1.2];
  const squares = out(3);
  return [
    // One partial sum per part: compared after the loop, summed.
    { job: "sumSquares", args: [g, n, squares], outputs: [] },
    { job: "swigluForward", args: [g, u, y, n], outputs: [[y, n]] },
    { job: "swigluBackward", args: [dy, g, u, dg, du, n], outputs: [[dg, n], [du, n]] },
    {
      job: "adamw",
      args: [p, grad, m, v, outP, outM, outV, n, ...adamScalars],
      outputs: [[outP, n], [outM, n], [outV, n]],
    },
    {
      job: "rmsNormForward",
      args: [rx, rw, ry, rstd, rows, h, 1e-5],
      outputs: [[ry, rows * h], [rstd, rows]],
    },
    // rstd as the forward wrote it; dw is compared after the parts' sums are added.
    {
      job: "rmsNormBackward",
      args: [rdy, rx, rw, rstd, rdx, rdw, rows, h, partials],
      outputs: [[rdx, rows * h]],
    },
    {
      job: "rope",
      args: [qx, cos, sin, qy, ropeRows, seq, heads, half, -1],
      outputs: [[qy, ropeSize]],
    },
    {
      job: "crossEntropyForward",
      args: [logits, targets, rowLoss, lse, rows, vocab],
      outputs: [[rowLoss, rows], [lse, rows]],
    },
    {
      job: "crossEntropyBackward",
      args: [ceDy, logits, targets, lse, dLogits, rows, vocab],
      outputs: [[dLogits, rows * vocab]],
    },
  ];
}

/**
 * C = 0.5·op(A)·op(B) in the four transpositions, cut by rows (37 by 19: two whole 16-row blocks
 * and a tail) and by columns (19 by 37), inner size 23, A and B on leading dimensions wider than
 * the matrices.
 */
function sgemmCases(arena: Arena): Case[] {
  const r = random(13);
  const [k, pad] = [23, 3];
  const transpositions = [[0, 0], [0, 1], [1, 0], [1, 1]];
  return [[37, 19], [19, 37]].flatMap(([m, n]) =>
    transpositions.map(([ta, tb]) => {
      const [aRows, aCols] = ta === 1 ? [k, m!] : [m!, k];
      const [bRows, bCols] = tb === 1 ? [n!, k] : [k, n!];
      const a = arena.alloc(aRows * (aCols + pad), r);
      const b = arena.alloc(bRows * (bCols + pad), r);
      const c = arena.alloc(m! * n!);
      return {
        job: "sgemm" as const,
        args: [ta!, tb!, m!, n!, k, 0.5, a, aCols! + pad, b, bCols! + pad, 0, c, n!],
        outputs: [[c, m! * n!]] as [number, number][],
      };
    })
  );
}

/** C of an sgemm case in float64, from its inputs in `arena`. */
function sgemmReference(arena: Arena, args: readonly number[]): Float64Array {
  const [ta, tb, m, n, k, alpha, a, lda, b, ldb] = args as number[];
  const [transA, transB] = [ta === 1, tb === 1];
  return stridedProductRef(
    arena.read(a!, (transA ? k! : m!) * lda!),
    arena.read(b!, (transB ? n! : k!) * ldb!),
    { transA, transB, m: m!, n: n!, k: k!, alpha: alpha!, lda: lda!, ldb: ldb! },
  );
}

async function untilReady(pool: KernelPool, workers: number): Promise<void> {
  for (let i = 0; i < 300 && pool.threads() < workers + 1; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assertEquals(pool.threads(), workers + 1, "the workers report ready within 6 s");
}

async function readyPool(memory: WebAssembly.Memory, workers: number) {
  const pool = startPool(memory, workers);
  await untilReady(pool, workers);
  assertEquals(pool.planned, workers + 1);
  return pool;
}

/**
 * The heap sgemm on one thread per product (as the kernels set it before their parts run), a
 * shared memory and an arena on it; undefined after marking the test skipped without a BLAS.
 */
async function sharedHeap(t: Deno.TestContext) {
  const blas = openHeapSgemm();
  if (E.isLeft(blas)) {
    await t.step({ name: `skipped: ${blas.left}`, ignore: true, fn: () => {} });
    return undefined;
  }
  blas.right.sgemm.threadsFor(1);
  const memory = new WebAssembly.Memory({ initial: 64, maximum: WASM32_PAGES, shared: true });
  return { blas: blas.right, memory, arena: new Arena(memory) };
}

Deno.test("kernel pool: every job cut over 2 and 3 threads writes what one thread writes", async (t) => {
  const heap = await sharedHeap(t);
  if (heap === undefined) return;
  const { blas, memory, arena } = heap;
  const products = sgemmCases(arena);
  const all = [...cases(arena), ...attentionCases(arena)];
  const jobs = [...new Set([...all, ...products].map((c) => c.job))];
  assertEquals(jobs.sort(), [...JOB_NAMES].sort(), "every job is covered");
  const pool = await readyPool(memory, 2);
  pool.attach(blas.sgemm.library);
  try {
    // A product's bits may depend on its cut (oneDNN picks its blocking by the part's shape;
    // OpenBLAS does not): each cut is checked against float64, on every library here.
    const cblas = openHeapSgemm({ library: blas.info.library });
    const libraries = [blas.sgemm, ...(E.isRight(cblas) ? [cblas.right.sgemm] : [])];
    for (const sgemm of new Set(libraries.map((s) => s.library))) {
      pool.attach(sgemm);
      for (const c of products) {
        const want = sgemmReference(arena, c.args);
        for (const parts of [1, 2, 3]) {
          const [at, n] = c.outputs[0]!;
          new Float32Array(memory.buffer, at, n).fill(NaN);
          assertEquals(pool.run(c.job, c.args, parts), parts);
          assertClose(
            arena.read(at, n),
            want,
            1e-5,
            `${sgemm}: ${c.args.slice(0, 5)}, ${parts} parts`,
          );
        }
      }
    }
    pool.attach(blas.sgemm.library);
    for (const c of all) {
      assertEquals(pool.run(c.job, c.args, 1), 1);
      const one = c.outputs.map(([at, n]) => arena.read(at, n));
      for (const parts of [2, 3]) {
        for (const [at, n] of c.outputs) new Float32Array(memory.buffer, at, n).fill(NaN);
        assertEquals(pool.run(c.job, c.args, parts), parts);
        c.outputs.forEach(([at, n], i) => {
          // Bitwise: each element is computed by the same code whichever thread runs it.
          assertEquals(arena.read(at, n), one[i]!, `${c.job} on ${parts} threads, output ${i}`);
        });
      }
    }
    // RMSNorm's weight gradient: part 0's rows in dw, the others' in the partials; their
    // sum is the one-thread gradient up to the order of the additions.
    const back = all.find((c) => c.job === "rmsNormBackward")!;
    const [, , , , , dwAt, rows, h, partialsAt] = back.args as number[];
    pool.run("rmsNormBackward", back.args, 1);
    const whole = arena.read(dwAt!, h!);
    pool.run("rmsNormBackward", back.args, 3);
    const dw = arena.read(dwAt!, h!);
    const parts = [arena.read(partialsAt!, h!), arena.read(partialsAt! + 4 * h!, h!)];
    for (let i = 0; i < h!; i++) {
      const sum = dw[i]! + parts[0]![i]! + parts[1]![i]!;
      assert(Math.abs(sum - whole[i]!) <= 1e-5 * (1 + Math.abs(whole[i]!)), `dw[${i}]`);
    }
    assert(rows! > 3);
    // Σ x²: the parts' float32 sums add up to the float64 sum whatever the cut.
    const sq = all.find((c) => c.job === "sumSquares")!;
    const [xAt, n, sumsAt] = sq.args as [number, number, number];
    const want = arena.read(xAt, n).reduce((a, x) => a + x * x, 0);
    for (const parts of [1, 2, 3]) {
      pool.run("sumSquares", sq.args, parts);
      const got = arena.read(sumsAt, parts).reduce((a, x) => a + x, 0);
      assert(Math.abs(got / want - 1) < 1e-6, `sumSquares on ${parts}: ${got} vs ${want}`);
    }
  } finally {
    pool.close();
  }
  assertEquals(pool.threads(), 1, "a closed pool runs jobs on the caller");
});

Deno.test("kernel pool: a job run before the workers are ready writes what it writes after", async (t) => {
  const heap = await sharedHeap(t);
  if (heap === undefined) return;
  const { blas, memory, arena } = heap;
  const all = [...sgemmCases(arena), ...cases(arena)];
  const pool = startPool(memory, 2);
  pool.attach(blas.sgemm.library);
  try {
    // The workers are still loading their module: the caller runs all three parts.
    assertEquals([pool.threads(), pool.parts()], [1, 3]);
    const early = all.map((c) => {
      assertEquals(pool.run(c.job, c.args), 3);
      return c.outputs.map(([at, n]) => arena.read(at, n));
    });
    await untilReady(pool, 2);
    all.forEach((c, i) => {
      for (const [at, n] of c.outputs) new Float32Array(memory.buffer, at, n).fill(NaN);
      assertEquals(pool.run(c.job, c.args), 3);
      c.outputs.forEach(([at, n], j) => {
        assertEquals(arena.read(at, n), early[i]![j]!, `${c.job} ${i}, output ${j}`);
      });
    });
  } finally {
    pool.close();
  }
  assertEquals(pool.parts(), 1, "a closed pool runs jobs whole on the caller");
});

Deno.test("kernel pool: a plain memory or no workers runs jobs on the caller", () => {
  const shared = new WebAssembly.Memory({ initial: 1, maximum: WASM32_PAGES, shared: true });
  const none = startPool(shared, 0);
  assertEquals([none.threads(), none.planned], [1, 1], "no workers on a shared memory");
  const plain = new WebAssembly.Memory({ initial: 64 });
  const pool = startPool(plain, 2);
  assertEquals([pool.threads(), pool.planned], [1, 1], "a plain memory takes no workers");
  const arena = new Arena(plain);
  const [g, u, y] = [arena.alloc(8, (i) => i), arena.alloc(8, () => 1), arena.alloc(8)];
  assertEquals(pool.run("swigluForward", [g, u, y, 8], 4), 1);
  const got = arena.read(y, 8);
  for (let i = 0; i < 8; i++) {
    assert(Math.abs(got[i]! - i / (1 + Math.exp(-i))) < 1e-5, `silu(${i})`);
  }
});
