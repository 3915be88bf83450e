/**
 * Tensor element types and raw little-endian tensor bytes: the dtype table,
 * conversion of typed arrays to stored bytes (F32 → F16/BF16 rounding to
 * nearest even) and back to typed arrays (F16/BF16 widened to F32 exactly).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid, type ext } from "../base/mod.ts";
import { bf16ToFloat32, f16ToFloat32, float32ToBf16, float32ToF16 } from "./half.ts";

/** Element types this module reads and writes. */
export type Dtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Bytes per element of each {@link Dtype}. */
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** True for the names in {@link DTYPE_BYTES}. */
export function isDtype(s: string): s is Dtype {
  return Object.hasOwn(DTYPE_BYTES, s);
}

/** Shape and dtype of one tensor, before any bytes exist. */
export interface TensorSpec {
  /** Element type, as safetensors names it (`F32`, `BF16`, …). */
  readonly dtype: Dtype;
  /** Dimensions, outermost first; `[]` is a scalar. */
  readonly shape: readonly number[];
}

/** A tensor as stored: its spec and its little-endian bytes. */
export interface RawTensor extends TensorSpec {
  /** The elements, row-major and little-endian; length is dtype size × element count. */
  readonly bytes: Uint8Array;
}

/** Typed arrays accepted as tensor values. */
export type TensorValues =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | BigUint64Array
  | Uint32Array
  | Uint16Array
  | Uint8Array;

/**
 * A tensor to write. For F16/BF16, `data` is a Float32Array (rounded to
 * nearest even) or a Uint16Array of bit patterns; for other dtypes, the
 * typed array of that dtype (BOOL and U8: Uint8Array).
 */
export interface TensorInput extends TensorSpec {
  /** The values, row-major; as many as the shape's element count. */
  readonly data: TensorValues;
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Byte size of a tensor of this spec. */
export function byteSize(spec: TensorSpec): number {
  return elementCount(spec.shape) * DTYPE_BYTES[spec.dtype];
}

function hostIsLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

/** Byte-swaps in place when the host is big-endian, since the format is little-endian. */
function fixEndian<T extends Uint8Array>(bytes: T, width: number): T {
  if (width === 1 || hostIsLittleEndian()) return bytes;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  return bytes;
}

function expectedArray(dtype: Dtype): string {
  switch (dtype) {
    case "F64":
      return "Float64Array";
    case "F32":
      return "Float32Array";
    case "F16":
    case "BF16":
      return "Float32Array or Uint16Array";
    case "I64":
      return "BigInt64Array";
    case "I32":
      return "Int32Array";
    case "I16":
      return "Int16Array";
    case "I8":
      return "Int8Array";
    case "U64":
      return "BigUint64Array";
    case "U32":
      return "Uint32Array";
    case "U16":
      return "Uint16Array";
    case "U8":
    case "BOOL":
      return "Uint8Array";
  }
}

/** Whether `data` is the typed array that stores `dtype` as is. */
function holds(dtype: Dtype, data: TensorValues): boolean {
  switch (dtype) {
    case "F64":
      return data instanceof Float64Array;
    case "F32":
      return data instanceof Float32Array;
    case "F16":
    case "BF16":
    case "U16":
      return data instanceof Uint16Array;
    case "I64":
      return data instanceof BigInt64Array;
    case "I32":
      return data instanceof Int32Array;
    case "I16":
      return data instanceof Int16Array;
    case "I8":
      return data instanceof Int8Array;
    case "U64":
      return data instanceof BigUint64Array;
    case "U32":
      return data instanceof Uint32Array;
    case "U8":
    case "BOOL":
      return data instanceof Uint8Array;
  }
}

/** Why a shape is invalid (non-integer or negative dimension), or undefined when it is fine. */
export function dimsProblem(shape: readonly number[]): string | undefined {
  if (!Array.isArray(shape)) return "shape is not an array";
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      return `shape ${JSON.stringify(shape)} has a bad dimension`;
    }
  }
  return undefined;
}

