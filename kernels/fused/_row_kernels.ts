/**
 * The fused kernels of ../ops/fused_kernels.ts that need no matrix product, for the
 * wasm backend: RMSNorm, RoPE, SwiGLU, softmax cross-entropy and AdamW, each
 * one pass (or two) of ./_simd.ts over the tensors in wasm memory. Private to
 * `kernels/fused/`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { adamwScalars, adamwStepFrom } from "../ops/adamw_rule.ts";
import { heapOf, sizeOf } from "./_wasm_backend.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Out = tf.TensorInfo | tf.TensorInfo[];

function input(args: KernelArgs, name: string): tf.TensorInfo {
  const t = args.inputs[name];
  if (t === undefined) throw new Error(`fused kernel: input "${name}" is missing`);
  return t;
}

function attr(args: KernelArgs, name: string): number {
  const v = args.attrs?.[name];
  if (typeof v !== "number") throw new Error(`fused kernel: attr "${name}" is not a number`);
  return v;
}

/** `StepRmsNorm`: x [n, h], weight [h] → y [n, h], rstd [n]. */
export function rmsNormForward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const x = input(args, "x");
  const w = input(args, "weight");
  const h = x.shape[x.shape.length - 1]!;
  const n = sizeOf(x.shape) / h;
  const y = heap.alloc([...x.shape]);
  const rstd = heap.alloc([n]);
  heap.simd.rmsNormForward(
    heap.offset(x),
    heap.offset(w),
    heap.offset(y),
    heap.offset(rstd),
    n,
    h,
    attr(args, "eps"),
  );
  return [y, rstd];
}

/** `StepRmsNormGrad`: dy, x [n, h], weight [h], rstd [n] → dx [n, h], dWeight [h]. */
export function rmsNormBackward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const x = input(args, "x");
  const h = x.shape[x.shape.length - 1]!;
  const n = sizeOf(x.shape) / h;
  const dx = heap.alloc([...x.shape]);
  const dw = heap.alloc([h]);
  heap.simd.rmsNormBackward(
    heap.offset(input(args, "dy")),
    heap.offset(x),
    heap.offset(input(args, "weight")),
    heap.offset(input(args, "rstd")),
    heap.offset(dx),
    heap.offset(dw),
    n,
    h,
  );
  return [dx, dw];
}

function rope(args: KernelArgs, xName: string, sign: number): Out {
  const heap = heapOf(args.backend);
  const x = input(args, xName);
  const [b, t, heads, d] = x.shape as [number, number, number, number];
  const y = heap.alloc([...x.shape]);
  heap.simd.rope(
    heap.offset(x),
    heap.offset(input(args, "cos")),
    heap.offset(input(args, "sin")),
    heap.offset(y),
    b * t,
    t,
    heads,
    d / 2,
    sign,
  );
  return y;
}

/** `StepRope`: x [b, t, H, d], cos, sin [t, d/2] → y. */
export function ropeForward(args: KernelArgs): Out {
  return rope(args, "x", 1);
}

/** `StepRopeGrad`: dy [b, t, H, d], cos, sin → dx (the inverse rotation). */
export function ropeBackward(args: KernelArgs): Out {
  return rope(args, "dy", -1);
}

/** `StepSwiGlu`: gate, up [n, f] → gate·σ(gate)·up. */
export function swigluForward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const g = input(args, "gate");
  const y = heap.alloc([...g.shape]);
  heap.simd.swigluForward(
    heap.offset(g),
    heap.offset(input(args, "up")),
    heap.offset(y),
    sizeOf(g.shape),
  );
  return y;
}

/** `StepSwiGluGrad`: dy, gate, up [n, f] → dGate, dUp. */
export function swigluBackward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const g = input(args, "gate");
  const dg = heap.alloc([...g.shape]);
  const du = heap.alloc([...g.shape]);
  heap.simd.swigluBackward(
    heap.offset(input(args, "dy")),
    heap.offset(g),
    heap.offset(input(args, "up")),
    heap.offset(dg),
    heap.offset(du),
    sizeOf(g.shape),
  );
  return [dg, du];
}

