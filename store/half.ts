/**
 * 16-bit float conversions (IEEE binary16 "F16" and bfloat16 "BF16") to and
 * from `Float32Array`, done on the bit patterns so the result does not depend
 * on the host having `Float16Array`.
 *
 * Narrowing rounds to nearest, ties to even (as IEEE 754 and PyTorch do);
 * widening is exact. NaN stays NaN (quiet, sign kept), ±Infinity stays
 * ±Infinity, values beyond the F16 range round to ±Infinity, and F16
 * subnormals are produced and read exactly.
 *
 * @module
 */

/**
 * Bits of the F16 nearest (ties to even) to one F32 value given by its bits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f32BitsToF16Bits } from "./half.ts";
 * const bits = new Uint32Array(new Float32Array([1]).buffer)[0]!;
 * assert(f32BitsToF16Bits(bits) === 0x3c00);
 * ```
 */
export function f32BitsToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) {
    // Keep the top payload bits and force the quiet bit so a NaN never becomes Infinity.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const halfExp = exp - 112; // rebias 127 → 15
  if (halfExp >= 31) return sign | 0x7c00;
  if (halfExp >= 1) {
    let h = sign | (halfExp << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1;
    return h;
  }
  // Subnormal F16 (or zero): value = m · 2^(exp-150), unit 2^-24, so shift by 14 - halfExp.
  const shift = 14 - halfExp;
  if (shift > 24) return sign; // below half the smallest subnormal: rounds to ±0
  const m = mant | 0x800000;
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
  return sign | h;
}

/**
 * F32 bits of one F16 value (exact).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f16BitsToF32Bits } from "./half.ts";
 * assert(f16BitsToF32Bits(0x3c00) === 0x3f800000);
 * ```
 */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalise the mantissa; each shift lowers the F32 exponent by one.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e -= 1;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/**
 * Bits of the BF16 nearest (ties to even) to one F32 value given by its bits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f32BitsToBf16Bits } from "./half.ts";
 * assert(f32BitsToBf16Bits(0x3f800000) === 0x3f80);
 * ```
 */
export function f32BitsToBf16Bits(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) {
    // Truncating a NaN could clear every payload bit left; set the quiet bit.
    return ((u >>> 16) | 0x40) & 0xffff;
  }
  const lsb = (u >>> 16) & 1;
  return ((u + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Reinterprets a Float32Array's elements as their bits, without copying. */
function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/**
 * Rounds every F32 value to F16 (ties to even); returns the F16 bit patterns.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { float32ToF16 } from "./half.ts";
 * assert(float32ToF16(new Float32Array([65520]))[0] === 0x7c00); // rounds to Infinity
 * ```
 */
export function float32ToF16(values: Float32Array): Uint16Array {
  const src = bitsOf(values);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16Bits(src[i]!);
  return out;
}

/**
 * Widens F16 bit patterns to F32 values (exact).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f16ToFloat32 } from "./half.ts";
 * assert(f16ToFloat32(new Uint16Array([0x0001]))[0] === 2 ** -24);
 * ```
 */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const dst = bitsOf(out);
  for (let i = 0; i < bits.length; i++) dst[i] = f16BitsToF32Bits(bits[i]!);
  return out;
}

/**
 * Rounds every F32 value to BF16 (ties to even); returns the BF16 bit patterns.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { float32ToBf16 } from "./half.ts";
 * assert(float32ToBf16(new Float32Array([-2]))[0] === 0xc000);
 * ```
 */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const src = bitsOf(values);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16Bits(src[i]!);
  return out;
}

/**
 * Widens BF16 bit patterns to F32 values (exact: BF16 is the top half of F32).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bf16ToFloat32 } from "./half.ts";
 * assert(bf16ToFloat32(new Uint16Array([0x3f80]))[0] === 1);
 * ```
 */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const dst = bitsOf(out);
  for (let i = 0; i < bits.length; i++) dst[i] = (bits[i]! << 16) >>> 0;
  return out;
}
