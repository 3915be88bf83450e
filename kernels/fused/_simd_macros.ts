/**
 * Building blocks of the WebAssembly text in ./_simd_softmax.ts and
 * ./_simd_layers.ts: an inline f32x4 exp, and loops that run 4 lanes at a
 * time, then a scalar tail through the same lane code. Private to
 * `kernels/fused/`.
 *
 * @module
 */

/** A v128 constant of four equal floats. */
export const f4 = (x: number): string => `(v128.const f32x4 ${x} ${x} ${x} ${x})`;
/** `(local.get name)`. */
export const get = (name: string): string => `(local.get ${name})`;

/** The constants of {@link exp4}, as v128 locals set once per call (see {@link EXP_SETUP}). */
const EXP_CONSTANTS: readonly (readonly [string, number])[] = [
  ["$eHi", 88],
  ["$eLo", -87.33],
  ["$eLog2e", 1.4426950408889634],
  ["$eMagic", 12582912], // 1.5·2^23
  ["$eLn2Hi", 0.693359375],
  ["$eLn2Lo", -2.12194440e-4],
  ["$eP5", 1.9875691500e-4],
  ["$eP4", 1.3981999507e-3],
  ["$eP3", 8.3334519073e-3],
  ["$eP2", 4.1665795894e-2],
  ["$eP1", 1.6666665459e-1],
  ["$eP0", 5.0000001201e-1],
  ["$eOne", 1],
];

/**
 * Locals and setup of {@link exp4}. V8 rebuilds a v128.const from immediates each
 * time it is used (about 4 instructions), so constants inside a loop cost more
 * than the arithmetic; locals hold them in registers or one stack load away.
 */
export const EXP_LOCALS = EXP_CONSTANTS.map(([n]) => `(local ${n} v128)`).join(" ") +
  " (local $eBias v128)";
export const EXP_SETUP = EXP_CONSTANTS.map(([n, v]) => `(local.set ${n} ${f4(v)})`).join("\n") +
  // bits(1.5·2^23) − 127: subtracting it from bits(k + 1.5·2^23) leaves k + 127.
  "(local.set $eBias (v128.const i32x4 0x4B3FFF81 0x4B3FFF81 0x4B3FFF81 0x4B3FFF81))";

/**
 * Statements that replace v128 local `v` by exp(v), lane-wise, with temporaries
 * `k` and `p` (v128). Cephes' expf: x = k·ln2 + r with |r| ≤ ln2/2, a degree-5
 * polynomial for e^r, 2^k built in the exponent bits; ~1 ulp in float32. k is
 * rounded by adding 1.5·2^23 (the float's low mantissa bits then hold k), which
 * is cheaper in V8's x64 code than f32x4.nearest plus i32x4.trunc_sat_f32x4_s.
 */
export function exp4(v: string, k: string, p: string): string {
  const c = (name: string): string => get(name);
  // relaxed_madd(a, b, c) = a·b + c, fused where the CPU has FMA (x64 with FMA3, arm64).
  const madd = (a: string, b: string, d: string): string => `(f32x4.relaxed_madd ${a} ${b} ${d})`;
  const nmadd = (a: string, b: string, d: string): string => `(f32x4.relaxed_nmadd ${a} ${b} ${d})`;
  return `
    (local.set ${v} (f32x4.pmax (f32x4.pmin ${get(v)} ${c("$eHi")}) ${c("$eLo")}))
    (local.set ${p} ${madd(get(v), c("$eLog2e"), c("$eMagic"))})
    (local.set ${k} (f32x4.sub ${get(p)} ${c("$eMagic")}))
    (local.set ${v} ${nmadd(get(k), c("$eLn2Lo"), nmadd(get(k), c("$eLn2Hi"), get(v)))})
    (local.set ${k} (i32x4.shl (i32x4.sub ${get(p)} ${c("$eBias")}) (i32.const 23)))
    (local.set ${p} ${madd(c("$eP5"), get(v), c("$eP4"))})
    (local.set ${p} ${madd(get(p), get(v), c("$eP3"))})
    (local.set ${p} ${madd(get(p), get(v), c("$eP2"))})
    (local.set ${p} ${madd(get(p), get(v), c("$eP1"))})
    (local.set ${p} ${madd(get(p), get(v), c("$eP0"))})
    (local.set ${p} (f32x4.add ${madd(get(p), `(f32x4.mul ${get(v)} ${get(v)})`, get(v))} ${
    c("$eOne")
  }))
    (local.set ${v} (f32x4.mul ${get(p)} ${get(k)}))`;
}

