/**
 * The safetensors byte format, in memory: an 8-byte little-endian header
 * length N, N bytes of JSON (`{name: {dtype, shape, data_offsets: [begin,
 * end]}, "__metadata__": {string: string}}`, padded with spaces to a multiple
 * of 8), then the tensors' little-endian bytes, contiguous, with offsets
 * relative to the end of the header.
 *
 * Decoding is strict (the same checks as the reference implementation): a
 * truncated file, a header length beyond the file, JSON that does not parse,
 * an unknown dtype, a byte size that does not match dtype × shape, and
 * offsets that overlap, leave gaps or run past the end are all errors that
 * name the file and the tensor.
 *
 * File-backed lazy reading and streamed writing live in
 * `safetensors_file.ts`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  type ContentInvalid,
  contentInvalid,
  type ext,
} from "../base/mod.ts";
import {
  byteSize,
  dimsProblem,
  DTYPE_BYTES,
  isDtype,
  type RawTensor,
  type TensorInput,
  type TensorSpec,
  toRawTensor,
} from "./tensor_data.ts";

/** DataView flag: the format is little-endian throughout. */
export const LITTLE_ENDIAN = true;

/** Reference safetensors refuses headers above 100 MB; so do we (a corrupt length is usually huge). */
export const MAX_HEADER_BYTES = 100_000_000;

/** One header entry: spec plus byte range in the data section, `[begin, end)`. */
export interface TensorInfo extends TensorSpec {
  /** Offset of the tensor's first byte, counted from the start of the data section. */
  readonly begin: number;
  /** Offset one past the tensor's last byte; `end − begin` is dtype size × element count. */
  readonly end: number;
}

/** A parsed header. `tensors` is in data order (ascending `begin`). */
export interface SafetensorsHeader {
  /** Each tensor's name and entry, the `__metadata__` key left out. */
  readonly tensors: ReadonlyArray<readonly [string, TensorInfo]>;
  /** The `__metadata__` map (string to string; empty when the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** File offset of the data section: 8 + header length. */
  readonly dataStart: number;
}

/** Header bytes (length prefix + padded JSON) and the offsets they describe. */
export interface Layout {
  /** The 8-byte length followed by the space-padded JSON header. */
  readonly header: Uint8Array;
  /** Data order: largest dtype first, then by name, as the reference writer does. */
  readonly tensors: ReadonlyArray<readonly [string, TensorInfo]>;
  /** Size of the whole file in bytes. */
  readonly fileSize: number;
}

/**
 * Lays out tensors: orders them (largest element size first, so every tensor is aligned
 * to its element size; then by name), assigns contiguous offsets and builds the header.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planLayout } from "./safetensors.ts";
 * const r = planLayout([["a", { dtype: "U8", shape: [3] }]], {});
 * assert(r._tag === "Right" && r.right.header.length % 8 === 0);
 * ```
 */
export function planLayout(
  specs: ReadonlyArray<readonly [string, TensorSpec]>,
  metadata: Readonly<Record<string, string>>,
): ext.Either<ConfigInvalid, Layout> {
  const seen = new Set<string>();
  for (const [name, spec] of specs) {
    const where = `tensor "${name}"`;
    if (name === "__metadata__") return E.left(configInvalid(where, "the name is reserved"));
    if (seen.has(name)) return E.left(configInvalid(where, "the name appears twice"));
    seen.add(name);
    if (!isDtype(spec.dtype)) return E.left(configInvalid(where, `unknown dtype "${spec.dtype}"`));
    const bad = dimsProblem(spec.shape);
    if (bad !== undefined) return E.left(configInvalid(where, bad));
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      return E.left(configInvalid(`__metadata__.${k}`, "metadata values must be strings"));
    }
  }
  const order = [...specs].sort((a, b) =>
    DTYPE_BYTES[b[1].dtype] - DTYPE_BYTES[a[1].dtype] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
  );
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) json["__metadata__"] = metadata;
  const tensors: Array<readonly [string, TensorInfo]> = [];
  let offset = 0;
  for (const [name, spec] of order) {
    const end = offset + byteSize(spec);
    tensors.push([name, { dtype: spec.dtype, shape: [...spec.shape], begin: offset, end }]);
    json[name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, end] };
    offset = end;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  // Pad with spaces so the data section starts 8-aligned (the reference writer does the same).
  const padded = Math.ceil(text.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), LITTLE_ENDIAN);
  header.set(text, 8);
  return E.right({ header, tensors, fileSize: header.length + offset });
}

/**
 * Serialises named tensors and string metadata to safetensors bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * assert(bytes._tag === "Right" && decodeSafetensors(bytes.right, "m")._tag === "Right");
 * ```
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, TensorInput>>,
  metadata: Readonly<Record<string, string>> = {},
): ext.Either<ConfigInvalid, Uint8Array> {
  const raws = new Map<string, RawTensor>();
  for (const [name, input] of Object.entries(tensors)) {
    const raw = toRawTensor(input, name);
    if (E.isLeft(raw)) return raw;
    raws.set(name, raw.right);
  }
  const layout = planLayout(
    [...raws].map(([n, r]) => [n, { dtype: r.dtype, shape: r.shape }]),
    metadata,
  );
  if (E.isLeft(layout)) return layout;
  const out = new Uint8Array(layout.right.fileSize);
  out.set(layout.right.header, 0);
  const start = layout.right.header.length;
  for (const [name, info] of layout.right.tensors) {
    out.set(raws.get(name)!.bytes, start + info.begin);
  }
  return E.right(out);
}

/**
 * Reads the header length from the first 8 bytes and checks it fits in a file of `fileSize`
 * bytes. `where` names the file in errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readHeaderLength } from "./safetensors.ts";
 * assert(readHeaderLength(new Uint8Array(3), 3, "x.safetensors")._tag === "Left");
 * ```
 */
