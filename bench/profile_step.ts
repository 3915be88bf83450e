/**
 * Per-kernel profile of one training step (forward, backward, AdamW), from
 * tfjs's own profiler (`tf.profile`, `kernelTimeMs` of each kernel).
 *
 * Rows whose name is not a kernel registered for the backend are scopes
 * (a `tf.customGrad` block, recorded after the kernels it ran): they are
 * listed apart and left out of the kernel sum, so shares add up to 100 %.
 * "JS outside kernels" is the un-profiled step's median wall time minus the
 * kernel sum: tape bookkeeping, kernel dispatch, GC.
 *
 * Run: `deno run -A bench/profile_step.ts [--backend auto] [--shape 256,4,4096,256,8] [--top 25]`
 *
 * @module
 */
import { median } from "../base/mod.ts";
import * as tf from "@tensorflow/tfjs-core";
import { parseArgs } from "node:util";
import { createTrainState, disposeState, initParams, trainStep } from "../kernels/mod.ts";
import { batchOf, benchShape, useBackend } from "./train_bench.ts";

/** One kernel name's total over a profiled step. */
export interface KernelRow {
  readonly name: string;
  readonly ms: number;
  readonly calls: number;
  /** Distinct input shapes seen, the first few. */
  readonly shapes: string[];
}

/** What {@link profileStep} measured. */
export interface StepProfile {
  readonly backend: string;
  /** Median wall time of un-profiled steps, ms. */
  readonly stepMs: number;
  /** Registered kernels, slowest first. */
  readonly kernels: KernelRow[];
  /** Scope rows (custom-gradient blocks), which include their own kernels. */
  readonly scopes: KernelRow[];
  /** Kernel invocations in the step. */
  readonly calls: number;
}

const UNCHECKED = false;

function aggregate(
  kernels: readonly {
    name: string;
    kernelTimeMs: number | { error: string };
    inputShapes: unknown;
  }[],
  keep: (name: string) => boolean,
): KernelRow[] {
  const byName = new Map<string, { ms: number; calls: number; shapes: Set<string> }>();
  for (const k of kernels) {
    if (!keep(k.name)) continue;
    const row = byName.get(k.name) ?? { ms: 0, calls: 0, shapes: new Set<string>() };
    row.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    row.calls += 1;
    if (row.shapes.size < 3) row.shapes.add(JSON.stringify(k.inputShapes));
    byName.set(k.name, row);
  }
  return [...byName].map(([name, r]) => ({ name, ms: r.ms, calls: r.calls, shapes: [...r.shapes] }))
    .sort((a, b) => b.ms - a.ms);
}

/**
 * Profiles the second step of a model of `shape` ([d, L, V, T, B]) on `backend`
 * (see `useBackend` in train_bench.ts), after timing `steps` plain steps.
 *
 * @example
 * ```ts
 * import { profileStep } from "./profile_step.ts";
 * const p = await profileStep("wasm", [64, 1, 128, 16, 2], 1);
 * console.log(p.stepMs, p.kernels[0]?.name);
 * ```
 */
export async function profileStep(
  backend: string,
  shape: readonly [number, number, number, number, number],
  steps = 3,
): Promise<StepProfile> {
  const description = await useBackend(backend);
  const [d, layers, vocab, seq, batch] = shape;
  const model = benchShape(d, layers, vocab, seq);
  let state = createTrainState(model, initParams(model, layers, 0));
  const mb = batchOf(vocab, seq, batch, d * layers);
  state = (await trainStep(state, [mb], { lr: 1e-4 })).state;
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    state = (await trainStep(state, [mb], { lr: 1e-4 })).state;
    times.push(performance.now() - t0);
  }
  // The profiler would otherwise read every output back to look for NaNs.
  const check = tf.env().getBool("CHECK_COMPUTATION_FOR_ERRORS");
  tf.env().set("CHECK_COMPUTATION_FOR_ERRORS", UNCHECKED);
  const info = await tf.profile(async () => {
    state = (await trainStep(state, [mb], { lr: 1e-4 })).state;
    return [];
  });
  tf.env().set("CHECK_COMPUTATION_FOR_ERRORS", check);
  disposeState(state);
  const active = tf.getBackend();
  const isKernel = (name: string): boolean => tf.getKernel(name, active) !== undefined;
  const rows = info.kernels as unknown as Parameters<typeof aggregate>[0];
  return {
    backend: description,
    stepMs: median(times),
    kernels: aggregate(rows, isKernel),
    scopes: aggregate(rows, (n) => !isKernel(n)),
    calls: rows.filter((k) => isKernel(k.name)).length,
  };
}

/** The profile as a markdown table (the format of bench/NOTES.md). */
export function profileTable(p: StepProfile, top: number): string {
  const sum = p.kernels.reduce((s, k) => s + k.ms, 0);
  const lines = [
    `backend: ${p.backend}`,
    `step ${p.stepMs.toFixed(0)} ms; kernels ${sum.toFixed(0)} ms in ${p.calls} calls; ` +
    `JS outside kernels ${(p.stepMs - sum).toFixed(0)} ms`,
    "",
    "| kernel | ms | share | calls | input shapes |",
    "| --- | ---: | ---: | ---: | --- |",
  ];
  for (const k of p.kernels.slice(0, top)) {
    lines.push(
      `| ${k.name} | ${k.ms.toFixed(1)} | ${(100 * k.ms / sum).toFixed(1)} % | ${k.calls} | ` +
        `${k.shapes.join(" ")} |`,
    );
  }
  if (p.scopes.length > 0) {
    lines.push(
      "",
      "scopes (include their kernels): " +
        p.scopes.map((s) => `${s.name || "(unnamed)"} ${s.ms.toFixed(0)} ms × ${s.calls}`).join(
          ", ",
        ),
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      backend: { type: "string", default: "auto" },
      shape: { type: "string", default: "256,4,4096,256,8" },
      top: { type: "string", default: "25" },
      steps: { type: "string", default: "3" },
    },
  });
  const shape = values.shape.split(",").map(Number) as [number, number, number, number, number];
  for (const backend of values.backend.split(",")) {
    const p = await profileStep(backend, shape, Number(values.steps));
    console.log(`\nshape [${shape.join(", ")}]\n${profileTable(p, Number(values.top))}`);
  }
}
