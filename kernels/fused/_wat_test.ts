import { assertEquals, assertStringIncludes } from "../../tests/assert.ts";
import { assembleWat } from "./_wat.ts";

const SOURCE = `(module
  (import "env" "memory" (memory 1))
  ;; Σ p[0..n) four lanes at a time (n a multiple of 4), plus a call and an if
  (func $sum (export "sum") (param $p i32) (param $n i32) (result f32)
      (local $acc v128) (local $i i32)
    (block $done (loop $top
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (f32x4.add (local.get $acc)
        (v128.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $top)))
    (call $half (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc))))))
  (func $half (param $x f32) (result f32) (f32.mul (local.get $x) (f32.const 0.5)))
  (func $sign (export "sign") (param $x i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $x) (i32.const 0))
      (then (i32.const -1))
      (else (i32.const 1)))))`;

Deno.test("assembleWat() builds a module whose loops, calls, ifs and SIMD lanes run", () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const instance = new WebAssembly.Instance(new WebAssembly.Module(assembleWat(SOURCE)), {
    env: { memory },
  });
  new Float32Array(memory.buffer, 16, 8).set([1, 2, 3, 4, 5, 6, 7, 8.5]);
  const { sum, sign } = instance.exports as {
    sum(p: number, n: number): number;
    sign(x: number): number;
  };
  assertEquals(sum(16, 8), 18.25);
  assertEquals([sign(-5), sign(0), sign(7)], [-1, 1, 1]);
});

function failure(source: string): string {
  try {
    assembleWat(source);
  } catch (e: unknown) {
    return e instanceof Error ? e.message : String(e);
  }
  return "(assembled)";
}

Deno.test("assembleWat() names what it cannot assemble", () => {
  assertStringIncludes(
    failure(`(module (func $f (f32.frobnicate (f32.const 1))))`),
    "unknown instruction f32.frobnicate",
  );
  assertStringIncludes(failure(`(module (func $f (br $nowhere)))`), "unknown label $nowhere");
  assertStringIncludes(
    failure(`(module (func $f (param $a i32) (local $a f32)))`),
    "declares $a twice",
  );
});
