/**
 * `StepAdamW` (contract in ../ops/fused_kernels.ts) as WGSL programs: three
 * element-wise sweeps, one per output, because a tfjs-webgpu program writes
 * one tensor. The first two compute m' and v' from the gradient; the third
 * reads m' and v' back, as the composite in ../ops/adamw.ts does, rather than
 * recomputing them. No temporaries: the composite materializes the scaled
 * gradient, its square, the denominator and the update, each the size of
 * the parameter.
 *
 * `inPlace` is ignored: tfjs-webgpu gives every program a fresh output
 * buffer, and the contract only allows (never requires) writing in place.
 *
 * Every scalar is derived once in JavaScript (float64) exactly as the
 * composite derives it, and rounds to float32 on upload as the composite's
 * scalar tensors do, so both run the same float32 operations in the same
 * order.
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
  type ProgramUniform,
  sizeOf,
} from "./_program.ts";

const KERNEL = "StepAdamW";

/** The per-step scalars of one update, as ../ops/adamw.ts computes them. */
interface AdamWScalars {
  readonly gradScale: number;
  readonly beta1: number;
  readonly oneMinusBeta1: number;
  readonly beta2: number;
  readonly oneMinusBeta2: number;
  /** 1/(1 − β2^step): the second moment's bias correction, as a factor. */
  readonly vCorrection: number;
  readonly eps: number;
  /** lr/(1 − β1^step): the first moment's bias correction folded into the step. */
  readonly stepSize: number;
  /** 1 − lr·wd: decoupled weight decay (1 when wd = 0, which leaves param exact). */
  readonly decay: number;
}

function scalarsOf(args: KernelArgs): AdamWScalars {
  const attr = (name: string): number => numberAttr(args, KERNEL, name);
  const [lr, beta1, beta2, step] = [attr("lr"), attr("beta1"), attr("beta2"), attr("step")];
  return {
    gradScale: attr("gradScale"),
    beta1,
    oneMinusBeta1: 1 - beta1,
    beta2,
    oneMinusBeta2: 1 - beta2,
    vCorrection: 1 / (1 - Math.pow(beta2, step)),
    eps: attr("eps"),
    stepSize: lr / (1 - Math.pow(beta1, step)),
    decay: 1 - lr * attr("weightDecay"),
  };
}

/**
 * An element-wise program over `shape` writing the WGSL expression `value`
 * (inputs indexed at `index`, float uniforms by name) to `result[index]`.
 */
function elementwise(
  key: string,
  inputs: string[],
  shape: number[],
  floats: readonly string[],
  value: string,
): GpuProgram {
  return program({
    key: `adamw_${key}`,
    inputs,
    outputShape: shape,
    groups: Math.ceil(sizeOf(shape) / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: `total : i32, ${floats.map((f) => `${f} : f32,`).join(" ")}`,
    code: `
    fn main(index : i32) {
      if (index < uniforms.total) {
        result[index] = ${value};
      }
    }`,
  });
}

/** The uniforms of an {@link elementwise} program: the size, then `values` as floats. */
function uniformsOf(total: number, values: readonly number[]): ProgramUniform[] {
  return [...ints(total), ...values.map(float)];
}

/**
 * `StepAdamW`: param, grad, m, v (one shape) → param', m', v'. With
 * g = gradScale·grad: m' = β1·m + (1−β1)·g; v' = β2·v + (1−β2)·g²;
 * param' = param·(1 − lr·wd) − stepSize·m'/(√(v'/(1−β2^step)) + eps).
 */
export function adamwKernel(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const param = inputOf(args, KERNEL, "param");
  const grad = inputOf(args, KERNEL, "grad");
  const m = inputOf(args, KERNEL, "m");
  const v = inputOf(args, KERNEL, "v");
  const s = scalarsOf(args);
  const shape = [...param.shape];
  const total = sizeOf(shape);
  // gradScale = 1 multiplies exactly, matching the composite, which then skips the product.
  const mNew = gpu.runWebGPUProgram(
    elementwise(
      "m",
      ["m", "grad"],
      shape,
      ["beta1", "oneMinusBeta1", "gradScale"],
      "m[index] * uniforms.beta1 + (grad[index] * uniforms.gradScale) * uniforms.oneMinusBeta1",
    ),
    [m, grad],
    "float32",
    uniformsOf(total, [s.beta1, s.oneMinusBeta1, s.gradScale]),
  );
  const vNew = gpu.runWebGPUProgram(
    elementwise(
      "v",
      ["v", "grad"],
      shape,
      ["beta2", "oneMinusBeta2", "gradScale"],
      `v[index] * uniforms.beta2 +
        (grad[index] * uniforms.gradScale) * (grad[index] * uniforms.gradScale) *
        uniforms.oneMinusBeta2`,
    ),
    [v, grad],
    "float32",
    uniformsOf(total, [s.beta2, s.oneMinusBeta2, s.gradScale]),
  );
  const paramNew = gpu.runWebGPUProgram(
    elementwise(
      "param",
      ["param", "mNew", "vNew"],
      shape,
      ["decay", "stepSize", "vCorrection", "eps"],
      `param[index] * uniforms.decay - (mNew[index] /
        (sqrt(vNew[index] * uniforms.vCorrection) + uniforms.eps)) * uniforms.stepSize`,
    ),
    [param, mNew, vNew],
    "float32",
    uniformsOf(total, [s.decay, s.stepSize, s.vCorrection, s.eps]),
  );
  return [paramNew, mNew, vNew];
}
