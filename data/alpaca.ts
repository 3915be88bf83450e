/**
 * Instruction data in Stanford Alpaca's schema (`{instruction, input?, output}`), read from a
 * JSON array or from JSONL (one record per line), and the encoding of one record into a
 * training sequence whose loss counts only the response.
 *
 * Encoding: `prompt = alpacaPrompt(record)`; the sequence is `encode(prompt) ++
 * encode(output) ++ [eot]`, inputs all but its last token, targets all but its first, and every
 * target that is still part of the prompt is -1 (ignored by the loss). Prompt and output are
 * encoded separately, as Alpaca's own training code does, so the mask falls exactly on the
 * boundary whatever the tokeniser would merge across it.
 *
 * Truncation to the model's `maxSeqLen` (at most `maxSeqLen` inputs, so `maxSeqLen + 1` tokens):
 * the prompt is kept whole and the response loses its tail (end-of-text included). A record
 * whose prompt alone is longer than `maxSeqLen` tokens has no response target left: it is
 * dropped, never cut inside its prompt, and the caller reports how many were.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ContentInvalid,
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
} from "../base/mod.ts";
import { alpacaPrompt, type Instruction } from "./instruct.ts";
import { jsonLines } from "./jsonl.ts";
import { readUtf8File } from "./text_file.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** One instruction-tuning example: the prompt's fields and the response to learn. */
export interface AlpacaRecord extends Instruction {
  /** The response the model learns to give. */
  readonly output: string;
}

function isObject(u: unknown): u is Record<string, unknown> {
  return typeof u === "object" && u !== null && !Array.isArray(u);
}

function kind(u: unknown): string {
  return u === null ? "null" : Array.isArray(u) ? "an array" : typeof u;
}

/** The record, or what is wrong with it (`where` names file, record and line). */
function decodeRecord(u: unknown, where: string): ext.Either<string, AlpacaRecord> {
  if (!isObject(u)) return E.left(`${where}: expected an object, got ${kind(u)}`);
  for (const field of ["instruction", "output"] as const) {
    const v = u[field];
    if (v === undefined) return E.left(`${where}: "${field}" is missing`);
    if (typeof v !== "string") {
      return E.left(`${where}: "${field}" must be a string, got ${kind(v)}`);
    }
  }
  const input = u.input;
  if (input !== undefined && typeof input !== "string") {
    return E.left(`${where}: "input" must be a string when present, got ${kind(input)}`);
  }
  if ((u.instruction as string).trim() === "") {
    return E.left(`${where}: "instruction" is empty`);
  }
  return E.right({
    instruction: u.instruction as string,
    ...(input === undefined ? {} : { input }),
    output: u.output as string,
  });
}

function fromArray(text: string, file: string): ext.Either<ContentInvalid, AlpacaRecord[]> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return E.left(contentInvalid(file, `not valid JSON: ${describeUnknown(e)}`));
  }
  if (!Array.isArray(json)) {
    return E.left(contentInvalid(file, `expected a JSON array of records, got ${kind(json)}`));
  }
  const out: AlpacaRecord[] = [];
  for (const [i, u] of json.entries()) {
    const r = decodeRecord(u, `record ${i}`);
    if (E.isLeft(r)) return E.left(contentInvalid(file, r.left));
    out.push(r.right);
  }
  return E.right(out);
}

function fromLines(text: string, file: string): ext.Either<ContentInvalid, AlpacaRecord[]> {
  const parsed = jsonLines(text);
  if (E.isLeft(parsed)) {
    const { line, why } = parsed.left;
    // Records before the bad line are the non-blank lines before it.
    const before = text.split("\n").slice(0, line - 1).filter((l) => l.trim() !== "").length;
    return E.left(contentInvalid(file, `record ${before} (line ${line}): not valid JSON: ${why}`));
  }
  const out: AlpacaRecord[] = [];
  for (const { line, value } of parsed.right) {
    const r = decodeRecord(value, `record ${out.length} (line ${line})`);
    if (E.isLeft(r)) return E.left(contentInvalid(file, r.left));
    out.push(r.right);
  }
  return E.right(out);
}

/**
 * Parses Alpaca records from a file's text: a JSON array when the text starts with `[`,
 * otherwise JSONL (one object per non-blank line). Fields other than `instruction`, `input`
 * and `output` are ignored. The first bad record is an error naming the file, the record's
 * 0-based index (and line, for JSONL) and the field; no records at all is an error too.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAlpaca } from "./alpaca.ts";
 * const ok = parseAlpaca('[{"instruction": "Say hi.", "input": "", "output": "Hi."}]', "a.json");
 * assert(ok._tag === "Right" && ok.right[0]?.output === "Hi.");
 * const bad = parseAlpaca('{"instruction": "A", "output": "a"}\n{"instruction": "B"}', "b.jsonl");
 * assert(bad._tag === "Left" && bad.left.message === 'record 1 (line 2): "output" is missing');
 * ```
 */
export function parseAlpaca(
  text: string,
  file: string,
): ext.Either<ContentInvalid, AlpacaRecord[]> {
  const body = text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n");
  const parsed = body.trimStart().startsWith("[") ? fromArray(body, file) : fromLines(body, file);
  if (E.isRight(parsed) && parsed.right.length === 0) {
    return E.left(contentInvalid(file, "holds no records"));
  }
  return parsed;
}

