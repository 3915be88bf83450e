/**
 * Matrix-product throughput, side by side in one process: raw OpenBLAS `cblas_sgemm` through
 * FFI, the "blas" tfjs backend, stock tfjs "wasm" and "cpu". Rounds are interleaved across
 * implementations so that a noisy shared machine slows them all alike; compare ratios.
 *
 * Run: `deno run -A bench/matmul_bench.ts` (prints a markdown table).
 *
 * @module
 */

import { median } from "../base/mod.ts";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import * as E from "fp-ts/lib/Either.js";
import {
  CBLAS_NO_TRANS,
  CBLAS_ROW_MAJOR,
  CBLAS_TRANS,
  openBlasOnce,
  registerBlasBackend,
  registerBlasWasmMatMul,
  unregisterBlasWasmMatMul,
} from "../kernels/blas/mod.ts";

/** One measured (size, transposes, implementation). */
export interface MatmulBenchRow {
  readonly size: number;
  readonly transA: boolean;
  readonly transB: boolean;
  /** "sgemm" (raw FFI), "blas", "wasm+blas" (wasm with OpenBLAS matmul), "wasm" or "cpu". */
  readonly impl: string;
  /** Median over rounds of 2·n³ / seconds / 1e9. */
  readonly gflops: number;
}

/** Options for {@link benchMatmul}. */
export interface MatmulBenchOptions {
  /** Square sizes n (n×n by n×n). Default [256, 1024, 2048]. */
  readonly sizes?: readonly number[];
  /** Transpose pairs [transA, transB]. Default plain, A transposed, B transposed. */
  readonly transposes?: readonly (readonly [boolean, boolean])[];
  /** Implementations to run. Default all five; unavailable ones are left out. */
  readonly impls?: readonly string[];
  /** Interleaved rounds per case; the median is reported. Default 7. */
  readonly rounds?: number;
  /** Minimum time per measurement in ms (repeats small products). Default 50. */
  readonly minMs?: number;
  /**
   * An implementation stops after 3 rounds once it has used this many ms on a case (wasm
   * takes ~15 s per transposed 2048 product). Default 6000.
   */
  readonly budgetMs?: number;
  /** Largest n for the "cpu" backend (its JS loop takes ~10 s at 2048). Default 1024. */
  readonly cpuMaxSize?: number;
  /** Folder holding tfjs-backend-wasm's .wasm files. Default the one in node_modules. */
  readonly wasmDir?: string;
}

type Runner = () => void;

/** Activates what `impl` runs on: its tfjs backend, and on wasm which BatchMatMul. */
async function enter(impl: string): Promise<void> {
  if (impl === "sgemm") return;
  if (impl === "wasm+blas") registerBlasWasmMatMul();
  if (impl === "wasm") unregisterBlasWasmMatMul();
  await tf.setBackend(impl === "wasm+blas" ? "wasm" : impl);
}

