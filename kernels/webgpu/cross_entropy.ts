/**
 * `StepSoftmaxCrossEntropy` and `StepSoftmaxCrossEntropyGrad` (contracts in
 * ../ops/fused_kernels.ts) as WGSL programs. The forward pass reads each row of
 * logits once (an online max and rescaled sum per thread, merged across the
 * workgroup); the backward pass writes exp(logits − lse) − 1[target] scaled
 * by dy in one element-wise sweep. Neither builds a one-hot or keeps the
 * probabilities.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import {
  ELEMENTWISE_THREADS,
  gpuOf,
  type GpuProgram,
  inputOf,
  ints,
  type KernelArgs,
  program,
} from "./_program.ts";

const FORWARD = "StepSoftmaxCrossEntropy";
const GRADIENT = "StepSoftmaxCrossEntropyGrad";

/** Threads per row of the log-sum-exp pass: wide rows get more. */
function lseThreads(v: number): number {
  return v >= 4096 ? 256 : 64;
}

function lseProgram(n: number, v: number): GpuProgram {
  const threads = lseThreads(v);
  return program({
    key: `ce_lse_${threads}`,
    inputs: ["logits"],
    outputShape: [n],
    groups: n,
    workgroupSize: threads,
    uniforms: "rows : i32, cols : i32,",
    code: `
    var<workgroup> partMax : array<f32, ${threads}>;
    var<workgroup> partSum : array<f32, ${threads}>;
    fn main(index : i32) {
      let row = groupIndex();
      let tid = i32(localIndex);
      let v = uniforms.cols;
      // The lowest finite float, not -inf: merging two empty partials then
      // gives 0·exp(0) = 0 rather than NaN.
      var m = -3.402823e+38;
      var s = 0.0;
      if (row < uniforms.rows) {
        for (var c = tid; c < v; c = c + ${threads}) {
          let z = logits[row * v + c];
          if (z > m) {
            s = s * exp(m - z) + 1.0;
            m = z;
          } else {
            s = s + exp(z - m);
          }
        }
      }
      partMax[tid] = m;
      partSum[tid] = s;
      workgroupBarrier();
      for (var w = ${threads / 2}; w > 0; w = w / 2) {
        if (tid < w) {
          let m1 = partMax[tid];
          let m2 = partMax[tid + w];
          let mm = max(m1, m2);
          partSum[tid] = partSum[tid] * exp(m1 - mm) + partSum[tid + w] * exp(m2 - mm);
          partMax[tid] = mm;
        }
        workgroupBarrier();
      }
      if (tid == 0 && row < uniforms.rows) {
        result[row] = partMax[0] + log(partSum[0]);
      }
    }`,
  });
}

function rowLossProgram(n: number): GpuProgram {
  return program({
    key: "ce_row_loss",
    inputs: ["logits", "targets", "lse"],
    outputShape: [n],
    groups: Math.ceil(n / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: "rows : i32, cols : i32,",
    code: `
    fn main(index : i32) {
      if (index < uniforms.rows) {
        let t = targets[index];
        var loss = 0.0;
        if (t >= 0) { loss = lse[index] - logits[index * uniforms.cols + t]; }
        result[index] = loss;
      }
    }`,
  });
}

/** `StepSoftmaxCrossEntropy`: logits [n, V], targets [n] int32 → rowLoss [n], lse [n]. */
export function crossEntropyForward(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const logits = inputOf(args, FORWARD, "logits");
  const targets = inputOf(args, FORWARD, "targets");
  const [n, v] = logits.shape as [number, number];
  const lse = gpu.runWebGPUProgram(lseProgram(n, v), [logits], "float32", ints(n, v));
  const rowLoss = gpu.runWebGPUProgram(
    rowLossProgram(n),
    [logits, targets, lse],
    "float32",
    ints(n, v),
  );
  return [rowLoss, lse];
}

function gradProgram(n: number, v: number): GpuProgram {
  return program({
    key: "ce_grad",
    inputs: ["dy", "logits", "targets", "lse"],
    outputShape: [n, v],
    groups: Math.ceil((n * v) / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: "total : i32, cols : i32,",
    code: `
    fn main(index : i32) {
      if (index < uniforms.total) {
        let row = index / uniforms.cols;
        let t = targets[row];
        var g = 0.0;
        if (t >= 0) {
          let p = exp(logits[index] - lse[row]);
          let hit = select(0.0, 1.0, index - row * uniforms.cols == t);
          g = dy[row] * (p - hit);
        }
        result[index] = g;
      }
    }`,
  });
}

/**
 * `StepSoftmaxCrossEntropyGrad`: dy [n], logits [n, V], targets [n], lse [n]
 * → dLogits [n, V].
 */
export function crossEntropyBackward(args: KernelArgs): tf.TensorInfo {
  const gpu = gpuOf(args);
  const dy = inputOf(args, GRADIENT, "dy");
  const logits = inputOf(args, GRADIENT, "logits");
  const targets = inputOf(args, GRADIENT, "targets");
  const lse = inputOf(args, GRADIENT, "lse");
  const [n, v] = logits.shape as [number, number];
  return gpu.runWebGPUProgram(
    gradProgram(n, v),
    [dy, logits, targets, lse],
    "float32",
    ints(n * v, v),
  );
}