/** `StepSoftmaxCrossEntropy`: logits [n, V], targets [n] → rowLoss [n], lse [n]. */
export function crossEntropyForward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const logits = input(args, "logits");
  const [n, vocab] = logits.shape as [number, number];
  const rowLoss = heap.alloc([n]);
  const lse = heap.alloc([n]);
  const f = heap.f32();
  const targets = heap.i32();
  const x0 = heap.offset(logits);
  const t0 = heap.offset(input(args, "targets")) >>> 2;
  const l0 = heap.offset(rowLoss) >>> 2;
  const s0 = heap.offset(lse) >>> 2;
  const rowBytes = 4 * vocab;
  for (let r = 0; r < n; r++) {
    const target = targets[t0 + r]!;
    if (target < 0) {
      f[l0 + r] = 0;
      f[s0 + r] = 0;
      continue;
    }
    const row = x0 + r * rowBytes;
    const max = heap.simd.max(row, vocab);
    const logSum = max + Math.log(heap.simd.sumExp(row, vocab, max));
    f[s0 + r] = logSum;
    f[l0 + r] = logSum - f[(row >>> 2) + target]!;
  }
  return [rowLoss, lse];
}

/** `StepSoftmaxCrossEntropyGrad`: dy [n], logits, targets, lse → dLogits [n, V]. */
export function crossEntropyBackward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const logits = input(args, "logits");
  const [n, vocab] = logits.shape as [number, number];
  const dx = heap.alloc([n, vocab]);
  const f = heap.f32();
  const targets = heap.i32();
  const x0 = heap.offset(logits);
  const d0 = heap.offset(dx);
  const t0 = heap.offset(input(args, "targets")) >>> 2;
  const s0 = heap.offset(input(args, "lse")) >>> 2;
  const g0 = heap.offset(input(args, "dy")) >>> 2;
  const rowBytes = 4 * vocab;
  for (let r = 0; r < n; r++) {
    const target = targets[t0 + r]!;
    const out = d0 + r * rowBytes;
    if (target < 0) {
      heap.simd.fill(out, vocab, 0);
      continue;
    }
    const dy = f[g0 + r]!;
    heap.simd.expScaled(x0 + r * rowBytes, out, vocab, f[s0 + r]!, dy);
    f[(out >>> 2) + target]! -= dy;
  }
  return dx;
}

/**
 * `StepAdamW`: param, grad, m, v → param', m', v'. With `inPlace` and buffers
 * no other tensor shares, the results are written over param, m and v.
 */
export function adamw(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const [p, g, m, v] = ["param", "grad", "m", "v"].map((n) => input(args, n)) as [
    tf.TensorInfo,
    tf.TensorInfo,
    tf.TensorInfo,
    tf.TensorInfo,
  ];
  const ids = new Set([p, g, m, v].map((t) => t.dataId));
  const exclusive = ids.size === 4 &&
    [p, m, v].every((t) => heap.backend.dataIdMap.get(t.dataId).refCount === 1);
  const inPlace = args.attrs?.["inPlace"] === true && exclusive;
  const outs = [p, m, v].map((t) => {
    if (!inPlace) return heap.alloc([...t.shape]);
    heap.backend.incRef(t.dataId);
    return { dataId: t.dataId, shape: [...t.shape], dtype: t.dtype };
  }) as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
  const s = adamwScalars(adamwStepFrom((field) => attr(args, field)));
  heap.simd.adamw(
    heap.offset(p),
    heap.offset(g),
    heap.offset(m),
    heap.offset(v),
    heap.offset(outs[0]),
    heap.offset(outs[1]),
    heap.offset(outs[2]),
    sizeOf(p.shape),
    s.gradScale,
    s.beta1,
    s.oneMinusBeta1,
    s.beta2,
    s.oneMinusBeta2,
    s.eps,
    s.decay,
    s.stepSize,
    s.vCorrection,
  );
  return outs;
}
