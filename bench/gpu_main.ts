/**
 * The GPU device program: everything the lent GPU machine runs in one call,
 * with no Deno install, no network and no `deno test` there. bench/build_gpu.sh
 * bundles it into one JavaScript file for the Deno binary that travels beside
 * it; bench/gpu.sh runs it.
 *
 * `step-gpu OUT_DIR [--shapes "d,L,V,T,B;..."] [--composite-shapes "..."] [--steps N] [--checks-only] [--no-checks] [--no-memory]`
 *
 * 1. Prints the WebGPU adapter and its limits (and says so when it is a
 *    software fallback).
 * 2. Equivalence checks, written to OUT_DIR/checks.json: the WGSL kernels
 *    against their composites on webgpu, the same cases on webgpu against
 *    the cpu backend's composite, and the two-stage STEP pipeline on webgpu
 *    against cpu step by step.
 * 3. The benchmark (bench/gpu_bench.ts), written to OUT_DIR/bench.json:
 *    fused kernels on every shape, the composite path on `--composite-shapes`.
 * 4. Peak GPU memory of standard, STEP stage-1 and stage-2 steps against the buffer replay
 *    and the planner (bench/memory_bench.ts), written to OUT_DIR/memory.json (`--no-memory`
 *    skips it).
 *
 * Exit status: 0 when every check passed and every shape ran, 1 otherwise.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { parseArgs } from "node:util";
import { initBackend } from "../kernels/mod.ts";
import {
  type CaseComparison,
  compareFusedToComposite,
  compareOutputs,
  kernelCases,
  runCase,
} from "../kernels/webgpu/mod.ts";
import {
  adapterName,
  benchGpu,
  type GpuBenchRow,
  type GpuBenchShape,
  gpuBenchTable,
  type KernelPath,
  LARGE_SHAPE,
} from "./gpu_bench.ts";
import {
  benchMemory,
  MEMORY_TABLE_HEADER,
  memoryRow,
  QUICK_GRID,
  worstErrors,
} from "./memory_bench.ts";
import { type BackendComparison, compareBackends } from "../effects/mod.ts";
import { renderError } from "../base/mod.ts";
import { validateGraph } from "../pipeline/mod.ts";
import { tinyGqaPipeline } from "../examples/mod.ts";
import { DEFAULT_SHAPES } from "./train_bench.ts";

const USAGE =
  'Usage: step-gpu OUT_DIR [--shapes "d,L,V,T,B;..."] [--composite-shapes "..."] [--steps N] ' +
  "[--checks-only] [--no-checks] [--no-memory]";

/** Cases per op: small, since a software adapter is slow; a GPU does them in seconds. */
const CASES_PER_OP = 4;
const MAX_CHECK_SEQ = 70;

function parseShapes(text: string): GpuBenchShape[] {
  return text.split(";").map((s) => s.trim()).filter((s) => s.length > 0).map((s) => {
    const xs = s.split(",").map(Number);
    if (xs.length !== 5 || xs.some((x) => !Number.isInteger(x) || x <= 0)) {
      throw new Error(`Cannot read shape "${s}": expected five positive integers d,L,V,T,B`);
    }
    return xs as GpuBenchShape;
  });
}

function describeShapes(shapes: readonly GpuBenchShape[]): string {
  return shapes.map((s) => s.join(",")).join(";");
}

/** The adapter's name, whether it is a software fallback, and the limits that size the kernels. */
async function adapterReport(): Promise<Record<string, unknown>> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === undefined || adapter === null) return { name: "no adapter" };
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const l = adapter.limits;
  return {
    name: await adapterName(),
    fallback: info.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader/i.test(
      `${info.description} ${info.device}`,
    ),
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
  };
}

async function onBackend(name: "cpu" | "webgpu"): Promise<void> {
  const got = await initBackend(name);
  if (E.isLeft(got)) throw new Error(got.left.message);
}

