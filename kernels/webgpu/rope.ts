/**
 * `StepRope` and `StepRopeGrad` (contracts in ../ops/fused_kernels.ts) as WGSL
 * programs: one element-wise sweep each. Every output element reads its own
 * input element and its partner in the other half of the head (HF
 * rotate_half pairs i with i + d/2), so the composite's split, four products
 * and concat become one pass with no temporaries.
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

const FORWARD = "StepRope";
const GRADIENT = "StepRopeGrad";

/** Rotate by +angle (`StepRope`) or by −angle (`StepRopeGrad`). */
type Direction = "forward" | "inverse";

/**
 * The rotation by +angle (forward) or −angle (gradient) over `input`
 * [b, t, H, d] with tables cos, sin [t, d/2]. Both directions are the same
 * sweep with the sine's sign flipped, so they share one WGSL body; the sign is
 * baked into the text (and the key) so each product keeps the composite's
 * order of operations: first half x₁·c ∓ x₂·s, second half x₂·c ± x₁·s.
 */
function rotateProgram(shape: number[], direction: Direction): GpuProgram {
  // Forward: (x₁c − x₂s, x₂c + x₁s). Inverse: (x₁c + x₂s, x₂c − x₁s).
  const [first, second] = direction === "inverse" ? ["+", "-"] : ["-", "+"];
  return program({
    key: `rope_${direction}`,
    inputs: ["x", "cosTable", "sinTable"],
    outputShape: shape,
    groups: Math.ceil(sizeOf(shape) / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: "total : i32, half : i32, heads : i32, seq : i32,",
    code: `
    fn main(index : i32) {
      if (index < uniforms.total) {
        let half = uniforms.half;
        let d = 2 * half;
        let head = index / d;
        let col = index - head * d;
        // head = ((batch · t) + position) · H + h, so the position is (head / H) mod t.
        let position = (head / uniforms.heads) % uniforms.seq;
        if (col < half) {
          let at = position * half + col;
          result[index] = x[index] * cosTable[at] ${first} x[index + half] * sinTable[at];
        } else {
          let at = position * half + col - half;
          result[index] = x[index] * cosTable[at] ${second} x[index - half] * sinTable[at];
        }
      }
    }`,
  });
}

/** Runs {@link rotateProgram} over `input` [b, t, H, d]. */
function rotate(
  args: KernelArgs,
  kernel: string,
  name: string,
  direction: Direction,
): tf.TensorInfo {
  const gpu = gpuOf(args);
  const input = inputOf(args, kernel, name);
  const cos = inputOf(args, kernel, "cos");
  const sin = inputOf(args, kernel, "sin");
  const [, t, heads, d] = input.shape as [number, number, number, number];
  return gpu.runWebGPUProgram(
    rotateProgram([...input.shape], direction),
    [input, cos, sin],
    "float32",
    ints(sizeOf(input.shape), d / 2, heads, t),
  );
}

/** `StepRope`: x [b, t, H, d], cos, sin [t, d/2] → y [b, t, H, d]. */
export function ropeForward(args: KernelArgs): tf.TensorInfo {
  return rotate(args, FORWARD, "x", "forward");
}

/** `StepRopeGrad`: dy [b, t, H, d], cos, sin [t, d/2] → dx [b, t, H, d] (the inverse rotation). */
export function ropeBackward(args: KernelArgs): tf.TensorInfo {
  return rotate(args, GRADIENT, "dy", "inverse");
}
