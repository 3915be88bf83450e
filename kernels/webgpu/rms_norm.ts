/**
 * `StepRmsNorm` and `StepRmsNormGrad` (contracts in ../ops/fused_kernels.ts) as WGSL
 * programs: one workgroup per row for the row reductions, element-wise
 * programs for the rest, and a two-pass column sum for the weight gradient.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import {
  ELEMENTWISE_THREADS,
  float,
  gpuOf,
  type GpuProgram,
  inputOf,
  ints,
  type KernelArgs,
  numberAttr,
  program,
  sizeOf,
} from "./_program.ts";

const FORWARD = "StepRmsNorm";
const GRADIENT = "StepRmsNormGrad";

/** Rows summed by one thread of the first weight-gradient pass. */
const ROWS_PER_CHUNK = 64;
/** Columns per workgroup of the weight-gradient passes. */
const COLUMN_THREADS = 64;

/** Threads per row: enough to cover wide rows without idling on narrow ones. */
function rowThreads(h: number): number {
  return h >= 1024 ? 256 : 64;
}

/**
 * WGSL: `total` = Σ over this workgroup's `part` (a tree in shared memory).
 * Every thread reaches every barrier: the loop bound is a constant.
 */
function treeSum(threads: number): string {
  return `
    var<workgroup> part : array<f32, ${threads}>;
    fn workgroupSum(tid : i32, value : f32) -> f32 {
      part[tid] = value;
      workgroupBarrier();
      for (var s = ${threads / 2}; s > 0; s = s / 2) {
        if (tid < s) { part[tid] = part[tid] + part[tid + s]; }
        workgroupBarrier();
      }
      let total = part[0];
      workgroupBarrier();
      return total;
    }
  `;
}

function rstdProgram(n: number, h: number): GpuProgram {
  const threads = rowThreads(h);
  return program({
    key: `rms_rstd_${threads}`,
    inputs: ["x"],
    outputShape: [n],
    groups: n,
    workgroupSize: threads,
    uniforms: "rows : i32, cols : i32, eps : f32,",
    code: `${treeSum(threads)}
    fn main(index : i32) {
      let row = groupIndex();
      let tid = i32(localIndex);
      let h = uniforms.cols;
      var acc = 0.0;
      if (row < uniforms.rows) {
        for (var c = tid; c < h; c = c + ${threads}) {
          let v = x[row * h + c];
          acc = acc + v * v;
        }
      }
      let total = workgroupSum(tid, acc);
      if (tid == 0 && row < uniforms.rows) {
        result[row] = inverseSqrt(total / f32(h) + uniforms.eps);
      }
    }`,
  });
}

