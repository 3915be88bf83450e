/**
 * JSON Lines, the one line loop: every non-blank line parsed as JSON, with its 1-based line
 * number, so each reader (corpora, Alpaca, MT-Bench, evaluation tasks) decodes the values its
 * own way and names the line in its own errors.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown, type ext } from "../base/mod.ts";

/** A parsed line and where it was. */
export interface JsonLine {
  /** 1-based line number. */
  readonly line: number;
  /** The line parsed as JSON, not yet decoded. */
  readonly value: unknown;
}

/** The first line that is not valid JSON. */
export interface BadJsonLine {
  /** 1-based line number. */
  readonly line: number;
  /** The JSON parser's message. */
  readonly why: string;
}

/**
 * The values of the non-blank lines of `text` (whitespace around a line, `\r` included, is
 * ignored), or the first line that is not valid JSON.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jsonLines } from "./jsonl.ts";
 * const ok = jsonLines('{"a": 1}\n\n[2]\r\n');
 * assert(ok._tag === "Right" && ok.right[1]!.line === 3);
 * const bad = jsonLines('{"a": 1}\n{"a": \n');
 * assert(bad._tag === "Left" && bad.left.line === 2);
 * ```
 */
export function jsonLines(text: string): ext.Either<BadJsonLine, JsonLine[]> {
  const out: JsonLine[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === "") continue;
    try {
      out.push({ line: i + 1, value: JSON.parse(raw) });
    } catch (e) {
      return E.left({ line: i + 1, why: describeUnknown(e) });
    }
  }
  return E.right(out);
}
