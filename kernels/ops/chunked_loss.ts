/**
 * The LM head and the cross-entropy over a few rows at a time, so that
 * neither the logits [n, V] nor their gradient ever exists whole: the
 * forward keeps one log-sum-exp per row, the backward recomputes each
 * chunk's logits, turns them into their gradient and folds it into the
 * hidden states' and the head's gradients before the next chunk. With a
 * GPT-2 vocabulary the whole logits and their gradient are 2·n·50,257 floats;
 * chunked, 2·chunk·V, plus the head's gradient while it accumulates.
 *
 * The price: the head's matmul runs twice. Loss and gradients equal the
 * unchunked ones up to float32 summation order.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { PLAIN, TRANSPOSED } from "./flags.ts";
import { releaseDisposedGpuBuffers } from "./release.ts";
import { crossEntropyRows, crossEntropyRowsGrad } from "./cross_entropy.ts";

/** Options of {@link chunkedHeadLoss}. */
export interface ChunkedHeadLossOptions {
  /** Rows (tokens) per chunk. */
  readonly chunk: number;
  /** `head` is the embedding [V, h] (tied) rather than an LM head [h, V]. */
  readonly tied: boolean;
  /** Whether the head's weight trains (a frozen head gets no gradient computed). */
  readonly headTrains: boolean;
}

function rowsOf(n: number, chunk: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r = 0; r < n; r += chunk) out.push([r, Math.min(n, r + chunk) - r]);
  return out;
}

function logitsOf(h: tf.Tensor2D, head: tf.Tensor2D, tied: boolean): tf.Tensor2D {
  return tied ? tf.matMul(h, head, PLAIN, TRANSPOSED) : tf.matMul(h, head);
}

/**
 * Σ over valid targets of the cross-entropy of `hf` [n, h] (the final norm's output) through the
 * head, chunk by chunk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs-core";
 * import { chunkedHeadLoss } from "./chunked_loss.ts";
 * import { crossEntropySum } from "./cross_entropy.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const h = tf.randomNormal([5, 4], 0, 1, "float32", 1) as tf.Tensor2D;
 * const w = tf.randomNormal([4, 7], 0, 1, "float32", 2) as tf.Tensor2D;
 * const t = tf.tensor1d([1, 6, -1, 0, 3], "int32");
 * const whole = crossEntropySum(tf.matMul(h, w), t).dataSync()[0]!;
 * const chunked = chunkedHeadLoss(h, w, t, { chunk: 2, tied: false, headTrains: true }).dataSync()[0]!;
 * assert(Math.abs(whole - chunked) < 1e-5);
 * ```
 */
export function chunkedHeadLoss(
  hf: tf.Tensor2D,
  head: tf.Tensor2D,
  targets: tf.Tensor1D,
  options: ChunkedHeadLossOptions,
): tf.Scalar {
  const [n, hidden] = hf.shape;
  const chunks = rowsOf(n, options.chunk);
  const part = (x: tf.Tensor2D, [r0, rows]: [number, number]): tf.Tensor2D =>
    tf.slice(x, [r0, 0], [rows, hidden]);
  const targetsOf = (t: tf.Tensor1D, [r0, rows]: [number, number]): tf.Tensor1D =>
    tf.slice(t, [r0], [rows]);
  const op = tf.customGrad((...args: unknown[]) => {
    const [h, w, save] = options.headTrains
      ? args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc]
      : [args[0] as tf.Tensor2D, head, args[1] as tf.GradSaveFunc];
    let total: tf.Scalar = tf.scalar(0);
    const lses: tf.Tensor1D[] = [];
    for (const c of chunks) {
      const { loss, lse } = tf.tidy(() => {
        const { rowLoss, lse } = crossEntropyRows(
          logitsOf(part(h, c), w, options.tied),
          targetsOf(targets, c),
        );
        return { loss: tf.sum(rowLoss) as tf.Scalar, lse };
      });
      const next = tf.add(total, loss) as tf.Scalar;
      tf.dispose([total, loss]);
      total = next;
      lses.push(lse);
      releaseDisposedGpuBuffers();
    }
    const lse = tf.concat(lses) as tf.Tensor1D;
    tf.dispose(lses);
    // The targets too: the caller's tensor may be gone by the backward pass.
    save([h, lse, targets]);
    return {
      value: total,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [h, lse, targets] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
        let dHead: tf.Tensor | undefined;
        const dh: tf.Tensor2D[] = [];
        for (const c of chunks) {
          const [dhc, dwc] = tf.tidy(() => {
            const hc = part(h, c);
            const dyRows = tf.broadcastTo(tf.reshape(dy, [1]), [c[1]]) as tf.Tensor1D;
            const lseC = tf.slice(lse, [c[0]], [c[1]]);
            const dLogits = crossEntropyRowsGrad(
              dyRows,
              logitsOf(hc, w, options.tied),
              targetsOf(targets, c),
              lseC,
            );
            const dhc = options.tied
              ? tf.matMul(dLogits, w)
              : tf.matMul(dLogits, w, PLAIN, TRANSPOSED);
            if (!options.headTrains) return [dhc];
            const dwc = options.tied
              ? tf.matMul(dLogits, hc, TRANSPOSED, PLAIN)
              : tf.matMul(hc, dLogits, TRANSPOSED, PLAIN);
            return [dhc, dwc];
          });
          dh.push(dhc as tf.Tensor2D);
          if (dwc !== undefined) {
            const sum: tf.Tensor = dHead === undefined ? dwc : tf.add(dHead, dwc);
            if (dHead !== undefined) tf.dispose([dHead, dwc]);
            dHead = sum;
          }
          releaseDisposedGpuBuffers();
        }
        const dhf = tf.concat(dh) as tf.Tensor2D;
        tf.dispose(dh);
        return dHead === undefined ? [dhf] : [dhf, dHead];
      },
    };
  });
  return (options.headTrains ? op(hf, head) : op(hf)) as tf.Scalar;
}