/**
 * Little-endian bytes of a tensor input, converting F32 values to F16/BF16 when asked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toRawTensor } from "./tensor_data.ts";
 * const r = toRawTensor({ dtype: "F16", shape: [1], data: new Float32Array([1]) }, "w");
 * assert(r._tag === "Right" && r.right.bytes[1] === 0x3c);
 * ```
 */
export function toRawTensor(
  input: TensorInput,
  name: string,
): ext.Either<ConfigInvalid, RawTensor> {
  const where = `tensor "${name}"`;
  const bad = dimsProblem(input.shape);
  if (bad !== undefined) return E.left(configInvalid(where, bad));
  if (!isDtype(input.dtype)) return E.left(configInvalid(where, `unknown dtype "${input.dtype}"`));
  const n = elementCount(input.shape);
  const { dtype, data } = input;
  let out: TensorValues | undefined;
  if ((dtype === "F16" || dtype === "BF16") && data instanceof Float32Array) {
    out = dtype === "F16" ? float32ToF16(data) : float32ToBf16(data);
  } else if (holds(dtype, data)) {
    out = data;
  }
  if (out === undefined) {
    return E.left(
      configInvalid(
        where,
        `dtype ${dtype} needs a ${expectedArray(dtype)}, got ${data.constructor.name}`,
      ),
    );
  }
  if (out.length !== n) {
    return E.left(
      configInvalid(
        where,
        `shape ${JSON.stringify(input.shape)} has ${n} elements, data has ${out.length}`,
      ),
    );
  }
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength).slice();
  return E.right({ dtype, shape: [...input.shape], bytes: fixEndian(bytes, DTYPE_BYTES[dtype]) });
}

/** Host-endian copy of the bytes, aligned for a typed-array view. */
function hostBytes(raw: RawTensor): ArrayBuffer {
  const copy = new Uint8Array(raw.bytes.length);
  copy.set(raw.bytes);
  fixEndian(copy, DTYPE_BYTES[raw.dtype]);
  return copy.buffer;
}

/**
 * The values of a stored tensor as a typed array; F16 and BF16 are widened to Float32Array
 * (exactly). Always a fresh copy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensorValues } from "./tensor_data.ts";
 * const v = tensorValues({ dtype: "BF16", shape: [1], bytes: new Uint8Array([0x80, 0x3f]) });
 * assert(v[0] === 1);
 * ```
 */
export function tensorValues(raw: RawTensor): TensorValues {
  const buf = hostBytes(raw);
  switch (raw.dtype) {
    case "F64":
      return new Float64Array(buf);
    case "F32":
      return new Float32Array(buf);
    case "F16":
      return f16ToFloat32(new Uint16Array(buf));
    case "BF16":
      return bf16ToFloat32(new Uint16Array(buf));
    case "I64":
      return new BigInt64Array(buf);
    case "I32":
      return new Int32Array(buf);
    case "I16":
      return new Int16Array(buf);
    case "I8":
      return new Int8Array(buf);
    case "U64":
      return new BigUint64Array(buf);
    case "U32":
      return new Uint32Array(buf);
    case "U16":
      return new Uint16Array(buf);
    case "U8":
    case "BOOL":
      return new Uint8Array(buf);
  }
}

/**
 * A floating-point tensor as Float32Array (F64 is rounded); integer dtypes are refused.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensorToFloat32 } from "./tensor_data.ts";
 * const r = tensorToFloat32({ dtype: "F16", shape: [1], bytes: new Uint8Array([0, 0x3c]) }, "w");
 * assert(r._tag === "Right" && r.right[0] === 1);
 * ```
 */
export function tensorToFloat32(
  raw: RawTensor,
  name: string,
): ext.Either<ConfigInvalid, Float32Array> {
  const v = tensorValues(raw);
  if (v instanceof Float32Array) return E.right(v);
  if (v instanceof Float64Array) return E.right(Float32Array.from(v));
  return E.left(configInvalid(`tensor "${name}"`, `dtype ${raw.dtype} is not a float type`));
}
