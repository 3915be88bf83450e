/**
 * A run's live updates as server-sent events: the records appended to its `metrics.jsonl`
 * (`records`), a change of status (`status`), and `reset` when the log was rewritten (a resumed
 * run truncates it to its checkpoint), after which the page reads the run again. The stream
 * polls the file; it stops when the page goes away or the server closes it.
 *
 * @module
 */
import { RUN_DIR } from "../checkpoint/mod.ts";
import { metricsTail, type RunCompute } from "./metrics_tail.ts";
import { runStatus } from "./run_status.ts";

/** How often the log is read and, every `statusEvery`-th time, the status. */
export interface EventTiming {
  readonly pollMs: number;
  readonly statusEvery: number;
}

/** A live stream and the way to end it from the server's side. */
export interface RunEvents {
  readonly body: ReadableStream<Uint8Array>;
  /** Ends the stream (the server closing); again, does nothing. */
  close(): void;
}

/**
 * Events for run directory `dir` from byte `from` of its log on: records of the lines that
 * end at or before `from` were sent with the page and are read again only to place later ones
 * on the token axis. `onEnd` is called once the stream has ended, whichever side ended it.
 */
export function runEvents(
  dir: string,
  compute: RunCompute | undefined,
  from: number,
  timing: EventTiming,
  onEnd: () => void,
): RunEvents {
  const encoder = new TextEncoder();
  const tail = metricsTail(`${dir}/${RUN_DIR.metrics}`, compute, from);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  let polls = 0;
  let lastStatus = "";
  let control: ReadableStreamDefaultController<Uint8Array> | undefined;
  const end = () => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    try {
      control?.close();
    } catch {
      // Already closed by the page going away.
    }
    onEnd();
  };
  const send = (event: string, data: unknown) =>
    control?.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
  const tick = async () => {
    const read = await tail.read();
    if (ended) return;
    if (read.truncated) {
      send("reset", {});
      end();
      return;
    }
    if (read.records.length > 0 || read.problems.length > 0) {
      send("records", { records: read.records, problems: read.problems });
    }
    if (polls % timing.statusEvery === 0) {
      const s = await runStatus(dir);
      if (ended) return;
      const key = `${s.status} ${s.detail}`;
      if (key !== lastStatus) send("status", s);
      lastStatus = key;
    }
    polls++;
    timer = setTimeout(step, timing.pollMs);
  };
  const step = () => {
    tick().catch(() => end());
  };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      control = c;
      step();
    },
    cancel() {
      end();
    },
  });
  return { body, close: end };
}
