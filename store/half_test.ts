import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  bf16ToFloat32,
  f16BitsToF32Bits,
  f16ToFloat32,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  float32ToBf16,
  float32ToF16,
} from "./half.ts";

function bitsOfF32(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

function f32OfBits(u: number): number {
  return new Float32Array(new Uint32Array([u]).buffer)[0]!;
}

Deno.test("float32ToF16() matches known bit patterns, ties to even, subnormals, inf, nan", () => {
  const cases: Array<[number, number]> = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0, 0x0000],
    [-0, 0x8000],
    [65504, 0x7bff], // largest finite F16
    [65519, 0x7bff], // just below the midpoint to Infinity
    [65520, 0x7c00], // the midpoint: ties to even rounds to Infinity
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half the smallest subnormal: tie to even gives zero
    [3 * 2 ** -25, 0x0002], // 1.5 subnormal units: tie to even gives 2
    [1 + 2 ** -11, 0x3c00], // tie between 1 and the next F16, even is 1
    [1 + 3 * 2 ** -11, 0x3c02], // tie, even is upward
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [1e-10, 0x0000],
  ];
  const got = Array.from(float32ToF16(new Float32Array(cases.map((c) => c[0]))));
  assertEquals(got, cases.map((c) => c[1]));
  // The F32 just above 2^-25 is no longer a tie: it rounds up to the smallest subnormal.
  assertEquals(f32BitsToF16Bits(bitsOfF32(2 ** -25) + 1), 0x0001);
  assertEquals(f32BitsToF16Bits(0x7fc00000), 0x7e00);
  assertEquals(f32BitsToF16Bits(0x7f800001) & 0x7e00, 0x7e00); // signalling NaN stays NaN
});

Deno.test("f16ToFloat32() widens every F16 pattern exactly and narrowing gives it back", () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const wide = f16ToFloat32(all);
  const back = float32ToF16(wide);
  let mismatches = 0;
  for (let i = 0; i < 65536; i++) {
    const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (isNaN) {
      if (!Number.isNaN(wide[i]!)) mismatches++;
      if ((back[i]! & 0x8000) !== (i & 0x8000)) mismatches++;
    } else {
      if (back[i] !== i) mismatches++;
      // Cross-check against V8's own binary16 rounding of the widened value.
      if (Math.f16round(wide[i]!) !== wide[i]!) mismatches++;
    }
  }
  assertEquals(mismatches, 0);
  assertEquals(wide[0x0001], 2 ** -24);
  assertEquals(wide[0x03ff], 1023 * 2 ** -24);
  assertEquals(wide[0x7bff], 65504);
  assertEquals(f16BitsToF32Bits(0xfc00), 0xff800000);
});

Deno.test("float32ToF16() agrees with Math.f16round on 200000 F32 bit patterns", () => {
  // A fixed LCG over the whole 32-bit space covers normals, subnormals and specials.
  let s = 12345;
  let mismatches = 0;
  for (let i = 0; i < 200000; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const x = f32OfBits(s);
    const mine = f16ToFloat32(new Uint16Array([f32BitsToF16Bits(s)]))[0]!;
    const ref = Math.f16round(x);
    if (Number.isNaN(ref) ? !Number.isNaN(mine) : !Object.is(mine, ref)) mismatches++;
  }
  assertEquals(mismatches, 0);
});

Deno.test("float32ToBf16() rounds to nearest even and keeps inf and nan", () => {
  const cases: Array<[number, number]> = [
    [0x3f800000, 0x3f80], // 1
    [0x40490fdb, 0x4049], // pi rounds down
    [0x3f808000, 0x3f80], // tie, even stays
    [0x3f818000, 0x3f82], // tie, odd rounds up
    [0x3f808001, 0x3f81], // just above the tie
    [0x7f7fffff, 0x7f80], // largest F32 rounds to Infinity
    [0xff800000, 0xff80], // -Infinity
    [0x7fc00000, 0x7fc0], // quiet NaN
    [0x7f800001, 0x7fc0], // signalling NaN whose payload is all below bit 16
    [0x80000000, 0x8000], // -0
  ];
  assertEquals(cases.map((c) => f32BitsToBf16Bits(c[0])), cases.map((c) => c[1]));
  const values = new Float32Array(cases.map((c) => f32OfBits(c[0])));
  assertEquals(Array.from(float32ToBf16(values)), cases.map((c) => c[1]));
  const wide = bf16ToFloat32(new Uint16Array([0x3f80, 0xc000, 0x4049, 0x0001]));
  assertEquals(Array.from(wide), [1, -2, f32OfBits(0x40490000), f32OfBits(0x00010000)]);
});
