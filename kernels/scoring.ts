/**
 * Log-likelihood scoring: for each request (an input and, position by position, the token to
 * score), Σ log p(target) under the model and whether every scored target was the argmax.
 * Requests are sorted by length and padded into batches; the LM head runs on the scored
 * positions only, so a 50K vocabulary costs what the scored tokens need.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { logitsAt, type Model } from "./model.ts";

/** An input and the target at each position (-1: not scored); both of one length ≥ 1. */
export interface ScoringRequest {
  readonly tokens: Int32Array;
  readonly targets: Int32Array;
}

/** Σ log p over a request's scored targets (float64 sum of float32 terms). */
export interface RequestScore {
  readonly logprob: number;
  /** Every scored target was the (first) argmax of its row. */
  readonly greedy: boolean;
  readonly tokens: number;
}

/** Options of {@link scoreRequests}. */
export interface ScoringOptions {
  /** Requests per forward pass (default 8). */
  readonly batch?: number;
  /** Called after each batch with the number of requests done so far. */
  readonly onProgress?: (done: number) => void | Promise<void>;
}

function checkRequest(r: ScoringRequest, i: number, maxSeqLen: number): void {
  if (r.tokens.length !== r.targets.length || r.tokens.length === 0) {
    throw new Error(
      `Request ${i}: ${r.tokens.length} tokens and ${r.targets.length} targets (need equal, ≥ 1)`,
    );
  }
  if (r.tokens.length > maxSeqLen) {
    throw new Error(
      `Request ${i}: ${r.tokens.length} tokens exceed the model's maxSeqLen ${maxSeqLen}`,
    );
  }
}

/** Scores one padded batch: rows of `requests`, each padded to `seq` with token 0. */
async function scoreBatch(
  model: Model,
  requests: readonly ScoringRequest[],
  seq: number,
): Promise<RequestScore[]> {
  const batch = requests.length;
  const tokens = new Int32Array(batch * seq);
  const rows: number[] = [];
  const want: number[] = [];
  const owner: number[] = [];
  requests.forEach((r, b) => {
    tokens.set(r.tokens, b * seq);
    r.targets.forEach((t, i) => {
      if (t >= 0) {
        rows.push(b * seq + i);
        want.push(t);
        owner.push(b);
      }
    });
  });
  if (rows.length === 0) return requests.map(() => ({ logprob: 0, greedy: true, tokens: 0 }));
  const scored = logitsAt(model, { tokens, batch, seq }, rows);
  let picked: tf.Tensor[] = [];
  try {
    picked = tf.tidy(() => {
      const logp = tf.logSoftmax(scored);
      const at = tf.tensor2d(want.flatMap((t, j) => [j, t]), [want.length, 2], "int32");
      const onTarget = tf.gatherND(logp, at);
      return [onTarget, tf.argMax(scored, 1)];
    });
    const [lp, am] = await Promise.all(picked.map((t) => t.data()));
    const out = requests.map(() => ({ logprob: 0, greedy: true, tokens: 0 }));
    for (let j = 0; j < rows.length; j++) {
      const o = out[owner[j]!]!;
      o.logprob += lp![j]!;
      o.tokens++;
      if (am![j] !== want[j]) o.greedy = false;
    }
    return out;
  } finally {
    scored.dispose();
    tf.dispose(picked);
  }
}

/**
 * Scores every request, in the order given. Positions after a request's end are padding:
 * the model is causal, so they cannot change the scored rows.
 *
 * @throws {Error} on a malformed request (lengths, ids, longer than maxSeqLen).
 * @example
 * ```ts
 * import { initBackend } from "./backend.ts";
 * import { disposeParams, initParams } from "./params.ts";
 * import { scoreRequests } from "./scoring.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const params = initParams(shape, 1, 0);
 * const [s] = await scoreRequests({ shape, params, loraScale: 1 }, [
 *   { tokens: Int32Array.of(1, 2, 3), targets: Int32Array.of(-1, 3, 4) },
 * ]);
 * console.assert(s!.tokens === 2 && s!.logprob < 0);
 * disposeParams(params);
 * ```
 */
export async function scoreRequests(
  model: Model,
  requests: readonly ScoringRequest[],
  options: ScoringOptions = {},
): Promise<RequestScore[]> {
  const size = Math.max(1, options.batch ?? 8);
  requests.forEach((r, i) => checkRequest(r, i, model.shape.maxSeqLen));
  // Longest first, as the harness does: similar lengths share a batch, so little is padding.
  const order = requests.map((_, i) => i).sort((a, b) =>
    requests[b]!.tokens.length - requests[a]!.tokens.length || a - b
  );
  const out = new Array<RequestScore>(requests.length);
  for (let start = 0; start < order.length; start += size) {
    const ids = order.slice(start, start + size);
    const group = ids.map((i) => requests[i]!);
    const seq = Math.max(...group.map((r) => r.tokens.length));
    const scores = await scoreBatch(model, group, seq);
    ids.forEach((i, j) => (out[i] = scores[j]!));
    await options.onProgress?.(Math.min(start + size, order.length));
  }
  return out;
}
