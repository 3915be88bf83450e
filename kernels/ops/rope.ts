/**
 * Rotary position embedding, Hugging Face convention.
 *
 * `rotate_half` pairs element i with element i + d/2 of a head (the two
 * halves), not neighbouring elements, so weights exported to `transformers`
 * need no permutation of q_proj/k_proj.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { FUSED_ROPE, hasFusedPair, runFused } from "./fused_kernels.ts";

/** cos and sin of position × frequency, each [seq, headDim/2]. */
export interface RopeTables {
  readonly cos: tf.Tensor2D;
  readonly sin: tf.Tensor2D;
}

/** Options of {@link ropeTables}. */
export interface RopeTableOptions {
  /** Head dimension d (even). */
  readonly headDim: number;
  /** Base of the frequencies (LLaMA: 10000). */
  readonly theta: number;
  /** Position of the first row (default 0): decoding with a cache needs rows p..p+seq−1. */
  readonly offset?: number;
}

/**
 * Tables for positions offset..offset+seq−1 (offset 0 unless given): angle(t, i) = t · theta^(−2i/headDim), i < headDim/2
 * (the second half of HF's table repeats the first, so only one half is kept).
 * Angles are computed in float64 and rounded once. The caller owns the tensors.
 *
 * @example
 * ```ts
 * import { ropeTables } from "./rope.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const { cos, sin } = ropeTables(4, { headDim: 8, theta: 10000 });
 * cos.dispose(); sin.dispose();
 * ```
 */
export function ropeTables(seq: number, options: RopeTableOptions): RopeTables {
  const { headDim, theta } = options;
  const offset = options.offset ?? 0;
  const half = headDim / 2;
  const cos = new Float32Array(seq * half);
  const sin = new Float32Array(seq * half);
  for (let t = 0; t < seq; t++) {
    for (let i = 0; i < half; i++) {
      const angle = (offset + t) * Math.pow(theta, (-2 * i) / headDim);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos: tf.tensor2d(cos, [seq, half]), sin: tf.tensor2d(sin, [seq, half]) };
}

/**
 * Rotates x [batch, seq, heads, headDim] by position: with x = (x1, x2) the
 * two halves of a head, y = (x1·cos − x2·sin, x2·cos + x1·sin), i.e. HF's
 * x·cos + rotate_half(x)·sin. Backward is the inverse rotation of dy.
 * The tables' gradients are returned as zeros (they are constants).
 * Runs the backend's `StepRope` kernels when it has them (./fused_kernels.ts), else
 * {@link ropeComposite}.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { rope, ropeTables } from "./rope.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const t = ropeTables(3, { headDim: 4, theta: 10000 });
 * const y = rope(tf.ones([1, 3, 2, 4]) as tf.Tensor4D, t); // position 0 unchanged
 * ```
 */
export function rope(x: tf.Tensor4D, tables: RopeTables): tf.Tensor4D {
  const [, seq, , headDim] = x.shape;
  if (tables.cos.shape[0] !== seq || tables.cos.shape[1] * 2 !== headDim) {
    throw new Error(`rope: x [${x.shape}] does not fit tables [${tables.cos.shape}]`);
  }
  if (!hasFusedPair(FUSED_ROPE, [x, tables.cos, tables.sin])) return ropeComposite(x, tables);
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, cos, sin, save] = args as [tf.Tensor4D, tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([cos, sin]);
    return {
      value: runFused(FUSED_ROPE.forward, { x, cos, sin })[0]!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [cos, sin] = saved as [tf.Tensor, tf.Tensor];
        const [dx] = runFused(FUSED_ROPE.gradient, { dy, cos, sin });
        return [dx!, tf.zerosLike(cos), tf.zerosLike(sin)];
      },
    };
  });
  return op(x, tables.cos, tables.sin) as tf.Tensor4D;
}

/**
 * {@link rope} from plain tfjs ops: the reference of the fused kernels and the
 * path of backends without them.
 */
export function ropeComposite(x: tf.Tensor4D, tables: RopeTables): tf.Tensor4D {
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, cos, sin, save] = args as [tf.Tensor4D, tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const [seq, half] = cos.shape;
    const c = tf.reshape(cos, [seq, 1, half]); // (seq, 1, half) against (batch, seq, heads, half)
    const s = tf.reshape(sin, [seq, 1, half]);
    save([c, s]);
    const [x1, x2] = tf.split(x, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
    return {
      value: tf.concat(
        [tf.sub(tf.mul(x1, c), tf.mul(x2, s)), tf.add(tf.mul(x2, c), tf.mul(x1, s))],
        3,
      ),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [c, s] = saved as [tf.Tensor, tf.Tensor];
        const [d1, d2] = tf.split(dy, 2, 3);
        const dx = tf.concat([
          tf.add(tf.mul(d1!, c), tf.mul(d2!, s)),
          tf.sub(tf.mul(d2!, c), tf.mul(d1!, s)),
        ], 3);
        return [dx, tf.zeros(cos.shape), tf.zeros(sin.shape)];
      },
    };
  });
  return op(x, tables.cos, tables.sin) as tf.Tensor4D;
}
