/**
 * WebAssembly text of the row primitives behind the softmax kernels
 * (cross-entropy over the vocabulary, attention's causal softmax and its
 * gradient): max, Σexp, scaled exp, fills and dot products. Assembled with
 * ./_simd_layers.ts into one module by ./_simd.ts. Private to `kernels/fused/`.
 *
 * @module
 */
import {
  at,
  exp4,
  EXP_LOCALS,
  EXP_SETUP,
  get,
  initAcc,
  loop,
  LOOP_LOCALS,
  MIN_F32,
  reduce,
} from "./_simd_macros.ts";

/** The functions, as module fields. */
export function softmaxFunctions(): string {
  return `
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

  (func $sumSquares (export "sumSquares") (param $p i32) (param $n i32) (result f32)
    (call $dot (local.get $p) (local.get $p) (local.get $n)))

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
`;
}
