/**
 * WebAssembly text of the layer kernels: SwiGLU forward and backward, RMSNorm
 * forward and backward, RoPE, AdamW. Assembled with ./_simd_softmax.ts (whose
 * $fill they call) into one module by ./_simd.ts. Private to `kernels/fused/`.
 *
 * @module
 */
import {
  at,
  exp4,
  EXP_LOCALS,
  EXP_SETUP,
  f4,
  get,
  initAcc,
  loop,
  LOOP_LOCALS,
  reduce,
} from "./_simd_macros.ts";

/** The functions, as module fields. */
export function layerFunctions(): string {
  return `
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

  ;; The formula of ../ops/adamw_rule.ts, its scalars derived there (omb = 1 − b):
  ;; g' = gs·g; m' = b1·m + omb1·g'; v' = b2·v + omb2·g'²;
  ;; p' = p·decay − stepSize·m'/(√(v'·vCorrection) + eps)
  (func $adamw (export "adamw") (param $p i32) (param $g i32) (param $m i32) (param $v i32)
      (param $op i32) (param $om i32) (param $ov i32) (param $n i32) (param $gs f32) (param $b1 f32)
      (param $omb1 f32) (param $b2 f32) (param $omb2 f32) (param $eps f32) (param $decay f32)
      (param $stepSize f32) (param $vCorrection f32)
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
          (f32x4.add (f32x4.sqrt (f32x4.mul (local.get $vy) (f32x4.splat (local.get $vCorrection))))
                     (f32x4.splat (local.get $eps))))
          (f32x4.splat (local.get $stepSize)))))
      ${l.st(at("$om"), "(local.get $vx)")}
      ${l.st(at("$ov"), "(local.get $vy)")}
      ${l.st(at("$op"), "(local.get $vk)")}`)
  })
`;
}
