/**
 * The fused kernels' inner loops, hand-written in WebAssembly SIMD (f32x4)
 * and run on the wasm backend's own memory, so they read and write tensors in
 * place. Private to `kernels/fused/`.
 *
 * Why wasm and not JavaScript: measured here, a JavaScript loop over a
 * Float32Array costs ~2 ns per element and `Math.exp` ~20 ns, so the exp-heavy
 * kernels (softmax cross-entropy over the vocabulary, attention's softmax,
 * SwiGLU's sigmoid) would cost more than the composite kernels they replace.
 *
 * Every pointer is a byte offset into the memory; every count is in floats.
 * Loops run 4 lanes at a time, then a scalar tail that runs the same lane
 * code on one element (for any n, including odd n).
 *
 * @module
 */
import { assembleWat } from "./_wat.ts";

/** The exports of the module below. */
export interface SimdKernels {
  /** max of p[0..n) (−3.4e38 when n = 0). */
  max(p: number, n: number): number;
  /** Σ exp(src[i] − shift) over i < n; writes nothing. */
  sumExp(src: number, n: number, shift: number): number;
  /** dst[i] = a·exp(src[i] − shift) (dst may be src); returns Σ exp(src[i] − shift). */
  expScaled(src: number, dst: number, n: number, shift: number, a: number): number;
  /** dst[i] = a·src[i] (dst may be src). */
  scale(dst: number, src: number, n: number, a: number): void;
  /** dst[i] = value. */
  fill(dst: number, n: number, value: number): void;
  /** out[r] = Σ_i a[r·stride + i]·b[r·stride + i] for r < rows, i < n; stride in bytes. */
  stridedDots(a: number, b: number, rows: number, n: number, stride: number, out: number): void;
  /**
   * A block of `rows` rows of a causal score matrix (row stride `ld` floats), whose
   * first row is query `first`: row r keeps its first first+r+1 entries, as their
   * softmax in place, and gets zeros up to `width`; rowMax[r] and rowSum[r] receive the
   * max and Σ exp(x − max).
   */
  causalSoftmax(
    s: number,
    rows: number,
    first: number,
    width: number,
    ld: number,
    rowMax: number,
    rowSum: number,
  ): void;
  /** The same block: s = exp(s − lse[r]) on each row's causal part, zeros up to `width`. */
  causalExp(s: number, rows: number, first: number, width: number, ld: number, lse: number): void;
  /**
   * The same block: dp = a·p·(dp − rowDot[r]) on each row's causal part, zeros up to
   * `width` (p and dp share the stride `ld`).
   */
  causalSoftmaxGrad(
    dp: number,
    p: number,
    rows: number,
    first: number,
    width: number,
    ld: number,
    rowDot: number,
    a: number,
  ): void;
  /** y = g·σ(g)·u over n elements. */
  swigluForward(g: number, u: number, y: number, n: number): void;
  /** dg = dy·u·σ(g)·(1 + g·(1 − σ(g))), du = dy·g·σ(g). */
  swigluBackward(dy: number, g: number, u: number, dg: number, du: number, n: number): void;
  /** Rows of h: rstd[r] = 1/√(mean(x²) + eps); y = x·rstd·w. */
  rmsNormForward(
    x: number,
    w: number,
    y: number,
    rstd: number,
    rows: number,
    h: number,
    eps: number,
  ): void;
  /** dx = r·dy·w − x·r³·Σ(dy·w·x)/h per row; dw = Σ_rows dy·x·r (overwritten). */
  rmsNormBackward(
    dy: number,
    x: number,
    w: number,
    rstd: number,
    dx: number,
    dw: number,
    rows: number,
    h: number,
  ): void;
  /**
   * x [bt rows of heads·2·half], position of row i = i mod t:
   * y₁ = x₁·c − sign·x₂·s, y₂ = x₂·c + sign·x₁·s (sign −1: the inverse rotation).
   */
  rope(
    x: number,
    cos: number,
    sin: number,
    y: number,
    bt: number,
    t: number,
    heads: number,
    half: number,
    sign: number,
  ): void;
  /** One AdamW update of n elements (outputs may be the inputs); see adamw in the source. */
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    outP: number,
    outM: number,
    outV: number,
    n: number,
    gradScale: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    decay: number,
    stepSize: number,
    invBias2: number,
  ): void;
}

