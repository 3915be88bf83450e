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

/**
 * `StepSumSquares`: x0 … x{k−1} (any shapes) → Σ x² over all of them, a float32 scalar. Each
 * tensor is read once (its parts over the pool), the parts' sums added in float64.
 */
export function sumSquares(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const xs: tf.TensorInfo[] = [];
  for (let t = args.inputs["x0"]; t !== undefined; t = args.inputs[`x${xs.length}`]) xs.push(t);
  const out = heap.alloc([]);
  // One float per part of the plan; each call is held to it, as the scratch is sized for it.
  const planned = heap.parts(Math.max(0, ...xs.map((x) => sizeOf(x.shape))));
  const partial = heap.scratch(planned);
  let total = 0;
  for (const x of xs) {
    const n = sizeOf(x.shape);
    if (n === 0) continue;
    const used = heap.run("sumSquares", [heap.offset(x), n, heap.offset(partial)], n, planned);
    const f = heap.f32();
    for (let p = 0; p < used; p++) total += f[(heap.offset(partial) >>> 2) + p]!;
  }
  heap.f32()[heap.offset(out) >>> 2] = total;
  heap.free(partial);
  return out;
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
  heap.run(
    "rmsNormForward",
    [heap.offset(x), heap.offset(w), heap.offset(y), heap.offset(rstd), n, h, attr(args, "eps")],
    n * h,
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
  // Each part after the first sums its rows' weight gradient apart; they are added last.
  const planned = heap.parts(n * h);
  const partials = planned > 1 ? heap.scratch((planned - 1) * h) : undefined;
  const used = heap.run(
    "rmsNormBackward",
    [
      heap.offset(input(args, "dy")),
      heap.offset(x),
      heap.offset(input(args, "weight")),
      heap.offset(input(args, "rstd")),
      heap.offset(dx),
      heap.offset(dw),
      n,
      h,
      partials === undefined ? 0 : heap.offset(partials),
    ],
    n * h,
    planned,
  );
  if (partials !== undefined) {
    const f = heap.f32();
    const d0 = heap.offset(dw) >>> 2;
    const p0 = heap.offset(partials) >>> 2;
    for (let part = 1; part < used; part++) {
      const at = p0 + (part - 1) * h;
      for (let i = 0; i < h; i++) f[d0 + i]! += f[at + i]!;
    }
    heap.free(partials);
  }
  return [dx, dw];
}

function rope(args: KernelArgs, xName: string, sign: number): Out {
  const heap = heapOf(args.backend);
  const x = input(args, xName);
  const [b, t, heads, d] = x.shape as [number, number, number, number];
  const y = heap.alloc([...x.shape]);
  heap.run(
    "rope",
    [
      heap.offset(x),
      heap.offset(input(args, "cos")),
      heap.offset(input(args, "sin")),
      heap.offset(y),
      b * t,
      t,
      heads,
      d / 2,
      sign,
    ],
    sizeOf(x.shape),
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
  const n = sizeOf(g.shape);
  heap.run(
    "swigluForward",
    [heap.offset(g), heap.offset(input(args, "up")), heap.offset(y), n],
    n,
  );
  return y;
}

/** `StepSwiGluGrad`: dy, gate, up [n, f] → dGate, dUp. */
export function swigluBackward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const g = input(args, "gate");
  const dg = heap.alloc([...g.shape]);
  const du = heap.alloc([...g.shape]);
  const n = sizeOf(g.shape);
  heap.run(
    "swigluBackward",
    [
      heap.offset(input(args, "dy")),
      heap.offset(g),
      heap.offset(input(args, "up")),
      heap.offset(dg),
      heap.offset(du),
      n,
    ],
    n,
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
  heap.run(
    "crossEntropyForward",
    [
      heap.offset(logits),
      heap.offset(input(args, "targets")),
      heap.offset(rowLoss),
      heap.offset(lse),
      n,
      vocab,
    ],
    n * vocab,
  );
  return [rowLoss, lse];
}

/** `StepSoftmaxCrossEntropyGrad`: dy [n], logits, targets, lse → dLogits [n, V]. */
export function crossEntropyBackward(args: KernelArgs): Out {
  const heap = heapOf(args.backend);
  const logits = input(args, "logits");
  const [n, vocab] = logits.shape as [number, number];
  const dx = heap.alloc([n, vocab]);
  heap.run(
    "crossEntropyBackward",
    [
      heap.offset(input(args, "dy")),
      heap.offset(logits),
      heap.offset(input(args, "targets")),
      heap.offset(input(args, "lse")),
      heap.offset(dx),
      n,
      vocab,
    ],
    n * vocab,
  );
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
  const n = sizeOf(p.shape);
  heap.run(
    "adamw",
    [
      ...[p, g, m, v, ...outs].map(heap.offset),
      n,
      s.gradScale,
      s.beta1,
      s.oneMinusBeta1,
      s.beta2,
      s.oneMinusBeta2,
      s.eps,
      s.decay,
      s.stepSize,
      s.vCorrection,
    ],
    n,
  );
  return outs;
}
