/**
 * Causal multi-head attention (grouped-query when kv heads < heads), with a
 * hand-written gradient.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { KEEP_DIMS, PLAIN, TRANSPOSED } from "./flags.ts";
import { FUSED_ATTENTION, hasFusedPair, runFused } from "./fused_kernels.ts";

/** Additive causal mask for `group` stacked copies of `seq` query rows: (group·seq, seq). */
function causalMask(group: number, seq: number): tf.Tensor2D {
  const m = new Float32Array(group * seq * seq);
  for (let r = 0; r < group * seq; r++) {
    const t = r % seq;
    // A large finite value: exp underflows to exactly 0, and no inf − inf NaN can arise.
    for (let j = t + 1; j < seq; j++) m[r * seq + j] = -1e9;
  }
  return tf.tensor2d(m, [group * seq, seq]);
}

/**
 * softmax(q·kᵀ/√d + causal mask)·v per head.
 *
 * q is [batch, seq, heads, d]; k and v are [batch, seq, kvHeads, d] with
 * kvHeads dividing heads; query head h reads kv head ⌊h / (heads/kvHeads)⌋
 * (Hugging Face's `repeat_kv`). Returns [batch, seq, heads, d].
 *
 * The G = heads/kvHeads query heads of a group are stacked as G·seq rows
 * against one kv head, so the group's k and v are never copied and their
 * gradients sum over the group inside the matmuls. Saves q, k, v, the
 * probabilities (batch·heads·seq² floats) and the output. Runs the backend's
 * `StepCausalAttention` kernels when it has them (./fused_kernels.ts; they save q,
 * k, v, the output and one log-sum-exp per query row instead of the
 * probabilities), else {@link causalAttentionComposite}.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { causalAttention } from "./attention.ts";
 * import { initBackend } from "../backend.ts";
 * await initBackend("cpu");
 * const x = tf.ones([1, 3, 2, 4]) as tf.Tensor4D;
 * const y = causalAttention(x, x, x); // all ones
 * ```
 */
export function causalAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  checkShapes(q, k, v);
  if (!hasFusedPair(FUSED_ATTENTION, [q, k, v])) return causalAttentionComposite(q, k, v);
  const scale = 1 / Math.sqrt(q.shape[3]);
  const op = tf.customGrad((...args: unknown[]) => {
    const [q, k, v, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    const [o, lse] = runFused(FUSED_ATTENTION.forward, { q, k, v }, { scale });
    save([q, k, v, o!, lse!]);
    return {
      value: o!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [q, k, v, o, lse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return runFused(FUSED_ATTENTION.gradient, { dy, q, k, v, o, lse }, { scale });
      },
    };
  });
  return op(q, k, v) as tf.Tensor4D;
}

function checkShapes(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): void {
  const [batch, seq, heads, d] = q.shape;
  const kvHeads = k.shape[2];
  const kvFits = (x: tf.Tensor4D): boolean =>
    x.shape[0] === batch && x.shape[1] === seq && x.shape[2] === kvHeads && x.shape[3] === d;
  if (heads % kvHeads !== 0 || !kvFits(k) || !kvFits(v)) {
    throw new Error(`causalAttention: q [${q.shape}], k [${k.shape}], v [${v.shape}] do not fit`);
  }
}

/**
 * {@link causalAttention} from plain tfjs ops: the reference of the fused
 * kernels and the path of backends without them.
 */
export function causalAttentionComposite(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
): tf.Tensor4D {
  checkShapes(q, k, v);
  const [batch, seq, heads, d] = q.shape;
  const kvHeads = k.shape[2];
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(d);
  // (batch, seq, kvHeads, group, d) -> (batch·kvHeads, group·seq, d)
  const queryRows = (x: tf.Tensor): tf.Tensor3D =>
    tf.reshape(
      tf.transpose(tf.reshape(x, [batch, seq, kvHeads, group, d]), [0, 2, 3, 1, 4]),
      [batch * kvHeads, group * seq, d],
    );
  // (batch, seq, kvHeads, d) -> (batch·kvHeads, seq, d)
  const keyRows = (x: tf.Tensor): tf.Tensor3D =>
    tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch * kvHeads, seq, d]);
  // inverse of queryRows, back to (batch, seq, heads, d)
  const fromQueryRows = (x: tf.Tensor): tf.Tensor4D =>
    tf.reshape(
      tf.transpose(tf.reshape(x, [batch, kvHeads, group, seq, d]), [0, 3, 1, 2, 4]),
      [batch, seq, heads, d],
    );
  const fromKeyRows = (x: tf.Tensor): tf.Tensor4D =>
    tf.transpose(tf.reshape(x, [batch, kvHeads, seq, d]), [0, 2, 1, 3]);

  const op = tf.customGrad((...args: unknown[]) => {
    const [q, k, v, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    const qh = queryRows(q);
    const kh = keyRows(k);
    const vh = keyRows(v);
    const scores = tf.add(
      tf.mul(tf.matMul(qh, kh, PLAIN, TRANSPOSED), scale),
      causalMask(group, seq),
    );
    const p = tf.softmax(scores); // (batch·kvHeads, group·seq, seq)
    const oh = tf.matMul(p, vh); // (batch·kvHeads, group·seq, d)
    save([qh, kh, vh, p, oh]);
    return {
      value: fromQueryRows(oh),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qh, kh, vh, p, oh] = saved as tf.Tensor3D[];
        const dOh = queryRows(dy);
        const dV = tf.matMul(p!, dOh, TRANSPOSED, PLAIN);
        const dP = tf.matMul(dOh, vh!, PLAIN, TRANSPOSED);
        // softmax backward: dS = p·(dP − Σ_j p·dP), and Σ_j p·dP = Σ_d dO·O
        const rowDot = tf.sum(tf.mul(dOh, oh!), -1, KEEP_DIMS);
        const dS = tf.mul(tf.mul(p!, tf.sub(dP, rowDot)), scale);
        const dQ = tf.matMul(dS, kh!);
        const dK = tf.matMul(dS, qh!, TRANSPOSED, PLAIN);
        return [fromQueryRows(dQ), fromKeyRows(dK), fromKeyRows(dV)];
      },
    };
  });
  return op(q, k, v) as tf.Tensor4D;
}