const f4 = (x: number): string => `(v128.const f32x4 ${x} ${x} ${x} ${x})`;
const get = (name: string): string => `(local.get ${name})`;

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
const EXP_LOCALS = EXP_CONSTANTS.map(([n]) => `(local ${n} v128)`).join(" ") +
  " (local $eBias v128)";
const EXP_SETUP = EXP_CONSTANTS.map(([n, v]) => `(local.set ${n} ${f4(v)})`).join("\n") +
  // bits(1.5·2^23) − 127: subtracting it from bits(k + 1.5·2^23) leaves k + 127.
  "(local.set $eBias (v128.const i32x4 0x4B3FFF81 0x4B3FFF81 0x4B3FFF81 0x4B3FFF81))";

/**
 * Statements that replace v128 local `v` by exp(v), lane-wise, with temporaries
 * `k` and `p` (v128). Cephes' expf: x = k·ln2 + r with |r| ≤ ln2/2, a degree-5
 * polynomial for e^r, 2^k built in the exponent bits; ~1 ulp in float32. k is
 * rounded by adding 1.5·2^23 (the float's low mantissa bits then hold k), which
 * is cheaper in V8's x64 code than f32x4.nearest plus i32x4.trunc_sat_f32x4_s.
 */
function exp4(v: string, k: string, p: string): string {
  const c = (name: string): string => get(name);
  return `
    (local.set ${v} (f32x4.pmax (f32x4.pmin ${get(v)} ${c("$eHi")}) ${c("$eLo")}))
    (local.set ${p} (f32x4.add (f32x4.mul ${get(v)} ${c("$eLog2e")}) ${c("$eMagic")}))
    (local.set ${k} (f32x4.sub ${get(p)} ${c("$eMagic")}))
    (local.set ${v} (f32x4.sub (f32x4.sub ${get(v)} (f32x4.mul ${get(k)} ${c("$eLn2Hi")}))
                               (f32x4.mul ${get(k)} ${c("$eLn2Lo")})))
    (local.set ${k} (i32x4.shl (i32x4.sub ${get(p)} ${c("$eBias")}) (i32.const 23)))
    (local.set ${p} (f32x4.add (f32x4.mul ${c("$eP5")} ${get(v)}) ${c("$eP4")}))
    (local.set ${p} (f32x4.add (f32x4.mul ${get(p)} ${get(v)}) ${c("$eP3")}))
    (local.set ${p} (f32x4.add (f32x4.mul ${get(p)} ${get(v)}) ${c("$eP2")}))
    (local.set ${p} (f32x4.add (f32x4.mul ${get(p)} ${get(v)}) ${c("$eP1")}))
    (local.set ${p} (f32x4.add (f32x4.mul ${get(p)} ${get(v)}) ${c("$eP0")}))
    (local.set ${p} (f32x4.add (f32x4.add (f32x4.mul ${get(p)} (f32x4.mul ${get(v)} ${get(v)}))
                                          ${get(v)}) ${c("$eOne")}))
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
function loop(id: string, n: string, body: (l: Lanes) => string): string {
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
const at = (ptr: string): string => `(i32.add (local.get ${ptr}) (local.get $o))`;

/** Locals every loop needs, plus v128 temporaries and accumulators (`$accv`, `$accs`). */
const LOOP_LOCALS = `(local $o i32) (local $end4 i32) (local $end i32)
  (local $vx v128) (local $vy v128) (local $vk v128) (local $vq v128) (local $vt v128)
  (local $accv v128) (local $accs f32) (local $acc2v v128) (local $acc2s f32)`;

/** Sets accumulator `acc` (v and s halves) to `init`. */
const initAcc = (acc: string, init: number): string =>
  `(local.set ${acc}v ${f4(init)}) (local.set ${acc}s (f32.const ${init}))`;

/** f32 expression: the fold of the 4 lanes of `${acc}v` and `${acc}s`. */
function reduce(acc: string, op: "add" | "max"): string {
  const lane = (i: number): string => `(f32x4.extract_lane ${i} (local.get ${acc}v))`;
  return `(f32.${op} (f32.${op} (f32.${op} ${lane(0)} ${lane(1)}) (f32.${op} ${lane(2)} ${lane(3)}))
                (local.get ${acc}s))`;
}

const MIN_F32 = -3.4e38;

function source(): string {
  return `(module
  (import "env" "memory" (memory 1))

  (func $max (export "max") (param $p i32) (param $n i32) (result f32) ${LOOP_LOCALS}
    ${initAcc("$acc", MIN_F32)}
    ${loop("a", get("$n"), (l) => l.fold("$acc", l.ld(at("$p")), "max"))}
    ${reduce("$acc", "max")})

  (func $sumExp (export "sumExp") (param $p i32) (param $n i32) (param $shift f32) (result f32)
    ${LOOP_LOCALS} ${EXP_LOCALS}
    ${EXP_SETUP}
    ${initAcc("$acc", 0)}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vx (f32x4.sub ${l.ld(at("$p"))} (f32x4.splat (local.get $shift))))
      ${exp4("$vx", "$vk", "$vq")}
      ${l.fold("$acc", get("$vx"), "add")}`)
  }
    ${reduce("$acc", "add")})

  (func $expScaled (export "expScaled") (param $p i32) (param $dst i32) (param $n i32)
      (param $shift f32) (param $a f32) (result f32) ${LOOP_LOCALS} ${EXP_LOCALS}
    ${EXP_SETUP}
    ${initAcc("$acc", 0)}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vx (f32x4.sub ${l.ld(at("$p"))} (f32x4.splat (local.get $shift))))
      ${exp4("$vx", "$vk", "$vq")}
      ${l.fold("$acc", get("$vx"), "add")}
      ${l.st(at("$dst"), `(f32x4.mul ${get("$vx")} (f32x4.splat (local.get $a)))`)}`)
  }
    ${reduce("$acc", "add")})

  (func $scale (export "scale") (param $dst i32) (param $p i32) (param $n i32) (param $a f32)
    ${LOOP_LOCALS}
    ${
    loop("a", get("$n"), (l) =>
      l.st(at("$dst"), `(f32x4.mul ${l.ld(at("$p"))} (f32x4.splat (local.get $a)))`))
  })

  (func $fill (export "fill") (param $dst i32) (param $n i32) (param $a f32) ${LOOP_LOCALS}
    ${loop("a", get("$n"), (l) => l.st(at("$dst"), "(f32x4.splat (local.get $a))"))})

  (func $dot (param $a i32) (param $b i32) (param $n i32) (result f32) ${LOOP_LOCALS}
    ${initAcc("$acc", 0)}
    ${
    loop("a", get("$n"), (l) =>
      l.fold("$acc", `(f32x4.mul ${l.ld(at("$a"))} ${l.ld(at("$b"))})`, "add"))
  }
    ${reduce("$acc", "add")})

  (func $stridedDots (export "stridedDots") (param $a i32) (param $b i32) (param $rows i32)
      (param $n i32) (param $stride i32) (param $out i32) (local $r i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2)))
        (call $dot (local.get $a) (local.get $b) (local.get $n)))
      (local.set $a (i32.add (local.get $a) (local.get $stride)))
      (local.set $b (i32.add (local.get $b) (local.get $stride)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $next))))

  ;; Rows r < $rows of a block whose first row is query $first: length $first + r + 1.
  (func $causalSoftmax (export "causalSoftmax") (param $s i32) (param $rows i32) (param $first i32)
      (param $width i32) (param $ld i32) (param $rowMax i32) (param $rowSum i32)
      (local $r i32) (local $len i32) (local $m f32) (local $sum f32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $len (i32.add (i32.add (local.get $first) (local.get $r)) (i32.const 1)))
      (local.set $m (call $max (local.get $s) (local.get $len)))
      (local.set $sum (call $expScaled (local.get $s) (local.get $s) (local.get $len)
        (local.get $m) (f32.const 1)))
      (call $scale (local.get $s) (local.get $s) (local.get $len)
        (f32.div (f32.const 1) (local.get $sum)))
      (call $fill (i32.add (local.get $s) (i32.shl (local.get $len) (i32.const 2)))
        (i32.sub (local.get $width) (local.get $len)) (f32.const 0))
      (f32.store (i32.add (local.get $rowMax) (i32.shl (local.get $r) (i32.const 2))) (local.get $m))
      (f32.store (i32.add (local.get $rowSum) (i32.shl (local.get $r) (i32.const 2))) (local.get $sum))
      (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $next))))

  (func $causalExp (export "causalExp") (param $s i32) (param $rows i32) (param $first i32)
      (param $width i32) (param $ld i32) (param $lse i32) (local $r i32) (local $len i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $len (i32.add (i32.add (local.get $first) (local.get $r)) (i32.const 1)))
      (drop (call $expScaled (local.get $s) (local.get $s) (local.get $len)
        (f32.load (i32.add (local.get $lse) (i32.shl (local.get $r) (i32.const 2)))) (f32.const 1)))
      (call $fill (i32.add (local.get $s) (i32.shl (local.get $len) (i32.const 2)))
        (i32.sub (local.get $width) (local.get $len)) (f32.const 0))
      (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $next))))

  (func $softmaxGradRow (param $dp i32) (param $p i32) (param $n i32) (param $c f32) (param $a f32)
    ${LOOP_LOCALS}
    ${
    loop("a", get("$n"), (l) =>
      l.st(
        at("$dp"),
        `(f32x4.mul (f32x4.mul ${l.ld(at("$p"))} (f32x4.splat (local.get $a)))
                    (f32x4.sub ${l.ld(at("$dp"))} (f32x4.splat (local.get $c))))`,
      ))
  })

  (func $causalSoftmaxGrad (export "causalSoftmaxGrad") (param $dp i32) (param $p i32)
      (param $rows i32) (param $first i32) (param $width i32) (param $ld i32) (param $rowDot i32)
      (param $a f32) (local $r i32) (local $len i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $len (i32.add (i32.add (local.get $first) (local.get $r)) (i32.const 1)))
      (call $softmaxGradRow (local.get $dp) (local.get $p) (local.get $len)
        (f32.load (i32.add (local.get $rowDot) (i32.shl (local.get $r) (i32.const 2)))) (local.get $a))
      (call $fill (i32.add (local.get $dp) (i32.shl (local.get $len) (i32.const 2)))
        (i32.sub (local.get $width) (local.get $len)) (f32.const 0))
      (local.set $dp (i32.add (local.get $dp) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $p (i32.add (local.get $p) (i32.shl (local.get $ld) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $next))))

  (func $swigluForward (export "swigluForward") (param $g i32) (param $u i32) (param $y i32)
      (param $n i32) ${LOOP_LOCALS} ${EXP_LOCALS}
    ${EXP_SETUP}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vy ${l.ld(at("$g"))})
      (local.set $vx (f32x4.neg (local.get $vy)))
      ${exp4("$vx", "$vk", "$vq")}
      ;; silu(g) = g / (1 + e^(−g))
      (local.set $vx (f32x4.div (local.get $vy) (f32x4.add ${f4(1)} (local.get $vx))))
      ${l.st(at("$y"), `(f32x4.mul (local.get $vx) ${l.ld(at("$u"))})`)}`)
  })

  (func $swigluBackward (export "swigluBackward") (param $dy i32) (param $g i32) (param $u i32)
      (param $dg i32) (param $du i32) (param $n i32) ${LOOP_LOCALS} ${EXP_LOCALS}
    ${EXP_SETUP}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vy ${l.ld(at("$g"))})
      (local.set $vx (f32x4.neg (local.get $vy)))
      ${exp4("$vx", "$vk", "$vq")}
      (local.set $vx (f32x4.div ${f4(1)} (f32x4.add ${f4(1)} (local.get $vx)))) ;; σ(g)
      (local.set $vt (f32x4.mul (local.get $vy) (local.get $vx)))                ;; silu(g)
      (local.set $vk ${l.ld(at("$dy"))})
      ${l.st(at("$du"), "(f32x4.mul (local.get $vk) (local.get $vt))")}
      ;; σ(g)·(1 + g·(1 − σ(g))) = σ(g) + silu(g)·(1 − σ(g))
      ${
      l.st(
        at("$dg"),
        `(f32x4.mul (f32x4.mul (local.get $vk) ${l.ld(at("$u"))})
          (f32x4.add (local.get $vx) (f32x4.mul (local.get $vt) (f32x4.sub ${
          f4(1)
        } (local.get $vx)))))`,
      )
    }`)
  })

  (func $sumSquares (param $p i32) (param $n i32) (result f32) ${LOOP_LOCALS}
    ${initAcc("$acc", 0)}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vx ${l.ld(at("$p"))})
      ${l.fold("$acc", "(f32x4.mul (local.get $vx) (local.get $vx))", "add")}`)
  }
    ${reduce("$acc", "add")})

  ;; y = x·r·w over one row
  (func $scaleByWeight (param $x i32) (param $w i32) (param $y i32) (param $n i32) (param $r f32)
    ${LOOP_LOCALS}
    ${
    loop("a", get("$n"), (l) =>
      l.st(
        at("$y"),
        `(f32x4.mul (f32x4.mul ${l.ld(at("$x"))} (f32x4.splat (local.get $r))) ${l.ld(at("$w"))})`,
      ))
  })

  (func $rmsNormForward (export "rmsNormForward") (param $x i32) (param $w i32) (param $y i32)
      (param $rstd i32) (param $rows i32) (param $h i32) (param $eps f32) (local $i i32) (local $r f32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $r (f32.div (f32.const 1) (f32.sqrt (f32.add
        (f32.div (call $sumSquares (local.get $x) (local.get $h)) (f32.convert_i32_s (local.get $h)))
        (local.get $eps)))))
      (f32.store (i32.add (local.get $rstd) (i32.shl (local.get $i) (i32.const 2))) (local.get $r))
      (call $scaleByWeight (local.get $x) (local.get $w) (local.get $y) (local.get $h) (local.get $r))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $h) (i32.const 2))))
      (local.set $y (i32.add (local.get $y) (i32.shl (local.get $h) (i32.const 2))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))

  ;; Σ dy·w·x over one row
  (func $dot3 (param $a i32) (param $b i32) (param $c i32) (param $n i32) (result f32) ${LOOP_LOCALS}
    ${initAcc("$acc", 0)}
    ${
    loop("a", get("$n"), (l) =>
      l.fold(
        "$acc",
        `(f32x4.mul (f32x4.mul ${l.ld(at("$a"))} ${l.ld(at("$b"))}) ${l.ld(at("$c"))})`,
        "add",
      ))
  }
    ${reduce("$acc", "add")})

  ;; dx = r·dy·w − c·x; dw += r·dy·x over one row
  (func $rmsNormGradRow (param $dy i32) (param $x i32) (param $w i32) (param $dx i32) (param $dw i32)
      (param $n i32) (param $r f32) (param $c f32) ${LOOP_LOCALS}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vy (f32x4.mul ${l.ld(at("$dy"))} (f32x4.splat (local.get $r))))
      (local.set $vx ${l.ld(at("$x"))})
      ${
      l.st(
        at("$dx"),
        `(f32x4.sub (f32x4.mul (local.get $vy) ${l.ld(at("$w"))})
                    (f32x4.mul (local.get $vx) (f32x4.splat (local.get $c))))`,
      )
    }
      ${
      l.st(at("$dw"), `(f32x4.add ${l.ld(at("$dw"))} (f32x4.mul (local.get $vy) (local.get $vx)))`)
    }`)
  })

  (func $rmsNormBackward (export "rmsNormBackward") (param $dy i32) (param $x i32) (param $w i32)
      (param $rstd i32) (param $dx i32) (param $dw i32) (param $rows i32) (param $h i32)
      (local $i i32) (local $r f32) (local $c f32)
    (call $fill (local.get $dw) (local.get $h) (f32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $r (f32.load (i32.add (local.get $rstd) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $c (f32.div
        (f32.mul (f32.mul (f32.mul (local.get $r) (local.get $r)) (local.get $r))
                 (call $dot3 (local.get $dy) (local.get $w) (local.get $x) (local.get $h)))
        (f32.convert_i32_s (local.get $h))))
      (call $rmsNormGradRow (local.get $dy) (local.get $x) (local.get $w) (local.get $dx)
        (local.get $dw) (local.get $h) (local.get $r) (local.get $c))
      (local.set $dy (i32.add (local.get $dy) (i32.shl (local.get $h) (i32.const 2))))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $h) (i32.const 2))))
      (local.set $dx (i32.add (local.get $dx) (i32.shl (local.get $h) (i32.const 2))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))

  ;; one head: y1 = x1·c − x2·s, y2 = x2·c + x1·s (s already signed)
  (func $ropeHead (param $x i32) (param $c i32) (param $s i32) (param $y i32) (param $half i32)
      (param $sign f32) (local $hb i32) ${LOOP_LOCALS}
    (local.set $hb (i32.shl (local.get $half) (i32.const 2)))
    ${
    loop("a", get("$half"), (l) => `
      (local.set $vx ${l.ld(at("$x"))})
      (local.set $vy ${l.ld(`(i32.add ${at("$x")} (local.get $hb))`)})
      (local.set $vk ${l.ld(at("$c"))})
      (local.set $vq (f32x4.mul ${l.ld(at("$s"))} (f32x4.splat (local.get $sign))))
      ${
      l.st(
        at("$y"),
        "(f32x4.sub (f32x4.mul (local.get $vx) (local.get $vk)) (f32x4.mul (local.get $vy) (local.get $vq)))",
      )
    }
      ${
      l.st(
        `(i32.add ${at("$y")} (local.get $hb))`,
        "(f32x4.add (f32x4.mul (local.get $vy) (local.get $vk)) (f32x4.mul (local.get $vx) (local.get $vq)))",
      )
    }`)
  })

  (func $rope (export "rope") (param $x i32) (param $cos i32) (param $sin i32) (param $y i32)
      (param $bt i32) (param $t i32) (param $heads i32) (param $half i32) (param $sign f32)
      (local $i i32) (local $pos i32) (local $h i32) (local $rowBytes i32) (local $tab i32)
    (local.set $rowBytes (i32.shl (local.get $half) (i32.const 3)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $bt)))
      (local.set $tab (i32.shl (i32.mul (local.get $pos) (local.get $half)) (i32.const 2)))
      (local.set $h (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $h) (local.get $heads)))
        (call $ropeHead (local.get $x) (i32.add (local.get $cos) (local.get $tab))
          (i32.add (local.get $sin) (local.get $tab)) (local.get $y) (local.get $half) (local.get $sign))
        (local.set $x (i32.add (local.get $x) (local.get $rowBytes)))
        (local.set $y (i32.add (local.get $y) (local.get $rowBytes)))
        (local.set $h (i32.add (local.get $h) (i32.const 1)))
        (br $hl)))
      (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
      (if (i32.eq (local.get $pos) (local.get $t)) (then (local.set $pos (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))

  ;; g' = gs·g; m' = b1·m + omb1·g'; v' = b2·v + omb2·g'² (omb = 1 − b, rounded once);
  ;; p' = p·decay − stepSize·m'/(√(v'·invBias2) + eps)
  (func $adamw (export "adamw") (param $p i32) (param $g i32) (param $m i32) (param $v i32)
      (param $op i32) (param $om i32) (param $ov i32) (param $n i32) (param $gs f32) (param $b1 f32)
      (param $omb1 f32) (param $b2 f32) (param $omb2 f32) (param $eps f32) (param $decay f32) (param $step f32) (param $ib2 f32)
      ${LOOP_LOCALS}
    ${
    loop("a", get("$n"), (l) => `
      (local.set $vt (f32x4.mul ${l.ld(at("$g"))} (f32x4.splat (local.get $gs))))
      (local.set $vx (f32x4.add (f32x4.mul ${l.ld(at("$m"))} (f32x4.splat (local.get $b1)))
        (f32x4.mul (local.get $vt) (f32x4.splat (local.get $omb1)))))
      (local.set $vy (f32x4.add (f32x4.mul ${l.ld(at("$v"))} (f32x4.splat (local.get $b2)))
        (f32x4.mul (f32x4.mul (local.get $vt) (local.get $vt))
                   (f32x4.splat (local.get $omb2)))))
      (local.set $vk (f32x4.sub (f32x4.mul ${l.ld(at("$p"))} (f32x4.splat (local.get $decay)))
        (f32x4.mul (f32x4.div (local.get $vx)
          (f32x4.add (f32x4.sqrt (f32x4.mul (local.get $vy) (f32x4.splat (local.get $ib2))))
                     (f32x4.splat (local.get $eps))))
          (f32x4.splat (local.get $step)))))
      ${l.st(at("$om"), "(local.get $vx)")}
      ${l.st(at("$ov"), "(local.get $vy)")}
      ${l.st(at("$op"), "(local.get $vk)")}`)
  })
)`;
}

const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();
let compiled: WebAssembly.Module | undefined;

/** The kernels above instantiated on `memory` (once per memory). */
export function simdKernels(memory: WebAssembly.Memory): SimdKernels {
  let k = instances.get(memory);
  if (k === undefined) {
    compiled ??= new WebAssembly.Module(assembleWat(source()));
    const instance = new WebAssembly.Instance(compiled, { env: { memory } });
    k = instance.exports as unknown as SimdKernels;
    instances.set(memory, k);
  }
  return k;
}
