/**
 * The progress line of a shard build: a bar, bytes read of the total, MB/s, tokens and
 * tokens/s, documents, and the time left (or taken), e.g.
 * `[#########...........] 45%  90.1 MB of 200.0 MB  12.3 MB/s  22.5M tokens  3.1M tok/s  ETA 9s`.
 *
 * @module
 */
import { formatBytes, formatCount, formatDuration } from "../base/mod.ts";
import type { PrepareProgress } from "./shard_build.ts";

/**
 * One progress line for `p`. The ETA assumes the rest of the sources read at the rate so far.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatPrepareProgress } from "./progress_bar.ts";
 * const line = formatPrepareProgress({
 *   bytesRead: 50e6, totalBytes: 200e6, tokens: 12e6, documents: 40, elapsedMs: 5000, done: false,
 * });
 * assert(line.includes("25%") && line.includes("10.0 MB/s") && line.includes("ETA 15s"));
 * ```
 */
export function formatPrepareProgress(p: PrepareProgress): string {
  const seconds = Math.max(p.elapsedMs / 1000, 1e-3);
  const share = p.totalBytes > 0 ? Math.min(1, p.bytesRead / p.totalBytes) : p.done ? 1 : 0;
  const filled = Math.round(share * 20);
  const bar = "#".repeat(filled) + ".".repeat(20 - filled);
  const left = share > 0 ? seconds * (1 - share) / share : Infinity;
  return `[${bar}] ${Math.floor(share * 100)}%  ${formatBytes(p.bytesRead)} of ${
    formatBytes(p.totalBytes)
  }  ${(p.bytesRead / 1e6 / seconds).toFixed(1)} MB/s  ${formatCount(p.tokens)} tokens  ${
    formatCount(Math.round(p.tokens / seconds))
  } tok/s  ${formatCount(p.documents)} docs  ${
    p.done ? `done in ${formatDuration(seconds * 1000)}` : `ETA ${formatDuration(left * 1000)}`
  }`;
}

/**
 * A progress callback that writes a line at most every `everyMs` milliseconds (and always the
 * final one); `write` gets the line and whether it is the final one (a terminal overwrites the
 * line in place until then).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { progressPrinter } from "./progress_bar.ts";
 * const lines: string[] = [];
 * const print = progressPrinter((l) => lines.push(l), 1e9);
 * const p = { bytesRead: 1, totalBytes: 2, tokens: 1, documents: 1, elapsedMs: 1, done: false };
 * print(p);
 * print(p);
 * print({ ...p, done: true });
 * assert(lines.length === 2);
 * ```
 */
export function progressPrinter(
  write: (line: string, final: boolean) => void,
  everyMs = 500,
): (p: PrepareProgress) => void {
  let last = -Infinity;
  return (p) => {
    if (!p.done && p.elapsedMs - last < everyMs) return;
    last = p.elapsedMs;
    write(formatPrepareProgress(p), p.done);
  };
}
