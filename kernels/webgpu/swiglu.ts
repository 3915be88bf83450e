/**
 * `StepSwiGlu` and `StepSwiGluGrad` (contracts in ../ops/fused_kernels.ts) as WGSL
 * programs. Each output is one element-wise sweep that recomputes σ(gate)
 * in registers, where the composite keeps σ, silu and their products as
 * tensors. The gradient has two outputs and a program writes one, so it is
 * two sweeps (dGate, dUp), each reading only what it needs.
 *
 * The arithmetic follows the composite step for step (σ as tfjs-webgpu's
 * Sigmoid writes it, then the same products in the same order), so the two
 * agree to float32 rounding.
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
  sizeOf,
} from "./_program.ts";

const FORWARD = "StepSwiGlu";
const GRADIENT = "StepSwiGluGrad";

/** WGSL: σ(g), the expression of tfjs-webgpu's Sigmoid kernel. */
const SIGMOID_WGSL = `
  fn sigmoidOf(g : f32) -> f32 {
    return 1.0 / (1.0 + exp(-1.0 * g));
  }
`;

/**
 * An element-wise program over [n, f] computing `result[index]` from the
 * WGSL expression `value`, which may use the inputs at `index` and
 * `sigmoidOf`.
 */
function elementwise(
  key: string,
  inputs: string[],
  shape: number[],
  value: string,
): GpuProgram {
  return program({
    key: `swiglu_${key}`,
    inputs,
    outputShape: shape,
    groups: Math.ceil(sizeOf(shape) / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: "total : i32,",
    code: `${SIGMOID_WGSL}
    fn main(index : i32) {
      if (index < uniforms.total) {
        let g = gate[index];
        let s = sigmoidOf(g);
        let silu = g * s;
        result[index] = ${value};
      }
    }`,
  });
}

/** `StepSwiGlu`: gate, up [n, f] → y [n, f] = silu(gate)·up. */
export function swigluForward(args: KernelArgs): tf.TensorInfo {
  const gpu = gpuOf(args);
  const gate = inputOf(args, FORWARD, "gate");
  const up = inputOf(args, FORWARD, "up");
  const shape = [...gate.shape];
  return gpu.runWebGPUProgram(
    elementwise("forward", ["gate", "up"], shape, "silu * up[index]"),
    [gate, up],
    "float32",
    ints(sizeOf(shape)),
  );
}

/**
 * `StepSwiGluGrad`: dy, gate, up [n, f] → dGate = (dy·up)·(σ + silu·(1 − σ)),
 * dUp = dy·silu. The composite's σ(g)·(1 + g·(1 − σ(g))) is written, as there,
 * σ + silu·(1 − σ).
 */
export function swigluBackward(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const dy = inputOf(args, GRADIENT, "dy");
  const gate = inputOf(args, GRADIENT, "gate");
  const up = inputOf(args, GRADIENT, "up");
  const shape = [...gate.shape];
  const total = ints(sizeOf(shape));
  const dGate = gpu.runWebGPUProgram(
    elementwise(
      "grad_gate",
      ["dy", "gate", "up"],
      shape,
      "(dy[index] * up[index]) * (s + silu * (1.0 - s))",
    ),
    [dy, gate, up],
    "float32",
    total,
  );
  const dUp = gpu.runWebGPUProgram(
    elementwise("grad_up", ["dy", "gate"], shape, "dy[index] * silu"),
    [dy, gate],
    "float32",
    total,
  );
  return [dGate, dUp];
}
