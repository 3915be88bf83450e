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
 * Every scalar comes from ../ops/adamw_rule.ts (float64), as the
 * composite's do, and rounds to float32 on upload as the composite's scalar
 * tensors do, so both run the same float32 operations in the same order.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { type AdamWScalars, adamwScalars, adamwStepFrom } from "../ops/adamw_rule.ts";
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

function scalarsOf(args: KernelArgs): AdamWScalars {
  return adamwScalars(adamwStepFrom((field) => numberAttr(args, KERNEL, field)));
}

/** The scalars of ../ops/adamw_rule.ts a program reads, as uniforms of the same names. */
type Scalar = keyof AdamWScalars;

/**
 * An element-wise program over `shape` writing the WGSL expression `value`
 * (inputs indexed at `index`, the scalars as `uniforms.<name>`) to `result[index]`.
 */
function elementwise(
  key: string,
  inputs: string[],
  shape: number[],
  floats: readonly Scalar[],
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

/** The uniforms of an {@link elementwise} program: the size, then the scalars `floats` names. */
function uniformsOf(total: number, s: AdamWScalars, floats: readonly Scalar[]): ProgramUniform[] {
  return [...ints(total), ...floats.map((f) => float(s[f]))];
}

const M_SCALARS: readonly Scalar[] = ["beta1", "oneMinusBeta1", "gradScale"];
const V_SCALARS: readonly Scalar[] = ["beta2", "oneMinusBeta2", "gradScale"];
const PARAM_SCALARS: readonly Scalar[] = ["decay", "stepSize", "vCorrection", "eps"];

/**
 * `StepAdamW`: param, grad, m, v (one shape) → param', m', v', by the
 * formula of ../ops/adamw_rule.ts.
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
      M_SCALARS,
      "m[index] * uniforms.beta1 + (grad[index] * uniforms.gradScale) * uniforms.oneMinusBeta1",
    ),
    [m, grad],
    "float32",
    uniformsOf(total, s, M_SCALARS),
  );
  const vNew = gpu.runWebGPUProgram(
    elementwise(
      "v",
      ["v", "grad"],
      shape,
      V_SCALARS,
      `v[index] * uniforms.beta2 +
        (grad[index] * uniforms.gradScale) * (grad[index] * uniforms.gradScale) *
        uniforms.oneMinusBeta2`,
    ),
    [v, grad],
    "float32",
    uniformsOf(total, s, V_SCALARS),
  );
  const paramNew = gpu.runWebGPUProgram(
    elementwise(
      "param",
      ["param", "mNew", "vNew"],
      shape,
      PARAM_SCALARS,
      `param[index] * uniforms.decay - (mNew[index] /
        (sqrt(vNew[index] * uniforms.vCorrection) + uniforms.eps)) * uniforms.stepSize`,
    ),
    [param, mNew, vNew],
    "float32",
    uniformsOf(total, s, PARAM_SCALARS),
  );
  return [paramNew, mNew, vNew];
}
