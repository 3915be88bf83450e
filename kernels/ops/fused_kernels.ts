/**
 * The fused-kernel seam: how an op in this folder picks a single kernel
 * registered for the ACTIVE backend, and the exact contract each such kernel
 * implements. It sits with the ops, below ../fused and ../webgpu, because
 * those folders implement the contracts and the ops only name them.
 *
 * ## Dispatch
 *
 * Each op (`rmsNorm`, `rope`, `causalAttention`, `swiglu`, `crossEntropySum`,
 * and `adamwUpdate` in ./adamw.ts) asks {@link hasFusedPair} (or, for AdamW,
 * {@link hasFusedKernel}) whether `tf.getKernel(name, tf.getBackend())` exists
 * for its forward AND its gradient kernel, and whether its float inputs are
 * float32. If so it runs a `tf.customGrad` block whose forward is one
 * `runKernel(forward)` and whose gradient is one `runKernel(gradient)`;
 * otherwise it runs its composite implementation (plain tfjs ops, exported as
 * `…Composite` from the op's file). The composite path is the reference the
 * tests compare fused kernels against, and the path of every backend without
 * fused kernels. The op validates shapes before dispatching, so a fused
 * kernel may assume the shapes below.
 *
 * A backend opts in by registering kernels under these names, for example
 * `tf.registerKernel({ kernelName: FUSED_RMS_NORM.forward, backendName: "webgpu", kernelFunc })`.
 * Nothing is registered by importing a module: when a backend is started (`../backend.ts`),
 * `../fused` registers its WebAssembly SIMD kernels for "wasm" (attention on OpenBLAS only
 * where the `auto` backend opens it) and `../webgpu` its WGSL kernels for "webgpu"; other
 * backends run the composites.
 *
 * ## Contracts
 *
 * Shapes use n rows, h hidden, f MLP width, b batch, t sequence, H query heads,
 * K kv heads (K divides H), d head dim (even), V vocabulary. All float tensors
 * are float32, row-major, contiguous; outputs are new tensors the caller owns
 * (a kernel must not return an input's data unless it raises its reference
 * count, as tfjs's Identity does). "Gradient" kernels return the gradients of
 * the forward's FIRST output with respect to the listed inputs; auxiliary
 * outputs (rstd, lse) are saved by the op for the gradient and never
 * differentiated. Input names are the keys of the `inputs` map, exactly as
 * written; attrs are plain numbers (inPlace a boolean).
 *
 * | kernel | inputs | attrs | outputs |
 * | --- | --- | --- | --- |
 * | `StepRmsNorm` | x [n, h], weight [h] | eps | y [n, h] = x·rstd·weight; rstd [n] = 1/√(mean(x²) + eps) |
 * | `StepRmsNormGrad` | dy [n, h], x, weight, rstd | eps | dx [n, h] = rstd·(g − x̂·mean(g·x̂)) with g = dy·weight, x̂ = x·rstd; dWeight [h] = Σ_rows dy·x̂ |
 * | `StepRope` | x [b, t, H, d], cos [t, d/2], sin [t, d/2] | – | y [b, t, H, d]: with x = (x₁, x₂) the halves of each head, y = (x₁·cos − x₂·sin, x₂·cos + x₁·sin) at position t (HF rotate_half) |
 * | `StepRopeGrad` | dy [b, t, H, d], cos, sin | – | dx [b, t, H, d] = (dy₁·cos + dy₂·sin, dy₂·cos − dy₁·sin) (the inverse rotation) |
 * | `StepCausalAttention` | q [b, t, H, d], k [b, t, K, d], v [b, t, K, d] | scale | o [b, t, H, d] = softmax(scale·q·kᵀ, causal)·v per head, query head i reading kv head ⌊i/(H/K)⌋; lse [b, H, t] = log Σ_{j≤row} exp(scale·q·k_j) |
 * | `StepCausalAttentionGrad` | dy [b, t, H, d], q, k, v, o, lse | scale | dq [b, t, H, d], dk [b, t, K, d], dv [b, t, K, d] (dk, dv summed over each kv head's H/K query heads); P may be recomputed as exp(scale·q·kᵀ − lse) |
 * | `StepSwiGlu` | gate [n, f], up [n, f] | – | y [n, f] = gate·σ(gate)·up |
 * | `StepSwiGluGrad` | dy [n, f], gate, up | – | dGate = dy·up·σ(g)·(1 + g·(1 − σ(g))); dUp = dy·g·σ(g) |
 * | `StepSoftmaxCrossEntropy` | logits [n, V], targets [n] int32 (< V; negative = ignored row) | – | rowLoss [n] = lse − logits[row, target], 0 for ignored rows; lse [n] = log Σ_j exp(logits[row, j]) (any value for ignored rows) |
 * | `StepSoftmaxCrossEntropyGrad` | dy [n] (of rowLoss), logits, targets, lse | – | dLogits [n, V] = dy[row]·(exp(logits − lse) − 1[j = target]), all 0 for ignored rows |
 * | `StepAdamW` | param, grad, m, v (same shape) | lr, beta1, beta2, eps, weightDecay, step, gradScale (an `AdamWStep` of ./adamw_rule.ts), inPlace | param', m', v' by the formula of ./adamw_rule.ts, with the scalars `adamwScalars` derives. With inPlace the kernel MAY write into param/m/v's own buffers (the caller disposes them right after and never reads them); it must not when another tensor shares a buffer. No gradient. |
 * | `StepSumSquares` | x0, x1, … x{k−1} (any shapes; the names run on from x0 without a gap) | – | [] = Σ over every input of Σ x², float32 (the global gradient norm's square, `globalNorm` in ./adamw.ts). No gradient. |
 *
 * Numerics: every fused kernel must match its composite within float32
 * rounding (tests: relative 1e-5 forward, 1e-4 gradients against the
 * composite on the same backend, random shapes including odd sizes).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { FusibleOp } from "../../solvers/mod.ts";

/** A fused forward kernel and the kernel that computes its gradient. */
export interface FusedPair {
  readonly forward: string;
  readonly gradient: string;
}

