/**
 * Ops whose gradient needs only shapes and constants, written so the tape
 * saves nothing for them. tfjs's own `Add`, `Mul` and `Reshape` gradients
 * keep a clone of every input (for broadcasting shapes), which holds those
 * buffers until the backward pass reaches them: in a decoder layer that is
 * the residual branches, the pre-reshape projections and every LoRA branch's
 * intermediate. These return the same values and the same gradients (the
 * backward arithmetic is tfjs's: `reshape(dy)`, `dy`, `dy·c`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/**
 * `tf.reshape(x, shape)` that keeps nothing for its gradient.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs-core";
 * import { reshapeKeepingNothing } from "./shape_ops.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(reshapeKeepingNothing(x, [4]), 2)));
 * assert.deepEqual(Array.from(g(tf.tensor2d([1, 2, 3, 4], [2, 2])).dataSync()), [2, 2, 2, 2]);
 * ```
 */
export function reshapeKeepingNothing<R extends tf.Rank>(
  x: tf.Tensor,
  shape: readonly number[],
): tf.Tensor<R> {
  const inShape = [...x.shape];
  const op = tf.customGrad((...args: unknown[]) => {
    const [input] = args as [tf.Tensor];
    return {
      value: tf.reshape(input, [...shape]),
      gradFunc: (dy: tf.Tensor) => tf.reshape(dy, inShape),
    };
  });
  return op(x) as tf.Tensor<R>;
}

/**
 * `a + b` for two tensors of one shape (a residual connection), keeping nothing for its
 * gradient: both inputs get `dy`.
 *
 * @throws {Error} when the shapes differ (broadcasting would need the inputs for the gradient).
 */
export function addKeepingNothing<T extends tf.Tensor>(a: T, b: T): T {
  if (a.shape.join() !== b.shape.join()) {
    throw new Error(`addKeepingNothing: shapes [${a.shape}] and [${b.shape}] differ`);
  }
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, y] = args as [tf.Tensor, tf.Tensor];
    return {
      value: tf.add(x, y),
      gradFunc: (dy: tf.Tensor) => [tf.reshape(dy, a.shape), tf.reshape(dy, b.shape)],
    };
  });
  return op(a, b) as T;
}

/** `x · c` for a constant `c`, keeping nothing for its gradient (`dy · c`). */
export function scaleKeepingNothing<T extends tf.Tensor>(x: T, c: number): T {
  const op = tf.customGrad((...args: unknown[]) => {
    const [input] = args as [tf.Tensor];
    return { value: tf.mul(input, c), gradFunc: (dy: tf.Tensor) => tf.mul(dy, c) };
  });
  return op(x) as T;
}