/** Each case: webgpu's fused kernels against the cpu backend's composite. */
async function againstCpu(): Promise<CaseComparison[]> {
  const cases = kernelCases({ seed: 77, perOp: CASES_PER_OP, maxSeq: MAX_CHECK_SEQ });
  const rows: CaseComparison[] = [];
  for (const c of cases) {
    await onBackend("cpu");
    const cpu = await runCase(c, "composite");
    await onBackend("webgpu");
    rows.push(compareOutputs(c.label, await runCase(c, "fused"), cpu));
  }
  return rows;
}

function caseLines(title: string, rows: readonly CaseComparison[]): string[] {
  return [
    title,
    ...rows.map((r) =>
      `  ${r.passed ? "ok  " : "FAIL"} ${r.label.padEnd(44)} forward ${
        r.forward.toExponential(1)
      }  gradient ${r.gradient.toExponential(1)}  leaked ${r.leaked}`
    ),
  ];
}

interface Checks {
  readonly fusedVsComposite: CaseComparison[];
  readonly webgpuVsCpu: CaseComparison[];
  readonly pipeline: BackendComparison | { readonly error: string };
  readonly passed: boolean;
}

async function runChecks(log: (line: string) => void): Promise<Checks> {
  await onBackend("webgpu");
  const fusedVsComposite = await compareFusedToComposite(
    kernelCases({ seed: 7, perOp: CASES_PER_OP, maxSeq: MAX_CHECK_SEQ }),
  );
  caseLines("kernels: fused WGSL vs composite, both on webgpu", fusedVsComposite).forEach(log);
  const webgpuVsCpu = await againstCpu();
  caseLines("kernels: fused WGSL on webgpu vs composite on cpu", webgpuVsCpu).forEach(log);
  let pipeline: Checks["pipeline"];
  try {
    const tokens = await Deno.makeTempDir({ prefix: "step-gpu-tokens-" });
    const g = E.flatMap(tinyGqaPipeline(tokens), validateGraph);
    if (E.isLeft(g)) throw new Error(renderError(g.left));
    pipeline = await compareBackends(g.right, { reference: "cpu", candidate: "webgpu" });
    log(
      `pipeline: 2-stage STEP (train, grow, ReLoRA, merge) webgpu vs cpu: ${
        pipeline.passed ? "ok" : "FAIL"
      }, ${pipeline.steps} steps, worst step |Δloss| ${
        pipeline.worstStep.toExponential(1)
      }, val |Δ| ${pipeline.valDiff.toExponential(1)} (cpu ${
        pipeline.runs[0].seconds.toFixed(1)
      } s, webgpu ${pipeline.runs[1].seconds.toFixed(1)} s)`,
    );
  } catch (reason: unknown) {
    pipeline = { error: String(reason) };
    log(`pipeline: FAIL ${String(reason)}`);
  }
  const passed = [...fusedVsComposite, ...webgpuVsCpu].every((r) => r.passed) &&
    "passed" in pipeline && pipeline.passed;
  return { fusedVsComposite, webgpuVsCpu, pipeline, passed };
}

interface BenchFailure {
  readonly shape: number[];
  readonly kernels: string;
  readonly error: string;
}

/**
 * Runs the benchmark one (shape, kernels) at a time, rewriting `file` after
 * each, so a shape that fails (out of memory, a lost device) or a call that
 * times out still leaves the rows before it. The composite rows come before
 * the large fused shapes, which take longest.
 */