function scaleProgram(shape: number[], n: number, h: number): GpuProgram {
  return program({
    key: "rms_scale",
    inputs: ["x", "rstd", "weight"],
    outputShape: shape,
    groups: Math.ceil((n * h) / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: "total : i32, cols : i32,",
    code: `
    fn main(index : i32) {
      if (index < uniforms.total) {
        let row = index / uniforms.cols;
        let col = index - row * uniforms.cols;
        result[index] = x[index] * rstd[row] * weight[col];
      }
    }`,
  });
}

/** `StepRmsNorm`: x [n, h], weight [h] → y [n, h], rstd [n]. */
export function rmsNormForward(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const x = inputOf(args, FORWARD, "x");
  const weight = inputOf(args, FORWARD, "weight");
  const h = x.shape[x.shape.length - 1]!;
  const n = sizeOf(x.shape) / h;
  const eps = numberAttr(args, FORWARD, "eps");
  const rstd = gpu.runWebGPUProgram(rstdProgram(n, h), [x], "float32", [
    ...ints(n, h),
    float(eps),
  ]);
  const y = gpu.runWebGPUProgram(
    scaleProgram([...x.shape], n, h),
    [x, rstd, weight],
    "float32",
    ints(n * h, h),
  );
  return [y, rstd];
}

function inputGradProgram(shape: number[], n: number, h: number): GpuProgram {
  const threads = rowThreads(h);
  return program({
    key: `rms_dx_${threads}`,
    inputs: ["dy", "x", "weight", "rstd"],
    outputShape: shape,
    groups: n,
    workgroupSize: threads,
    uniforms: "rows : i32, cols : i32,",
    code: `${treeSum(threads)}
    fn main(index : i32) {
      let row = groupIndex();
      let tid = i32(localIndex);
      let h = uniforms.cols;
      let live = row < uniforms.rows;
      var r = 0.0;
      var acc = 0.0;
      if (live) {
        r = rstd[row];
        for (var c = tid; c < h; c = c + ${threads}) {
          let i = row * h + c;
          acc = acc + (dy[i] * weight[c]) * (x[i] * r);
        }
      }
      let m = workgroupSum(tid, acc) / f32(h);
      if (live) {
        for (var c = tid; c < h; c = c + ${threads}) {
          let i = row * h + c;
          result[i] = r * (dy[i] * weight[c] - (x[i] * r) * m);
        }
      }
    }`,
  });
}

/** Σ over a chunk of rows of dy·x·rstd, per column: [chunks, h]. */
function weightPartialProgram(h: number, chunks: number): GpuProgram {
  const colGroups = Math.ceil(h / COLUMN_THREADS);
  return program({
    key: `rms_dw_part_${COLUMN_THREADS}_${ROWS_PER_CHUNK}`,
    inputs: ["dy", "x", "rstd"],
    outputShape: chunks === 1 ? [h] : [chunks, h],
    groups: colGroups * chunks,
    workgroupSize: COLUMN_THREADS,
    uniforms: "rows : i32, cols : i32, colGroups : i32,",
    code: `
    fn main(index : i32) {
      let g = groupIndex();
      let chunk = g / uniforms.colGroups;
      let col = (g - chunk * uniforms.colGroups) * ${COLUMN_THREADS} + i32(localIndex);
      let h = uniforms.cols;
      if (col < h) {
        let first = chunk * ${ROWS_PER_CHUNK};
        let last = min(first + ${ROWS_PER_CHUNK}, uniforms.rows);
        var acc = 0.0;
        for (var r = first; r < last; r = r + 1) {
          let i = r * h + col;
          acc = acc + dy[i] * (x[i] * rstd[r]);
        }
        result[chunk * h + col] = acc;
      }
    }`,
  });
}

function columnSumProgram(h: number): GpuProgram {
  return program({
    key: "rms_dw_sum",
    inputs: ["part"],
    outputShape: [h],
    groups: Math.ceil(h / COLUMN_THREADS),
    workgroupSize: COLUMN_THREADS,
    uniforms: "chunks : i32, cols : i32,",
    code: `
    fn main(index : i32) {
      if (index < uniforms.cols) {
        var acc = 0.0;
        for (var k = 0; k < uniforms.chunks; k = k + 1) {
          acc = acc + part[k * uniforms.cols + index];
        }
        result[index] = acc;
      }
    }`,
  });
}

/** `StepRmsNormGrad`: dy, x [n, h], weight [h], rstd [n] → dx [n, h], dWeight [h]. */
export function rmsNormBackward(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const dy = inputOf(args, GRADIENT, "dy");
  const x = inputOf(args, GRADIENT, "x");
  const weight = inputOf(args, GRADIENT, "weight");
  const rstd = inputOf(args, GRADIENT, "rstd");
  const h = x.shape[x.shape.length - 1]!;
  const n = sizeOf(x.shape) / h;
  const dx = gpu.runWebGPUProgram(
    inputGradProgram([...x.shape], n, h),
    [dy, x, weight, rstd],
    "float32",
    ints(n, h),
  );
  const chunks = Math.max(1, Math.ceil(n / ROWS_PER_CHUNK));
  const part = gpu.runWebGPUProgram(
    weightPartialProgram(h, chunks),
    [dy, x, rstd],
    "float32",
    ints(n, h, Math.ceil(h / COLUMN_THREADS)),
  );
  if (chunks === 1) return [dx, part];
  const dw = gpu.runWebGPUProgram(columnSumProgram(h), [part], "float32", ints(chunks, h));
  gpu.disposeData(part.dataId);
  return [dx, dw];
}
