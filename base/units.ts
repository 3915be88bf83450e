/**
 * Byte quantities as people write them ("24GB", "16 GiB") and as reports show
 * them. GB is 10⁹ bytes, as in the paper; GiB is 2³⁰.
 *
 * @module
 */

const UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Parses "24GB", "24 GiB", "1.5e9" into bytes, or undefined when unreadable. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (m === null) return undefined;
  const value = Number(m[1]);
  const unit = UNITS[(m[2] ?? "").toLowerCase() || "b"];
  if (unit === undefined || !Number.isFinite(value) || value <= 0) return undefined;
  return value * unit;
}

/** Formats bytes in GB (10⁹) with two decimals, or MB/KB for small figures. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(2)} KB`;
  return `${bytes} B`;
}

/** Formats a parameter count as 28.31M or 1.21B. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return `${n}`;
}

/**
 * A duration for progress lines (ETA, time taken): 1h02m, 3m05s, 42s; `?` when unknown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./units.ts";
 * assert(formatDuration(185_000) === "3m05s" && formatDuration(NaN) === "?");
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  const s = Math.round(ms / 1000);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}