/** RMSNorm over the last axis; see the module table. */
export const FUSED_RMS_NORM: FusedPair = { forward: "StepRmsNorm", gradient: "StepRmsNormGrad" };
/** Rotary position embedding (HF rotate_half); see the module table. */
export const FUSED_ROPE: FusedPair = { forward: "StepRope", gradient: "StepRopeGrad" };
/** Causal, GQA-aware softmax attention; see the module table. */
export const FUSED_ATTENTION: FusedPair = {
  forward: "StepCausalAttention",
  gradient: "StepCausalAttentionGrad",
};
/** The SwiGLU gate silu(gate)·up; see the module table. */
export const FUSED_SWIGLU: FusedPair = { forward: "StepSwiGlu", gradient: "StepSwiGluGrad" };
/** Softmax cross-entropy per row without one-hot targets; see the module table. */
export const FUSED_CROSS_ENTROPY: FusedPair = {
  forward: "StepSoftmaxCrossEntropy",
  gradient: "StepSoftmaxCrossEntropyGrad",
};
/** One AdamW update of one parameter (not differentiable); see the module table. */
export const FUSED_ADAMW = "StepAdamW";

/** The sum of squares of many tensors, the global gradient norm's (no gradient); see the module table. */
export const FUSED_SUM_SQUARES = "StepSumSquares";

/** Every fused kernel name, forward and gradient. */
export const FUSED_KERNEL_NAMES: readonly string[] = [
  ...[FUSED_RMS_NORM, FUSED_ROPE, FUSED_ATTENTION, FUSED_SWIGLU, FUSED_CROSS_ENTROPY]
    .flatMap((p) => [p.forward, p.gradient]),
  FUSED_ADAMW,
  FUSED_SUM_SQUARES,
];