/** How a loop body reads, writes and reduces: 4 lanes, or lane 0 of a 1-element tail. */
interface Lanes {
  /** A v128 expression loading at the byte address expression `addr`. */
  ld(addr: string): string;
  /** A statement storing lane(s) of v128 expression `v` at `addr`. */
  st(addr: string, v: string): string;
  /** A statement folding v128 expression `v` into accumulator `acc` with `op` (add | max). */
  fold(acc: string, v: string, op: "add" | "max"): string;
}

const VECTOR: Lanes = {
  ld: (a) => `(v128.load ${a})`,
  st: (a, v) => `(v128.store ${a} ${v})`,
  // pmax is one x64 instruction; max's NaN rules cost several (no NaNs reach here).
  fold: (acc, v, op) =>
    `(local.set ${acc}v (f32x4.${op === "max" ? "pmax" : op} (local.get ${acc}v) ${v}))`,
};

const SCALAR: Lanes = {
  ld: (a) => `(f32x4.splat (f32.load ${a}))`,
  st: (a, v) => `(f32.store ${a} (f32x4.extract_lane 0 ${v}))`,
  fold: (acc, v, op) =>
    `(local.set ${acc}s (f32.${op} (local.get ${acc}s) (f32x4.extract_lane 0 ${v})))`,
};

/**
 * A loop over element offsets `$o` (bytes) of `n` floats: 4 at a time, then
 * one at a time. `body` writes the same code for both using the lanes given.
 */
export function loop(id: string, n: string, body: (l: Lanes) => string): string {
  return `
    (local.set $o (i32.const 0))
    (local.set $end4 (i32.shl (i32.and ${n} (i32.const -4)) (i32.const 2)))
    (local.set $end (i32.shl ${n} (i32.const 2)))
    (block $${id}vb (loop $${id}vl
      (br_if $${id}vb (i32.ge_u (local.get $o) (local.get $end4)))
      ${body(VECTOR)}
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $${id}vl)))
    (block $${id}sb (loop $${id}sl
      (br_if $${id}sb (i32.ge_u (local.get $o) (local.get $end)))
      ${body(SCALAR)}
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $${id}sl)))`;
}

/** Byte address `ptr + $o`. */
export const at = (ptr: string): string => `(i32.add (local.get ${ptr}) (local.get $o))`;

/** Locals every loop needs, plus v128 temporaries and accumulators (`$accv`, `$accs`). */
export const LOOP_LOCALS = `(local $o i32) (local $end4 i32) (local $end i32)
  (local $vx v128) (local $vy v128) (local $vk v128) (local $vq v128) (local $vt v128)
  (local $accv v128) (local $accs f32) (local $acc2v v128) (local $acc2s f32)`;

/** Sets accumulator `acc` (v and s halves) to `init`. */
export const initAcc = (acc: string, init: number): string =>
  `(local.set ${acc}v ${f4(init)}) (local.set ${acc}s (f32.const ${init}))`;

/** f32 expression: the fold of the 4 lanes of `${acc}v` and `${acc}s`. */
export function reduce(acc: string, op: "add" | "max"): string {
  const lane = (i: number): string => `(f32x4.extract_lane ${i} (local.get ${acc}v))`;
  return `(f32.${op} (f32.${op} (f32.${op} ${lane(0)} ${lane(1)}) (f32.${op} ${lane(2)} ${lane(3)}))
                (local.get ${acc}s))`;
}

/** The fold start of a max. */
export const MIN_F32 = -3.4e38;
