/**
 * Token embedding lookup.
 *
 * A plain `gather` so that tfjs computes the table's gradient only when the
 * table is trainable; that gradient is a scatter-add (UnsortedSegmentSum,
 * registered for cpu and wasm by `initBackend`), never a one-hot product.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/**
 * Rows of `table` ([vocab, hidden]) for each token id ([n], int32): [n, hidden].
 * Ids must lie in [0, vocab); callers check them (backends differ on bad ids).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { embedding } from "./embedding.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const rows = embedding(tf.eye(3) as tf.Tensor2D, tf.tensor1d([2, 0], "int32")); // [[0,0,1],[1,0,0]]
 * ```
 */
export function embedding(table: tf.Tensor2D, tokens: tf.Tensor1D): tf.Tensor2D {
  return tf.gather(table, tokens, 0) as tf.Tensor2D;
}