/** Whether the active backend has a kernel called `name`. */
export function hasFusedKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * Whether the active backend has both kernels of `pair` and every tensor in
 * `floats` is float32 (fused kernels are float32 only).
 */
export function hasFusedPair(pair: FusedPair, floats: readonly tf.Tensor[]): boolean {
  return hasFusedKernel(pair.forward) && hasFusedKernel(pair.gradient) &&
    floats.every((t) => t.dtype === "float32");
}

/** Runs one fused kernel on the active backend; its outputs, always as an array. */
export function runFused(
  name: string,
  inputs: tf.NamedTensorMap,
  attrs: tf.NamedAttrMap = {},
): tf.Tensor[] {
  const out = tf.engine().runKernel(name, inputs, attrs) as tf.Tensor | tf.Tensor[];
  return Array.isArray(out) ? out : [out];
}

/** The kernel names of each op, forward first; `adamwInPlace` is AdamW's kernel honouring `inPlace`. */
const OP_KERNELS: Readonly<Record<FusibleOp, readonly string[]>> = {
  rmsNorm: [FUSED_RMS_NORM.forward, FUSED_RMS_NORM.gradient],
  rope: [FUSED_ROPE.forward, FUSED_ROPE.gradient],
  attention: [FUSED_ATTENTION.forward, FUSED_ATTENTION.gradient],
  swiglu: [FUSED_SWIGLU.forward, FUSED_SWIGLU.gradient],
  crossEntropy: [FUSED_CROSS_ENTROPY.forward, FUSED_CROSS_ENTROPY.gradient],
  adamw: [FUSED_ADAMW],
  adamwInPlace: [FUSED_ADAMW],
  sumSquares: [FUSED_SUM_SQUARES],
  // No kernel of its own: the pooled BatchMatMul of ../fused, live when it is registered.
  productSums: [],
};

/**
 * A registry's kernel functions by op, in the order of the op's kernel names (forward,
 * gradient). Typed by the ops that solvers/ declares for the registry, so a registry can neither
 * leave out a declared op nor add one.
 */
export type FusedImplementations<Op extends FusibleOp> = {
  readonly [K in Op]: readonly tf.KernelFunc[];
};

/**
 * The (kernel name, function) pairs that register `ops`, each name once.
 *
 * @throws {Error} when an op has not as many functions as kernel names, or two ops give one name
 * different functions (a registry written wrong, found when its module loads).
 */
export function registryKernels<Op extends FusibleOp>(
  ops: readonly Op[],
  impls: FusedImplementations<Op>,
): [string, tf.KernelFunc][] {
  const byName = new Map<string, tf.KernelFunc>();
  for (const op of ops) {
    const names = OP_KERNELS[op];
    const fs = impls[op];
    if (fs.length !== names.length) {
      throw new Error(
        `fused registry: ${op} has ${fs.length} kernels, its contract ${names.length}`,
      );
    }
    names.forEach((name, i) => {
      const f = fs[i]!;
      if ((byName.get(name) ?? f) !== f) {
        throw new Error(`fused registry: two functions for ${name}`);
      }
      byName.set(name, f);
    });
  }
  return [...byName];
}

/** The kernel names of `ops`, each once. */
export function kernelNames(ops: readonly FusibleOp[]): string[] {
  return [...new Set(ops.flatMap((op) => OP_KERNELS[op]))];
}

/** The ops among `ops` whose every kernel is registered for `backend` as `impls` holds it. */
export function liveOps<Op extends FusibleOp>(
  backend: string,
  ops: readonly Op[],
  impls: FusedImplementations<Op>,
): Op[] {
  return ops.filter((op) =>
    OP_KERNELS[op].every((name, i) => tf.getKernel(name, backend)?.kernelFunc === impls[op][i])
  );
}
