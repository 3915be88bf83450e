/**
 * `BatchMatMul` and `_FusedMatMul` for the "blas" backend: the CPU backend's tensor storage,
 * with the products computed by OpenBLAS. Inputs that are not float32 Float32Arrays go to
 * the stock CPU kernels. Private to `kernels/blas/`.
 *
 * @module
 */

import {
  _FusedMatMul,
  type _FusedMatMulAttrs,
  type _FusedMatMulInputs,
  BatchMatMul,
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  broadcast_util,
  getKernel,
  type KernelFunc,
  Prelu,
  type TensorInfo,
} from "@tensorflow/tfjs-core";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { type MatMulPlan, offHeapFloat32, planMatMul, runSgemm } from "./_gemm.ts";
import type { OpenBlas } from "./_openblas.ts";

type KernelArgs = Parameters<KernelFunc>[0];

function cpuKernel(name: string): KernelFunc {
  const config = getKernel(name, "cpu");
  if (config === undefined) throw new Error(`Cannot find kernel "${name}" for backend "cpu"`);
  return config.kernelFunc;
}

function float32Values(backend: MathBackendCPU, t: TensorInfo): Float32Array | undefined {
  if (t.dtype !== "float32") return undefined;
  const v = backend.data.get(t.dataId)?.values;
  return v instanceof Float32Array ? v : undefined;
}

/** The product of `a` and `b` as a fresh off-heap array, or undefined when not float32. */
function product(
  blas: OpenBlas,
  backend: MathBackendCPU,
  inputs: {
    a: TensorInfo | undefined;
    b: TensorInfo | undefined;
    transposeA: boolean;
    transposeB: boolean;
  },
  fill?: (out: Float32Array, plan: MatMulPlan) => boolean,
): { plan: MatMulPlan; out: Float32Array } | undefined {
  const { a, b, transposeA, transposeB } = inputs;
  if (a === undefined || b === undefined || a.shape.length < 2 || b.shape.length < 2) {
    return undefined;
  }
  const av = float32Values(backend, a);
  const bv = float32Values(backend, b);
  if (av === undefined || bv === undefined) return undefined;
  const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
  const out = offHeapFloat32(plan.batch * plan.m * plan.n);
  const beta = fill !== undefined && fill(out, plan) ? 1 : 0;
  runSgemm(blas, plan, { a: av, b: bv, out, beta });
  return { plan, out };
}

/** The BatchMatMul kernel (also what `tf.matMul` and every matMul gradient run). */
export function batchMatMulKernel(blas: OpenBlas): KernelFunc {
  const fallback = cpuKernel(BatchMatMul);
  return function blasBatchMatMul(args: KernelArgs): TensorInfo | TensorInfo[] {
    const backend = args.backend as MathBackendCPU;
    const { a, b } = args.inputs as unknown as BatchMatMulInputs;
    const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
    const r = product(blas, backend, { a, b, transposeA, transposeB });
    if (r === undefined) return fallback(args);
    return backend.makeTensorInfo(r.plan.outShape, "float32", r.out);
  };
}

/**
 * When the bias broadcasts as one row of length n (shapes `[]`, `[1]`, `[n]`, `[1, n]`, …),
 * writes it into every row of `out` and returns true, so sgemm adds onto it with beta = 1.
 */
function fillRowBias(bias: Float32Array, biasShape: readonly number[]) {
  return function fill(out: Float32Array, plan: MatMulPlan): boolean {
    const lead = biasShape.slice(0, -1);
    if (biasShape.length > plan.outShape.length || lead.some((d) => d !== 1)) return false;
    const last = biasShape[biasShape.length - 1] ?? 1;
    if (last !== plan.n && last !== 1) return false;
    if (out.length === 0) return true;
    if (last === 1) {
      out.fill(bias[0] ?? 0);
      return true;
    }
    // Doubling copies: log2(rows) calls into memcpy instead of one loop per row.
    out.set(bias.subarray(0, plan.n));
    for (let filled = plan.n; filled < out.length; filled *= 2) {
      out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
    }
    return true;
  };
}

/** In place, as the CPU backend's activation kernels compute them; false if not handled. */
function activateInPlace(x: Float32Array, activation: string, alpha: number): boolean {
  const n = x.length;
  switch (activation) {
    case "linear":
      return true;
    case "relu":
      for (let i = 0; i < n; i++) x[i] = Math.max(0, x[i]!);
      return true;
    case "relu6":
      for (let i = 0; i < n; i++) x[i] = Math.min(Math.max(0, x[i]!), 6);
      return true;
    case "leakyrelu":
      for (let i = 0; i < n; i++) if (x[i]! < 0) x[i] = alpha * x[i]!;
      return true;
    case "sigmoid":
      for (let i = 0; i < n; i++) x[i] = 1 / (1 + Math.exp(-x[i]!));
      return true;
    case "elu":
      for (let i = 0; i < n; i++) if (x[i]! < 0) x[i] = Math.exp(x[i]!) - 1;
      return true;
    default:
      return false;
  }
}

/**
 * The _FusedMatMul kernel (`tf.fused.matMul`, layers' dense): a row bias is written before
 * sgemm (beta = 1) and the activation applied in place; other biases and prelu go through
 * the CPU kernels on the blas product.
 */
export function fusedMatMulKernel(blas: OpenBlas): KernelFunc {
  const fallback = cpuKernel(_FusedMatMul);
  const add = cpuKernel("Add");
  const prelu = cpuKernel(Prelu);
  return function blasFusedMatMul(args: KernelArgs): TensorInfo | TensorInfo[] {
    const backend = args.backend as MathBackendCPU;
    const { a, b, bias, preluActivationWeights } = args.inputs as unknown as _FusedMatMulInputs;
    const attrs = args.attrs as unknown as _FusedMatMulAttrs;
    const { transposeA, transposeB } = attrs;
    const activation = attrs.activation ?? "linear";
    const biasValues = bias === undefined ? undefined : float32Values(backend, bias);
    if (bias !== undefined && biasValues === undefined) return fallback(args);
    const fill = biasValues !== undefined && bias !== undefined
      ? fillRowBias(biasValues, bias.shape)
      : undefined;
    let filled = false;
    const r = product(blas, backend, { a, b, transposeA, transposeB }, (out, plan) => {
      filled = fill !== undefined && fill(out, plan);
      return filled;
    });
    if (r === undefined) return fallback(args);
    let current = backend.makeTensorInfo(r.plan.outShape, "float32", r.out);
    if (bias !== undefined && !filled) {
      broadcast_util.assertAndGetBroadcastShape(r.plan.outShape, bias.shape);
      const sum = add({ inputs: { a: current, b: bias }, backend, attrs: {} }) as TensorInfo;
      backend.disposeIntermediateTensorInfo(current);
      current = sum;
    }
    const values = float32Values(backend, current);
    if (values !== undefined && activateInPlace(values, activation, attrs.leakyreluAlpha ?? 0.2)) {
      return current;
    }
    if (activation !== "prelu" || preluActivationWeights === undefined) {
      backend.disposeIntermediateTensorInfo(current);
      throw new Error(`Activation ${activation} has not been implemented for the blas backend.`);
    }
    const activated = prelu({
      inputs: { x: current, alpha: preluActivationWeights },
      backend,
      attrs: {},
    }) as TensorInfo;
    backend.disposeIntermediateTensorInfo(current);
    return activated;
  };
}