/**
 * Reads and parses an Alpaca file ({@link parseAlpaca}) through {@link readUtf8File}: a
 * missing or unreadable file, a FIFO or a device is `IoFailed` naming it; bytes that are not
 * UTF-8 are `ContentInvalid` naming their offset and line.
 *
 * @example
 * ```ts
 * import { readAlpaca } from "./alpaca.ts";
 * const r = await readAlpaca("/no/such/alpaca.json")();
 * console.assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function readAlpaca(path: string): ext.TaskEither<FileError, AlpacaRecord[]> {
  return async () => {
    const text = await readUtf8File(path)();
    return E.isLeft(text) ? text : parseAlpaca(text.right, path);
  };
}

/** One encoded example: inputs and next-token targets, prompt targets -1. */
export interface SftExample {
  /** The prompt's and the response's token ids, the last one left out (it is only a target). */
  readonly tokens: Int32Array;
  /** Same length as `tokens`; -1 where the next token is still part of the prompt. */
  readonly targets: Int32Array;
  /** Targets that count (the response's tokens, end-of-text included unless cut). */
  readonly responseTokens: number;
  /** The response lost its tail to the length limit. */
  readonly truncated: boolean;
}

/** What encoding needs: the tokeniser and the model's context length. */
export interface SftEncoding {
  /**
   * Encodes the prompt and the response; `eot` ends the response, and `bos`, where the
   * tokeniser's config prepends one, starts the prompt (as it starts generation's prompts).
   */
  readonly tokenizer: Pick<Tokenizer, "encode" | "eot" | "bos">;
  /** The model's context length: an example's tokens are cut to it. */
  readonly maxSeqLen: number;
}

/**
 * Encodes one record as a response-only training example, or `undefined` when its prompt
 * leaves no room for a response token within `maxSeqLen` (the record is dropped).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "./tokenizer.ts";
 * import { alpacaPrompt } from "./instruct.ts";
 * import { encodeAlpaca } from "./alpaca.ts";
 * const r = { instruction: "Hi", output: "ok" };
 * const x = encodeAlpaca(r, { tokenizer: byteTokenizer(), maxSeqLen: 512 })!;
 * const p = alpacaPrompt(r).length;
 * assert(x.tokens.length === p + 2 && x.responseTokens === 3);
 * assert(x.targets[p - 2] === -1 && x.targets[p - 1] === "o".charCodeAt(0) && x.targets.at(-1) === 256);
 * ```
 */
export function encodeAlpaca(record: AlpacaRecord, how: SftEncoding): SftExample | undefined {
  const text = how.tokenizer.encode(alpacaPrompt(record));
  const bos = how.tokenizer.bos;
  const prompt = bos === undefined ? text : Int32Array.of(bos, ...text);
  if (prompt.length > how.maxSeqLen) return undefined;
  const output = how.tokenizer.encode(record.output);
  const whole = prompt.length + output.length + 1;
  const length = Math.min(whole, how.maxSeqLen + 1);
  const seq = new Int32Array(length);
  seq.set(prompt);
  seq.set(output.subarray(0, length - prompt.length), prompt.length);
  if (whole === length) seq[length - 1] = how.tokenizer.eot;
  const tokens = seq.slice(0, length - 1);
  const targets = seq.slice(1);
  // Target i predicts token i + 1: it belongs to the prompt while i + 1 < prompt.length.
  targets.fill(-1, 0, prompt.length - 1);
  return { tokens, targets, responseTokens: length - prompt.length, truncated: whole > length };
}

/** The encoded examples of a record list, and what the length limit did to it. */
export interface SftSet {
  /** The records that fit, encoded, in file order. */
  readonly examples: readonly SftExample[];
  /** Indices (into the record list) of the records behind `examples`, in order. */
  readonly kept: readonly number[];
  /** Indices of the records dropped because their prompt filled the context. */
  readonly dropped: readonly number[];
  /** Kept examples whose response was cut. */
  readonly truncated: number;
}

/**
 * Encodes every record ({@link encodeAlpaca}), keeping order and counting the dropped and the
 * truncated ones.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "./tokenizer.ts";
 * import { encodeAlpacaSet } from "./alpaca.ts";
 * const long = { instruction: "x".repeat(500), output: "y" };
 * const s = encodeAlpacaSet([{ instruction: "a", output: "b" }, long], {
 *   tokenizer: byteTokenizer(),
 *   maxSeqLen: 256,
 * });
 * assert(s.examples.length === 1 && s.dropped[0] === 1 && s.truncated === 0);
 * ```
 */
export function encodeAlpacaSet(records: readonly AlpacaRecord[], how: SftEncoding): SftSet {
  const examples: SftExample[] = [];
  const kept: number[] = [];
  const dropped: number[] = [];
  let truncated = 0;
  for (const [i, r] of records.entries()) {
    const x = encodeAlpaca(r, how);
    if (x === undefined) {
      dropped.push(i);
      continue;
    }
    examples.push(x);
    kept.push(i);
    if (x.truncated) truncated++;
  }
  return { examples, kept, dropped, truncated };
}
