/**
 * The SwiGLU gate of LLaMA's MLP, with a hand-written gradient.
 *
 * Only the elementwise part is a block: the three projections around it are
 * plain matmuls (see `linear.ts`), so frozen weights get no gradient.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { FUSED_SWIGLU, hasFusedPair, runFused } from "./fused_kernels.ts";

/**
 * silu(gate) · up, both [n, f]; silu(g) = g·σ(g).
 *
 * Backward: d_up = dy·silu(g); d_gate = dy·up·σ(g)·(1 + g·(1 − σ(g))).
 * Saves gate and up. Runs the backend's `StepSwiGlu` kernels when it has
 * them (./fused_kernels.ts), else {@link swigluComposite}.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { swiglu } from "./swiglu.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const h = swiglu(tf.zeros([1, 2]) as tf.Tensor2D, tf.ones([1, 2]) as tf.Tensor2D); // [[0, 0]]
 * ```
 */
export function swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  if (!hasFusedPair(FUSED_SWIGLU, [gate, up])) return swigluComposite(gate, up);
  const op = tf.customGrad((...args: unknown[]) => {
    const [gate, up, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([gate, up]);
    return {
      value: runFused(FUSED_SWIGLU.forward, { gate, up })[0]!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [gate, up] = saved as [tf.Tensor, tf.Tensor];
        return runFused(FUSED_SWIGLU.gradient, { dy, gate, up });
      },
    };
  });
  return op(gate, up) as tf.Tensor2D;
}

/**
 * {@link swiglu} from plain tfjs ops: the reference of the fused kernels and
 * the path of backends without them.
 */
export function swigluComposite(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((...args: unknown[]) => {
    const [g, u, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([g, u]);
    return {
      value: tf.mul(tf.mul(g, tf.sigmoid(g)), u),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [g, u] = saved as [tf.Tensor2D, tf.Tensor2D];
        const s = tf.sigmoid(g);
        const silu = tf.mul(g, s);
        const dUp = tf.mul(dy, silu);
        // σ(g)·(1 + g·(1−σ(g))) = σ(g) + silu(g)·(1−σ(g))
        const dSilu = tf.add(s, tf.mul(silu, tf.sub(1, s)));
        const dGate = tf.mul(tf.mul(dy, u), dSilu);
        return [dGate, dUp];
      },
    };
  });
  return op(gate, up) as tf.Tensor2D;
}
