/**
 * Text in, text out over `generate`: encodes the prompt with the model's tokenizer, streams the
 * decoded continuation as it grows, stops at end-of-text or at a stop text (an Alpaca header:
 * the model starting a new turn by itself), and times the run. Engine errors leave as
 * `KernelFailed`; logits that are not finite (a forward pass that overflowed float32) as
 * `ContentInvalid` naming the model: a broken model's output is never a text.
 *
 * @module
 */
import * as TE from "fp-ts/lib/TaskEither.js";
import { availableMemory } from "./machine_memory.ts";
import {
  type ContentInvalid,
  contentInvalid,
  describeUnknown,
  type KernelFailed,
  kernelFailed,
} from "../base/mod.ts";
import type { Tokenizer } from "../data/mod.ts";
import {
  generate,
  type Model,
  NonFiniteLogits,
  type SamplingOptions,
  type StopReason,
} from "../kernels/mod.ts";

/** The headers of the Alpaca template: a model that writes one has finished its response. */
export const ALPACA_STOP_TEXTS: readonly string[] = [
  "### Instruction:",
  "### Input:",
  "### Response:",
];

/** Options of {@link generateText}. */
export interface TextOptions extends SamplingOptions {
  readonly maxNewTokens: number;
  readonly seed?: number;
  /** Stop when the model emits end-of-text (default true). */
  readonly stopAtEot?: boolean;
  /** Stop when the text contains one of these; the text ends before it. */
  readonly stopTexts?: readonly string[];
  /** Use the key/value cache (default true). */
  readonly cache?: boolean;
}

/** A continuation, why it ended and how fast it came. */
export interface TextGeneration {
  readonly text: string;
  /** Every generated id (a stop text's tokens included, the end-of-text id not). */
  readonly ids: readonly number[];
  readonly stop: Exclude<StopReason, "caller"> | "stop-text";
  readonly promptTokens: number;
  /** Seconds from the call to the first new token (prefill and one sample). */
  readonly firstTokenSeconds: number;
  readonly seconds: number;
  /** New tokens per second over the whole call. */
  readonly tokensPerSec: number;
}

/** The model and tokenizer text generation needs (a `LoadedModel` fits). */
export interface TextModel {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  /** Where the model came from, for messages (a `LoadedModel`'s checkpoint directory). */
  readonly source?: string;
}

/**
 * Turns a growing id sequence into text pieces that never need taking back: a trailing
 * incomplete UTF-8 sequence (decoded as U+FFFD) and a tail that may be the start of a stop
 * text are held until the next token settles them.
 */
export function textStream(
  tokenizer: Tokenizer,
  stopTexts: readonly string[] = [],
): {
  /** Adds an id; returns the new printable text and whether a stop text has appeared. */
  push(id: number): { readonly text: string; readonly stopped: boolean };
  /** The final text (cut before a stop text) and the part not yet returned by `push`. */
  finish(): { readonly full: string; readonly rest: string };
} {
  const ids: number[] = [];
  let emitted = 0;
  let cut: number | undefined;
  const current = (): string => {
    const text = tokenizer.decode(ids);
    return cut === undefined ? text : text.slice(0, cut);
  };
  return {
    push(id) {
      ids.push(id);
      const text = tokenizer.decode(ids);
      const at = stopTexts.map((s) => text.indexOf(s)).filter((i) => i >= 0);
      if (at.length > 0) {
        cut = Math.min(...at);
        return { text: "", stopped: true };
      }
      let safe = text.length;
      while (safe > emitted && text[safe - 1] === "\uFFFD") safe--;
      safe -= heldForStop(text.slice(0, safe), stopTexts);
      if (safe <= emitted) return { text: "", stopped: false };
      const piece = text.slice(emitted, safe);
      emitted = safe;
      return { text: piece, stopped: false };
    },
    finish() {
      const full = current();
      return { full, rest: full.slice(Math.min(emitted, full.length)) };
    },
  };
}

