/**
 * Token-level requests, the harness's way: a (context, continuation) pair is encoded as the
 * whole string minus the context's encoding (so a BPE merge across the boundary goes to the
 * continuation), an empty context becomes the prefix token (the tokeniser's BOS when it has one,
 * else end-of-text: the harness's `prefix_token_id`), and what does not fit the model's window is
 * cut from the left. Documents are scored in rolling windows.
 *
 * @module
 */
import type { Tokenizer } from "../data/mod.ts";

/** Model input and, position by position, the token to score there (-1: not scored). */
export interface ScoreRequest {
  /** Token ids fed to the model, at most the model's window. */
  readonly tokens: Int32Array;
  /** For each position, the id the model should predict there, or -1 where nothing is scored. */
  readonly targets: Int32Array;
}

/** A context and continuation as token ids. */
export interface EncodedPair {
  /** Ids of the context (`[prefix]` for an empty one: {@link prefixToken}). */
  readonly context: Int32Array;
  /** Ids scored after the context. */
  readonly continuation: Int32Array;
}

/**
 * The id the harness puts before an empty context and a document's first window
 * (`prefix_token_id`): the tokeniser's BOS when it has one, else its end-of-text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { prefixToken } from "./requests.ts";
 * assert.equal(prefixToken({ eot: 256 }), 256);
 * assert.equal(prefixToken({ eot: 2, bos: 1 }), 1);
 * ```
 */
export function prefixToken(tok: Pick<Tokenizer, "eot" | "bos">): number {
  return tok.bos ?? tok.eot;
}

/**
 * The characters Python's `str.isspace()` accepts, which `str.rstrip()` strips, as the body of
 * a regular-expression character class: JavaScript's `\s` differs (it has U+FEFF, lacks
 * U+001C–U+001F and U+0085).
 */
export const PY_SPACE =
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
const TRAILING_SPACE = new RegExp(`[${PY_SPACE}]+$`, "u");

/**
 * Encodes a pair as lm-evaluation-harness does: the context's trailing whitespace (Python's
 * `str.rstrip()`: spaces, but also newlines, tabs and the rest of {@link PY_SPACE}) moves to
 * the continuation and is scored with it; the continuation's ids are those of
 * `context + continuation` after the context's own ids; an empty context (or one of whitespace
 * only) is `[prefix]` ({@link prefixToken}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "../data/mod.ts";
 * import { encodePair } from "./requests.ts";
 * const p = encodePair(byteTokenizer(), "Hi ", "there");
 * assert.deepEqual([...p.context], [72, 105]);
 * assert.equal(p.continuation.length, 6);
 * ```
 */
export function encodePair(tok: Tokenizer, context: string, continuation: string): EncodedPair {
  const trimmed = context.replace(TRAILING_SPACE, "");
  const moved = context.slice(trimmed.length) + continuation;
  if (trimmed === "") {
    return { context: Int32Array.of(prefixToken(tok)), continuation: tok.encode(moved) };
  }
  const whole = tok.encode(trimmed + moved);
  const ctx = tok.encode(trimmed);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/**
 * The request scoring `pair.continuation` after `pair.context`, within `window` positions:
 * context ++ continuation, its last window + 1 ids, input all but the last. A continuation
 * longer than the window is scored on its last `window` tokens.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pairRequest } from "./requests.ts";
 * const r = pairRequest({ context: Int32Array.of(1, 2, 3), continuation: Int32Array.of(4, 5) }, 3);
 * assert.deepEqual([...r.tokens], [2, 3, 4]);
 * assert.deepEqual([...r.targets], [-1, 4, 5]);
 * ```
 */
export function pairRequest(pair: EncodedPair, window: number): ScoreRequest {
  const all = new Int32Array(pair.context.length + pair.continuation.length);
  all.set(pair.context);
  all.set(pair.continuation, pair.context.length);
  const kept = all.slice(Math.max(0, all.length - (window + 1)));
  const tokens = kept.slice(0, kept.length - 1);
  const targets = new Int32Array(tokens.length).fill(-1);
  const scored = Math.min(pair.continuation.length, tokens.length);
  for (let i = 0; i < scored; i++) {
    targets[tokens.length - scored + i] = kept[kept.length - scored + i]!;
  }
  return { tokens, targets };
}

/**
 * Rolling windows over a document's ids so that every id is scored exactly once: the first
 * window is `[prefix]` ({@link prefixToken}) and the first `window − 1` ids; each later one
 * scores the next `stride` ids (fewer at the end) with the `window` ids before each as context. `stride = window` is the
 * harness's `loglikelihood_rolling`; a smaller stride gives every id more context, at more cost.
 *
 * @throws {Error} when `stride` is not in 1..window (a caller bug: flags are checked first).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rollingWindows } from "./requests.ts";
 * const w = rollingWindows(Int32Array.of(10, 11, 12, 13, 14), 9, 3, 3);
 * assert.deepEqual(w.map((r) => [...r.tokens]), [[9, 10, 11], [11, 12, 13]]);
 * assert.deepEqual(w.map((r) => [...r.targets]), [[10, 11, 12], [-1, 13, 14]]);
 * ```
 */
export function rollingWindows(
  ids: Int32Array,
  prefix: number,
  window: number,
  stride: number,
): ScoreRequest[] {
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= window)) {
    throw new Error(`stride ${stride} must be an integer in 1..${window}`);
  }
  const n = ids.length;
  if (n === 0) return [];
  const first = Math.min(window, n);
  const out: ScoreRequest[] = [];
  const tokens = new Int32Array(first);
  tokens[0] = prefix;
  tokens.set(ids.subarray(0, first - 1), 1);
  out.push({ tokens, targets: ids.slice(0, first) });
  let predicted = first;
  while (predicted < n) {
    const count = Math.min(n - predicted, stride);
    const end = predicted + count;
    const input = ids.slice(end - window - 1, end - 1);
    const targets = new Int32Array(window).fill(-1);
    targets.set(ids.subarray(end - count, end), window - count);
    out.push({ tokens: input, targets });
    predicted = end;
  }
  return out;
}
