/**
 * TensorBoard's event files, written without TensorFlow: each file is a sequence of TFRecords
 * (`uint64` length, masked CRC32C of the length, the data, masked CRC32C of the data, all little
 * endian) around `tensorflow.Event` protocol buffers. Only the fields a scalar log needs are
 * encoded, by hand: `wall_time` (1, double), `step` (2, int64), `file_version` (3, string; the
 * first event of a file says `brain.Event:2`), `summary` (5: repeated `value` (1) of `tag` (1,
 * string) and `simple_value` (2, float)) and `session_log` (7: `status` (1) `START` = 1, which
 * tells TensorBoard that a resumed run discards what was logged from its step on).
 *
 * @module
 */

/** The `file_version` of the first event of every file TensorBoard reads as current. */
export const EVENTS_FILE_VERSION = "brain.Event:2";

/** What names an event file: TensorBoard reads every file whose name holds `tfevents`. */
export const EVENTS_FILE_PREFIX = "events.out.tfevents.";

/** TFRecord's integers and protobuf's fixed-width numbers are little-endian. */
const LITTLE_ENDIAN = true;

/** CRC-32C's reflected polynomial (Castagnoli). */
const CASTAGNOLI = 0x82f63b78;

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CASTAGNOLI : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32C (Castagnoli, as iSCSI and TFRecord use it) of `bytes`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32c } from "./tfevents.ts";
 * assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
 * ```
 */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) crc = TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * TFRecord's masked CRC-32C: the checksum rotated right by 15 bits plus `0xa282ead8` (mod
 * 2³²), so a record holding its own checksum does not check itself trivially.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maskedCrc32c } from "./tfevents.ts";
 * assert.equal(maskedCrc32c(new Uint8Array(0)), 0xa282ead8);
 * ```
 */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/**
 * `data` framed as one TFRecord: length (uint64), its masked CRC-32C, the data, the data's
 * masked CRC-32C.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tfRecord } from "./tfevents.ts";
 * assert.equal(tfRecord(Uint8Array.of(1, 2, 3)).length, 8 + 4 + 3 + 4);
 * ```
 */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length % 2 ** 32, LITTLE_ENDIAN);
  view.setUint32(4, Math.floor(data.length / 2 ** 32), LITTLE_ENDIAN);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), LITTLE_ENDIAN);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), LITTLE_ENDIAN);
  return out;
}

/** One scalar of a summary: TensorBoard plots each `tag` as a curve over the events' steps. */
export interface ScalarValue {
  /** The curve's name (`train/loss`); TensorBoard groups tags by the part before the first `/`. */
  readonly tag: string;
  /** Stored as a 32-bit float (`simple_value`): what TensorBoard reads is `Math.fround(value)`. */
  readonly value: number;
}

/** What an {@link Event} carries. */
export type EventPayload =
  | { readonly kind: "fileVersion"; readonly version: string }
  | { readonly kind: "scalars"; readonly values: readonly ScalarValue[] }
  /** `SessionLog.START`: readers drop the events logged earlier at this step or later. */
  | { readonly kind: "sessionStart" };

/** One `tensorflow.Event`. */
export interface Event {
  /** Seconds since the Unix epoch. */
  readonly wallTime: number;
  /** A non-negative integer: the x of every value the event holds. */
  readonly step: number;
  /** What the event says: the file's version, scalars, or a session's start. */
  readonly payload: EventPayload;
}

/** Protobuf wire types used here. */
const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const FIXED32 = 5;

/** Bytes being assembled into one protobuf message. */
class Message {
  private readonly parts: Uint8Array[] = [];

  key(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  /** A non-negative integer up to 2⁵³ as a base-128 varint. */
  varint(n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Cannot encode ${n} as a varint: expected a non-negative integer`);
    }
    const bytes: number[] = [];
    let rest = n;
    while (rest >= 0x80) {
      bytes.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    bytes.push(rest);
    this.parts.push(Uint8Array.from(bytes));
    return this;
  }

  double(field: number, x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, LITTLE_ENDIAN);
    this.key(field, FIXED64).parts.push(b);
    return this;
  }

  float(field: number, x: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x, LITTLE_ENDIAN);
    this.key(field, FIXED32).parts.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.key(field, BYTES).varint(b.length).parts.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  int(field: number, n: number): this {
    return this.key(field, VARINT).varint(n);
  }

  done(): Uint8Array {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** `SessionLog.SessionStatus.START`. */
const SESSION_START = 1;

/**
 * The protobuf bytes of `event` (a `tensorflow.Event`).
 *
 * @throws {RangeError} When the step is not a non-negative safe integer (a caller's bug).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeEvent } from "./tfevents.ts";
 * const e = encodeEvent({ wallTime: 0, step: 3, payload: { kind: "sessionStart" } });
 * assert.deepEqual([...e.subarray(9)], [0x10, 3, 0x3a, 2, 0x08, 1]);
 * ```
 */
export function encodeEvent(event: Event): Uint8Array {
  const m = new Message().double(1, event.wallTime).int(2, event.step);
  const p = event.payload;
  switch (p.kind) {
    case "fileVersion":
      return m.string(3, p.version).done();
    case "scalars": {
      const summary = new Message();
      for (const v of p.values) {
        summary.bytes(1, new Message().string(1, v.tag).float(2, v.value).done());
      }
      return m.bytes(5, summary.done()).done();
    }
    case "sessionStart":
      return m.bytes(7, new Message().int(1, SESSION_START).done()).done();
  }
}

/**
 * The events as the bytes an event file appends: each encoded and framed as a TFRecord.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EVENTS_FILE_VERSION, eventRecords } from "./tfevents.ts";
 * const head = eventRecords([{ wallTime: 1, step: 0, payload: { kind: "fileVersion", version: EVENTS_FILE_VERSION } }]);
 * assert.equal(head.length, 8 + 4 + 9 + 2 + 2 + EVENTS_FILE_VERSION.length + 4);
 * ```
 */
export function eventRecords(events: readonly Event[]): Uint8Array {
  const framed = events.map((e) => tfRecord(encodeEvent(e)));
  const out = new Uint8Array(framed.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of framed) {
    out.set(r, at);
    at += r.length;
  }
  return out;
}

/**
 * The name of an event file begun at `seconds` (since the Unix epoch) on `host`:
 * `events.out.tfevents.<seconds>.<host>`, as TensorFlow names them. TensorBoard reads a folder's
 * files in the order of their names, so a later file must begin at a later second.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventsFileName } from "./tfevents.ts";
 * assert.equal(eventsFileName(1700000000, "box"), "events.out.tfevents.1700000000.box");
 * ```
 */
export function eventsFileName(seconds: number, host: string): string {
  return `${EVENTS_FILE_PREFIX}${Math.floor(seconds)}.${host}`;
}

/**
 * The second an event file named `name` (as {@link eventsFileName} writes them) was begun at,
 * or undefined for another name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventsFileSeconds } from "./tfevents.ts";
 * assert.equal(eventsFileSeconds("events.out.tfevents.1700000000.box"), 1700000000);
 * assert.equal(eventsFileSeconds("metrics.jsonl"), undefined);
 * ```
 */
export function eventsFileSeconds(name: string): number | undefined {
  if (!name.startsWith(EVENTS_FILE_PREFIX)) return undefined;
  const digits = /^\d+/.exec(name.slice(EVENTS_FILE_PREFIX.length));
  return digits === null ? undefined : Number(digits[0]);
}