async function runBench(
  shapes: readonly GpuBenchShape[],
  compositeShapes: readonly GpuBenchShape[],
  steps: number,
  file: string,
  log: (line: string) => void,
): Promise<{ rows: GpuBenchRow[]; failures: BenchFailure[] }> {
  const rows: GpuBenchRow[] = [];
  const failures: BenchFailure[] = [];
  const tokens = (s: GpuBenchShape): number => s[3] * s[4] * s[0] * s[1];
  const small = Math.max(0, ...compositeShapes.map(tokens));
  const plan: [GpuBenchShape, KernelPath][] = [
    ...shapes.filter((s) => tokens(s) <= small).map((
      s,
    ): [GpuBenchShape, KernelPath] => [s, "fused"]),
    ...compositeShapes.map((s): [GpuBenchShape, KernelPath] => [s, "composite"]),
    ...shapes.filter((s) => tokens(s) > small).map((
      s,
    ): [GpuBenchShape, KernelPath] => [s, "fused"]),
  ];
  log(gpuBenchTable([]));
  for (const [shape, kernels] of plan) {
    try {
      const [row] = await benchGpu({ shapes: [shape], kernels: [kernels], steps });
      if (row !== undefined) {
        rows.push(row);
        log(gpuBenchTable([row]).split("\n")[1]!);
      }
    } catch (reason: unknown) {
      failures.push({ shape: [...shape], kernels, error: String(reason) });
      log(`[${shape.join(", ")}] ${kernels}: FAILED ${String(reason).split("\n")[0]}`);
    }
    await Deno.writeTextFile(file, JSON.stringify({ steps, rows, failures }, null, 2));
  }
  return { rows, failures };
}

/** GPU peaks on the small grid and one model-state-dominated point; false when a step failed. */
async function runMemory(file: string, log: (line: string) => void): Promise<boolean> {
  log(MEMORY_TABLE_HEADER);
  try {
    const rows = await benchMemory({
      backends: ["webgpu"],
      grid: [...QUICK_GRID, [512, 8, 8, 8, 50257, 256, 1]],
      onRow: (r) => log(memoryRow(r)),
    });
    const worst = worstErrors(rows);
    log(
      `max |error|: replay ${(worst.replay * 100).toFixed(1)}%, planner ${
        (worst.planner * 100).toFixed(1)
      }%`,
    );
    await Deno.writeTextFile(file, JSON.stringify({ rows, worst }, null, 2));
    return true;
  } catch (reason: unknown) {
    log(`memory: FAILED ${String(reason).split("\n")[0]}`);
    await Deno.writeTextFile(file, JSON.stringify({ error: String(reason) }, null, 2));
    return false;
  }
}

/** Runs the device program; resolves to the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      shapes: { type: "string" },
      "composite-shapes": { type: "string" },
      steps: { type: "string", default: "3" },
      "checks-only": { type: "boolean", default: false },
      "no-checks": { type: "boolean", default: false },
      "no-memory": { type: "boolean", default: false },
    },
  });
  const outDir = positionals[0];
  if (outDir === undefined) {
    console.error(USAGE);
    return 2;
  }
  await Deno.mkdir(outDir, { recursive: true });
  const shapes = parseShapes(values.shapes ?? describeShapes([...DEFAULT_SHAPES, LARGE_SHAPE]));
  const compositeShapes = parseShapes(values["composite-shapes"] ?? describeShapes(DEFAULT_SHAPES));
  const steps = Number(values.steps);
  const log = (line: string): void => console.log(line);

  const adapter = await adapterReport();
  log(`adapter: ${adapter.name}${adapter.fallback === true ? " (SOFTWARE FALLBACK)" : ""}`);
  log(`limits: ${JSON.stringify(adapter)}`);
  await Deno.writeTextFile(`${outDir}/adapter.json`, JSON.stringify(adapter, null, 2));
  if (adapter.name === "no adapter") return 1;

  let passed = true;
  if (!values["no-checks"]) {
    const checks = await runChecks(log);
    await Deno.writeTextFile(`${outDir}/checks.json`, JSON.stringify(checks, null, 2));
    passed = checks.passed;
    log(`checks: ${checks.passed ? "all passed" : "FAILED"}`);
  }
  if (!values["checks-only"]) {
    const bench = await runBench(shapes, compositeShapes, steps, `${outDir}/bench.json`, log);
    passed &&= bench.failures.length === 0;
  }
  if (!values["checks-only"] && !values["no-memory"]) {
    passed &&= await runMemory(`${outDir}/memory.json`, log);
  }
  return passed ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