function randomValues(size: number, seed: number): Float32Array {
  // LCG: fixed inputs without Math.random; the values only need to be ordinary floats.
  let s = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

/** Seconds per call of `run`, repeated until `minMs` has passed. */
function secondsPerCall(run: Runner, minMs: number): number {
  let reps = 0;
  const t0 = performance.now();
  let elapsed = 0;
  do {
    run();
    reps++;
    elapsed = performance.now() - t0;
  } while (elapsed < minMs);
  return elapsed / reps / 1000;
}

async function tfjsRunner(
  backend: string,
  a: Float32Array,
  b: Float32Array,
  n: number,
  trans: readonly [boolean, boolean],
): Promise<{ run: Runner; dispose: () => void }> {
  await tf.setBackend(backend);
  const ta = tf.tensor2d(a, [n, n]);
  const tb = tf.tensor2d(b, [n, n]);
  return {
    run(): void {
      // tfjs kernels on these backends run synchronously: the product is done on return.
      tf.matMul(ta, tb, trans[0], trans[1]).dispose();
    },
    dispose(): void {
      tf.dispose([ta, tb]);
    },
  };
}

async function wasmAvailable(dir: string): Promise<boolean> {
  try {
    setWasmPaths(dir);
    return await tf.setBackend("wasm");
  } catch {
    return false;
  }
}

/**
 * Measures GFLOP/s of n×n·n×n products for each size, transpose pair and implementation.
 *
 * @example
 * ```ts
 * import { benchMatmul } from "./matmul_bench.ts";
 * const rows = await benchMatmul({ sizes: [256], rounds: 3 });
 * console.log(rows.map((r) => `${r.impl} ${r.gflops.toFixed(1)}`).join("\n"));
 * ```
 */
export async function benchMatmul(options: MatmulBenchOptions = {}): Promise<MatmulBenchRow[]> {
  const sizes = options.sizes ?? [256, 1024, 2048];
  const transposes = options.transposes ?? [[false, false], [true, false], [false, true]];
  const rounds = options.rounds ?? 7;
  const minMs = options.minMs ?? 50;
  const budgetMs = options.budgetMs ?? 6000;
  const cpuMaxSize = options.cpuMaxSize ?? 1024;
  const wasmDir = options.wasmDir ??
    new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url).pathname;
  const wanted = new Set(options.impls ?? ["sgemm", "blas", "wasm+blas", "wasm", "cpu"]);

  const reg = registerBlasBackend();
  if (E.isLeft(reg)) {
    console.warn(`${reg.left}; measuring wasm and cpu only`);
    wanted.delete("sgemm");
    wanted.delete("blas");
    wanted.delete("wasm+blas");
  }
  // The library the backend loaded, opened once: its kernel-family fix-up holds here too.
  const opened = E.isRight(reg) ? openBlasOnce() : undefined;
  const lib = opened !== undefined && E.isRight(opened) ? opened.right : undefined;
  if (wanted.has("wasm") && !(await wasmAvailable(wasmDir))) {
    console.warn(`Cannot start tfjs wasm from "${wasmDir}"; measuring without it`);
    wanted.delete("wasm");
  }

  const rows: MatmulBenchRow[] = [];
  for (const n of sizes) {
    const a = randomValues(n * n, 1);
    const b = randomValues(n * n, 2);
    const c = new Float32Array(n * n);
    for (const trans of transposes) {
      const runners = new Map<string, { run: Runner; dispose: () => void }>();
      if (wanted.has("sgemm") && lib !== undefined) {
        const pa = Deno.UnsafePointer.of(a);
        const pb = Deno.UnsafePointer.of(b);
        const pc = Deno.UnsafePointer.of(c);
        const ta = trans[0] ? CBLAS_TRANS : CBLAS_NO_TRANS;
        const tb = trans[1] ? CBLAS_TRANS : CBLAS_NO_TRANS;
        runners.set("sgemm", {
          run(): void {
            lib.prepare(n * n * n);
            lib.sgemm(CBLAS_ROW_MAJOR, ta, tb, n, n, n, 1, pa, n, pb, n, 0, pc, n);
          },
          dispose(): void {},
        });
      }
      for (const impl of ["blas", "wasm+blas", "wasm", "cpu"]) {
        if (!wanted.has(impl) || (impl === "cpu" && n > cpuMaxSize)) continue;
        await enter(impl);
        runners.set(impl, await tfjsRunner(tf.getBackend(), a, b, n, trans));
      }
      const times = new Map<string, number[]>([...runners.keys()].map((k) => [k, []]));
      for (const [impl, r] of runners) {
        await enter(impl);
        r.run(); // warm-up: first-call allocation, wasm memory growth
      }
      const spent = new Map<string, number>();
      for (let round = 0; round < rounds; round++) {
        for (const [impl, r] of runners) {
          if (round >= 3 && (spent.get(impl) ?? 0) > budgetMs) continue;
          await enter(impl);
          const t0 = performance.now();
          times.get(impl)!.push(secondsPerCall(r.run, minMs));
          spent.set(impl, (spent.get(impl) ?? 0) + performance.now() - t0);
        }
      }
      for (const [impl, r] of runners) {
        await enter(impl);
        r.dispose();
        const gflops = 2 * n ** 3 / median(times.get(impl)!) / 1e9;
        rows.push({ size: n, transA: trans[0], transB: trans[1], impl, gflops });
      }
    }
  }
  unregisterBlasWasmMatMul();
  return rows;
}

/** Markdown table: GFLOP/s per impl and its ratio to raw sgemm for each case. */
function table(rows: readonly MatmulBenchRow[]): string {
  const impls = [...new Set(rows.map((r) => r.impl))];
  const cases = [...new Set(rows.map((r) => `${r.size}|${r.transA}|${r.transB}`))];
  const lines = [
    `| n | op | ${impls.map((i) => `${i} GFLOP/s`).join(" | ")} | ${
      impls.filter((i) => i !== "sgemm").map((i) => `${i}/sgemm`).join(" | ")
    } |`,
  ];
  lines.push(`|${"---|".repeat(2 + impls.length + impls.length - 1)}`);
  for (const key of cases) {
    const [size, ta, tb] = key.split("|");
    const of = (impl: string): number | undefined =>
      rows.find((r) => `${r.size}|${r.transA}|${r.transB}` === key && r.impl === impl)?.gflops;
    const base = of("sgemm");
    const op = `A${ta === "true" ? "ᵀ" : ""}·B${tb === "true" ? "ᵀ" : ""}`;
    const cells = impls.map((i) => of(i)?.toFixed(1) ?? "–");
    const ratios = impls.filter((i) => i !== "sgemm").map((i) => {
      const g = of(i);
      return g === undefined || base === undefined ? "–" : `${(100 * g / base).toFixed(0)}%`;
    });
    lines.push(`| ${size} | ${op} | ${cells.join(" | ")} | ${ratios.join(" | ")} |`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const rows = await benchMatmul();
  console.log(table(rows));
}