export function readHeaderLength(
  first8: Uint8Array,
  fileSize: number,
  where: string,
): ext.Either<ContentInvalid, number> {
  if (fileSize < 8 || first8.length < 8) {
    return E.left(
      contentInvalid(
        where,
        `Truncated safetensors file: ${fileSize} bytes, the header length alone needs 8`,
      ),
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, LITTLE_ENDIAN);
  if (n > BigInt(fileSize - 8)) {
    return E.left(
      contentInvalid(where, `Header length ${n} runs past the end of the file (${fileSize} bytes)`),
    );
  }
  if (n > BigInt(MAX_HEADER_BYTES)) {
    return E.left(
      contentInvalid(where, `Header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`),
    );
  }
  return E.right(Number(n));
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Validates one header entry; returns the info or a message. */
function entryOf(value: unknown): TensorInfo | string {
  if (!isRecord(value)) return "entry is not an object";
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== "string") return "dtype is missing";
  if (!isDtype(dtype)) return `unknown dtype "${dtype}"`;
  if (!Array.isArray(shape)) return "shape is missing";
  const bad = dimsProblem(shape as number[]);
  if (bad !== undefined) return bad;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
  ) {
    return "data_offsets must be two non-negative integers";
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) return `data_offsets [${begin}, ${end}] end before they begin`;
  const info: TensorInfo = { dtype, shape: shape as number[], begin, end };
  const want = byteSize(info);
  if (end - begin !== want) {
    return `holds ${end - begin} bytes but ${dtype} × ${JSON.stringify(shape)} needs ${want}`;
  }
  return info;
}

/**
 * Parses and validates the JSON header. `dataLength` is the size of the data section
 * (file size − 8 − header length); every byte of it must belong to exactly one tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeader } from "./safetensors.ts";
 * const json = new TextEncoder().encode('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}');
 * assert(parseHeader(json, 2, "m")._tag === "Right");
 * ```
 */
export function parseHeader(
  headerBytes: Uint8Array,
  dataLength: number,
  where: string,
): ext.Either<ContentInvalid, SafetensorsHeader> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    return E.left(
      contentInvalid(where, `Header is not valid JSON: ${e instanceof Error ? e.message : e}`),
    );
  }
  if (!isRecord(json)) return E.left(contentInvalid(where, "Header is not a JSON object"));
  let metadata: Record<string, string> = {};
  const tensors: Array<[string, TensorInfo]> = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isRecord(value) || !Object.values(value).every((v) => typeof v === "string")) {
        return E.left(contentInvalid(where, "__metadata__ must map strings to strings"));
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const info = entryOf(value);
    if (typeof info === "string") return E.left(contentInvalid(where, `Tensor "${name}": ${info}`));
    tensors.push([name, info]);
  }
  tensors.sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let cursor = 0;
  let previous = "";
  for (const [name, info] of tensors) {
    if (info.begin < cursor) {
      return E.left(
        contentInvalid(
          where,
          `Tensor "${name}" at [${info.begin}, ${info.end}) overlaps "${previous}"`,
        ),
      );
    }
    if (info.begin > cursor) {
      return E.left(
        contentInvalid(where, `Gap of ${info.begin - cursor} bytes before tensor "${name}"`),
      );
    }
    if (info.end > dataLength) {
      return E.left(
        contentInvalid(
          where,
          `Tensor "${name}" ends at ${info.end}, past the ${dataLength}-byte data section`,
        ),
      );
    }
    cursor = info.end;
    previous = name;
  }
  if (cursor !== dataLength) {
    return E.left(
      contentInvalid(where, `Data section is ${dataLength} bytes but the tensors cover ${cursor}`),
    );
  }
  return E.right({ tensors, metadata, dataStart: 8 + headerBytes.length });
}

/** A decoded in-memory file: the header and each tensor's bytes (views into the input). */
export interface DecodedSafetensors {
  /** The parsed header, its offsets relative to the data section. */
  readonly header: SafetensorsHeader;
  /** Each tensor by name; its bytes are a view into the decoded buffer, not a copy. */
  readonly tensors: ReadonlyMap<string, RawTensor>;
}

/**
 * Decodes a whole safetensors file held in memory. `where` names it in errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSafetensors } from "./safetensors.ts";
 * const r = decodeSafetensors(new Uint8Array(4), "bad.safetensors");
 * assert(r._tag === "Left" && r.left.path === "bad.safetensors");
 * ```
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  where: string,
): ext.Either<ContentInvalid, DecodedSafetensors> {
  const n = readHeaderLength(bytes, bytes.length, where);
  if (E.isLeft(n)) return n;
  const dataStart = 8 + n.right;
  const header = parseHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, where);
  if (E.isLeft(header)) return header;
  const tensors = new Map<string, RawTensor>();
  for (const [name, info] of header.right.tensors) {
    tensors.set(name, {
      dtype: info.dtype,
      shape: info.shape,
      bytes: bytes.subarray(dataStart + info.begin, dataStart + info.end),
    });
  }
  return E.right({ header: header.right, tensors });
}