/** Length of the longest tail of `text` that is a proper prefix of a stop text. */
function heldForStop(text: string, stopTexts: readonly string[]): number {
  let held = 0;
  for (const s of stopTexts) {
    for (let n = Math.min(s.length - 1, text.length); n > held; n--) {
      if (text.endsWith(s.slice(0, n))) {
        held = n;
        break;
      }
    }
  }
  return held;
}

/**
 * The ids a prompt is fed to the model as: BOS first where the tokeniser's config prepends it
 * (as training put it before every document), otherwise the prompt's ids, and for an empty
 * prompt end-of-text (as GPT-2's unconditional samples start).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "../data/mod.ts";
 * import { promptIds } from "./generate_text.ts";
 * assert.deepEqual([...promptIds(byteTokenizer(), "Hi")], [72, 105]);
 * assert.deepEqual([...promptIds(byteTokenizer(), "")], [256]);
 * assert.deepEqual([...promptIds({ ...byteTokenizer(), bos: 1 }, "")], [1]);
 * ```
 */
export function promptIds(
  tokenizer: Pick<Tokenizer, "encode" | "eot" | "bos">,
  prompt: string,
): Int32Array {
  const encoded = tokenizer.encode(prompt);
  if (tokenizer.bos === undefined) {
    return encoded.length > 0 ? encoded : Int32Array.of(tokenizer.eot);
  }
  const ids = new Int32Array(encoded.length + 1);
  ids[0] = tokenizer.bos;
  ids.set(encoded, 1);
  return ids;
}

/**
 * Generates a continuation of `prompt` ({@link promptIds}: after BOS where the tokeniser adds
 * one; an empty prompt without one starts from end-of-text), calling `onText` with each settled
 * piece of text. Generation stops at the tokeniser's end-of-text id (its config's EOS).
 *
 * @example
 * ```ts
 * import { generateText } from "./generate_text.ts";
 * import { byteTokenizer } from "../data/mod.ts";
 * import { initBackend, initParams } from "../kernels/mod.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 257,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const r = await generateText({ model, tokenizer: byteTokenizer() }, "Hi", { maxNewTokens: 4 })();
 * console.assert(r._tag === "Right");
 * for (const t of model.params.values()) t.dispose();
 * ```
 */
export function generateText(
  m: TextModel,
  prompt: string,
  options: TextOptions,
  onText?: (piece: string) => void,
): TE.TaskEither<KernelFailed | ContentInvalid, TextGeneration> {
  return TE.tryCatch(async () => {
    const { model, tokenizer } = m;
    const ids = promptIds(tokenizer, prompt);
    const stream = textStream(tokenizer, options.stopTexts);
    const t0 = performance.now();
    let first: number | undefined;
    // Read per call: memory freed or taken since the last one counts.
    const free = availableMemory().bytes;
    const out = await generate(model, ids, {
      ...options,
      ...(Number.isFinite(free) ? { availableBytes: free } : {}),
      stopIds: (options.stopAtEot ?? true) ? [tokenizer.eot] : [],
      vocabLimit: Math.min(tokenizer.vocabSize, model.shape.vocab),
    }, (id) => {
      first ??= performance.now();
      const r = stream.push(id);
      if (r.text !== "") onText?.(r.text);
      return r.stopped;
    });
    const seconds = (performance.now() - t0) / 1000;
    const { full, rest } = stream.finish();
    if (rest !== "") onText?.(rest);
    return {
      text: full,
      ids: out.ids,
      // Only a stop text makes the callback stop generation.
      stop: out.stop === "caller" ? "stop-text" : out.stop,
      promptTokens: ids.length,
      firstTokenSeconds: ((first ?? performance.now()) - t0) / 1000,
      seconds,
      tokensPerSec: seconds > 0 ? out.ids.length / seconds : 0,
    };
  }, (e): KernelFailed | ContentInvalid =>
    e instanceof NonFiniteLogits
      // The loaded weights are finite (`loadModel` checks them), so the arithmetic overflowed.
      ? contentInvalid(
        m.source ?? "the model",
        `${e.message}: the forward pass overflowed float32, so no token can be chosen`,
      )
      : kernelFailed(`Generation failed: ${describeUnknown(e)}`));
}
