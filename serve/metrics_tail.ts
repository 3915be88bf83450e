/**
 * Reading a run's `metrics.jsonl` while its run still appends to it: only complete lines are
 * decoded (a line without its newline is being written, and is read once it has one), each
 * with the log's own codec, and every record is placed on the run's three x axes (optimizer
 * steps, tokens, FLOPs in both accountings). A damaged line is skipped and named, never fatal.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { decodeWith, describeUnknown } from "../base/mod.ts";
import { readBytesFrom } from "./file_bytes.ts";
import { flopsAtStep, type RunFlops, type RunMetric, RunMetricCodec } from "../pipeline/mod.ts";

/** Where a record lies on the axes the charts can draw against. */
export interface RecordPlace {
  /** Tokens trained on when it was written (the last `train` record's count before it). */
  readonly tokens: number;
  /** FLOPs spent by its step, the paper's accounting; null without the run's graph. */
  readonly flopsPaper: number | null;
  /** FLOPs spent by its step, executed matmuls; null without the run's graph. */
  readonly flopsExecuted: number | null;
}

/** A decoded record and its place. */
export type PlacedRecord = RunMetric & { readonly at: RecordPlace };

/** The compute of a run in both accountings, when its graph is known. */
export interface RunCompute {
  readonly paper: RunFlops;
  readonly executed: RunFlops;
}

/** What one read of the log found. */
export interface TailRead {
  /** Records of the complete lines read, in order. */
  readonly records: PlacedRecord[];
  /** Damaged lines, each named by its number (they are skipped). */
  readonly problems: string[];
  /** The file is shorter than what was read before: it was rewritten (a resumed run truncates it). */
  readonly truncated: boolean;
}

/** A reader of one `metrics.jsonl` that remembers how far it has read. */
export interface MetricsTail {
  /** Reads the complete lines appended since the last read. */
  read(): Promise<TailRead>;
  /** Bytes of complete lines consumed so far. */
  readonly offset: number;
}

const NEWLINE = 0x0a;

/**
 * A reader of `path`. `compute` places records on the FLOPs axes. Records of the lines that end
 * at or before byte `shownUpTo` are already on the page: they are decoded to place later ones
 * (tokens are carried from the last `train` record) but not returned. A missing file reads as no
 * records (a run writes its log with its first step).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { metricsTail } from "./metrics_tail.ts";
 * const dir = await Deno.makeTempDir();
 * const grow = '{"type":"grow","node":"g","add":1,"layers":2,"globalStep":5}';
 * await Deno.writeTextFile(`${dir}/metrics.jsonl`, `${grow}\n{"type":"gr`);
 * const tail = metricsTail(`${dir}/metrics.jsonl`, undefined);
 * assert.equal((await tail.read()).records.length, 1); // the half-written line waits
 * await Deno.writeTextFile(`${dir}/metrics.jsonl`, 'ow"}\n', { append: true });
 * const [problem] = (await tail.read()).problems;
 * assert(problem?.startsWith("line 2 is not a run metrics record: node: expected a string"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function metricsTail(
  path: string,
  compute: RunCompute | undefined,
  shownUpTo = 0,
): MetricsTail {
  let offset = 0;
  let lineNo = 0;
  let tokens = 0;
  const place = (r: RunMetric): RecordPlace => {
    if (r.type === "train") tokens = r.tokens;
    return {
      tokens,
      flopsPaper: compute === undefined ? null : flopsAtStep(compute.paper, r.globalStep),
      flopsExecuted: compute === undefined ? null : flopsAtStep(compute.executed, r.globalStep),
    };
  };
  const decoder = new TextDecoder();
  return {
    get offset() {
      return offset;
    },
    async read(): Promise<TailRead> {
      let bytes: Uint8Array | "truncated";
      try {
        bytes = await readBytesFrom(path, offset);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          return { records: [], problems: [], truncated: offset > 0 };
        }
        return {
          records: [],
          problems: [`cannot read it: ${describeUnknown(e)}`],
          truncated: false,
        };
      }
      if (bytes === "truncated") return { records: [], problems: [], truncated: true };
      const start = offset;
      const records: PlacedRecord[] = [];
      const problems: string[] = [];
      let at = 0;
      for (let nl = bytes.indexOf(NEWLINE); nl >= 0; nl = bytes.indexOf(NEWLINE, at)) {
        const line = decoder.decode(bytes.subarray(at, nl));
        at = nl + 1;
        offset = start + at;
        lineNo++;
        if (line.trim() === "") continue;
        const shown = offset <= shownUpTo;
        const r = decodeLine(line);
        if (E.isLeft(r)) {
          if (!shown) problems.push(`line ${lineNo} ${r.left}`);
        } else {
          const at = place(r.right);
          if (!shown) records.push({ ...r.right, at });
        }
      }
      return { records, problems, truncated: false };
    },
  };
}

// The same verdicts as `decodeMetricLines`, line by line, so that one damaged line costs only
// itself while the run goes on appending after it.
function decodeLine(line: string): E.Either<string, RunMetric> {
  let u: unknown;
  try {
    u = JSON.parse(line);
  } catch (e) {
    return E.left(`is not JSON: ${describeUnknown(e)}`);
  }
  return E.mapLeft((why: string[]) => `is not a ${RunMetricCodec.name}: ${why.join("; ")}`)(
    decodeWith(RunMetricCodec, u),
  );
}
