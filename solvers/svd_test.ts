import fc from "fast-check";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import { createRng } from "../base/prng.ts";
import { type Svd, svd, type SvdFailed, svdShortSide } from "./svd.ts";
import { orthonormalise } from "../tests/orthonormal.ts";

function uniform(n: number, seed: number): Float64Array {
  const rng = createRng(seed);
  return Float64Array.from({ length: n }, () => 2 * rng.nextFloat() - 1);
}

/** A random n×k (k ≤ n) matrix with orthonormal columns, by twice-repeated Gram–Schmidt. */
function orthonormal(n: number, k: number, seed: number): Float64Array {
  return orthonormalise(uniform(n * k, seed), n, k);
}

/** U·diag(s)·Vᵀ with random orthonormal U (m×k), V (n×k): a matrix with known singular values. */
function withSingularValues(
  m: number,
  n: number,
  s: readonly number[],
  seed: number,
): Float64Array {
  const k = s.length;
  const u = orthonormal(m, k, seed);
  const v = orthonormal(n, k, seed + 1);
  const a = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let x = 0;
      for (let q = 0; q < k; q++) x += u[i * k + q]! * s[q]! * v[j * k + q]!;
      a[i * n + j] = x;
    }
  }
  return a;
}

/** ‖a‖_F, scaled first so that squares of 1e200 do not overflow. */
function frobenius(a: ArrayLike<number>): number {
  let big = 0;
  for (let i = 0; i < a.length; i++) big = Math.max(big, Math.abs(a[i]!));
  if (big === 0) return 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! / big) ** 2;
  return big * Math.sqrt(s);
}

/** ‖A − U·Σ·Vᵀ‖_F / ‖A‖_F (the plain ‖·‖ when A = 0). */
function reconstructionError(a: ArrayLike<number>, r: Svd): number {
  const { rows, cols, k, u, s, v } = r;
  const diff = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let x = 0;
      for (let q = 0; q < k; q++) x += u[i * k + q]! * s[q]! * v[j * k + q]!;
      diff[i * cols + j] = a[i * cols + j]! - x;
    }
  }
  const norm = frobenius(a);
  return frobenius(diff) / (norm === 0 ? 1 : norm);
}

/** max |QᵀQ − I| for an n×k row-major Q. */
function orthogonalityError(q: Float64Array, n: number, k: number): number {
  let worst = 0;
  for (let p = 0; p < k; p++) {
    for (let r = 0; r < k; r++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += q[i * k + p]! * q[i * k + r]!;
      worst = Math.max(worst, Math.abs(d - (p === r ? 1 : 0)));
    }
  }
  return worst;
}

function decomposed(a: ArrayLike<number>, rows: number, cols: number): Svd {
  const r = svd(a, rows, cols);
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
}

/** The invariants every decomposition must satisfy, with a tolerance scaled by the size. */
function assertValid(a: ArrayLike<number>, r: Svd, label: string): void {
  const tol = 1e-14 * Math.max(r.rows, r.cols, 10);
  assertEquals(r.k, Math.min(r.rows, r.cols), `${label}: k`);
  assertEquals(r.u.length, r.rows * r.k, `${label}: U size`);
  assertEquals(r.v.length, r.cols * r.k, `${label}: V size`);
  const rec = reconstructionError(a, r);
  assert(rec <= tol, `${label}: ‖A − UΣVᵀ‖/‖A‖ = ${rec}`);
  const ou = orthogonalityError(r.u, r.rows, r.k);
  assert(ou <= tol, `${label}: |UᵀU − I| = ${ou}`);
  const ov = orthogonalityError(r.v, r.cols, r.k);
  assert(ov <= tol, `${label}: |VᵀV − I| = ${ov}`);
  for (let q = 0; q < r.k; q++) {
    assert(r.s[q]! >= 0, `${label}: σ${q} = ${r.s[q]} is negative`);
    if (q > 0) assert(r.s[q]! <= r.s[q - 1]!, `${label}: σ not descending at ${q}`);
  }
}

Deno.test("svd() of random matrices of any shape: UΣVᵀ = A, orthonormal factors, σ sorted", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 14 }),
      fc.integer({ min: 1, max: 14 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.constantFrom(1e-200, 1e-3, 1, 1e5, 1e200),
      (rows, cols, seed, scale) => {
        const a = uniform(rows * cols, seed).map((x) => x * scale);
        assertValid(a, decomposed(a, rows, cols), `${rows}×${cols} seed ${seed} scale ${scale}`);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("svd() at GaLore's sizes: square, wide and tall", () => {
  for (const [rows, cols] of [[64, 64], [48, 130], [130, 48]] as const) {
    const a = uniform(rows * cols, rows * 1000 + cols);
    assertValid(a, decomposed(a, rows, cols), `${rows}×${cols}`);
  }
});

Deno.test("svd() recovers known singular values at condition number 1e10", () => {
  const k = 20;
  const s = Array.from({ length: k }, (_, i) => Math.pow(10, -10 * i / (k - 1)));
  for (const [rows, cols] of [[35, 20], [20, 35], [20, 20]] as const) {
    const a = withSingularValues(rows, cols, s, 11 + rows);
    const r = decomposed(a, rows, cols);
    assertValid(a, r, `${rows}×${cols}`);
    // Backward stability: errors of order ε‖A‖ (the input itself was rounded to that level).
    s.forEach((x, i) => {
      const err = Math.abs(r.s[i]! - x);
      assert(err <= 1e-14, `${rows}×${cols}: σ${i} = ${r.s[i]}, expected ${x} (error ${err})`);
    });
    // The largest singular pairs are well separated: U and V match the construction up to sign.
    const u = orthonormal(rows, k, 11 + rows);
    let d = 0;
    for (let i = 0; i < rows; i++) d += u[i * k]! * r.u[i * k]!;
    assert(Math.abs(Math.abs(d) - 1) < 1e-12, `${rows}×${cols}: first left vector, |u·u'| = ${d}`);
  }
});

Deno.test("svd() of rank-deficient matrices: zero singular values, factors still orthonormal", () => {
  const cases: [string, number, number, number[]][] = [
    ["rank 3 of 30×20", 30, 20, [5, 2, 0.5]],
    ["rank 2 of 12×40", 12, 40, [1, 1]],
    ["rank 1 of 25×25", 25, 25, [3]],
  ];
  for (const [label, rows, cols, s] of cases) {
    const a = withSingularValues(rows, cols, s, 7);
    const r = decomposed(a, rows, cols);
    assertValid(a, r, label);
    s.forEach((x, i) => assert(Math.abs(r.s[i]! - x) <= 1e-13 * s[0]!, `${label}: σ${i}`));
    for (let i = s.length; i < r.k; i++) {
      assert(r.s[i]! <= 1e-14 * s[0]!, `${label}: σ${i} = ${r.s[i]} should vanish`);
    }
  }
  // Exact zeros, exactly repeated columns and the zero matrix take the completion path.
  const zeros = new Float64Array(6 * 4);
  const zr = decomposed(zeros, 6, 4);
  assertValid(zeros, zr, "zero 6×4");
  assertEquals([...zr.s], [0, 0, 0, 0]);
  const repeated = Float64Array.from({ length: 5 * 3 }, (_, i) => [1, 1, 0][i % 3]! * (i + 1));
  assertValid(repeated, decomposed(repeated, 5, 3), "repeated and zero columns");
});

Deno.test("svd() of 1×n and n×1 matrices: σ is the norm, the vector its direction", () => {
  const x = [3, -4, 12];
  for (const [rows, cols] of [[1, 3], [3, 1]] as const) {
    const r = decomposed(x, rows, cols);
    assertValid(x, r, `${rows}×${cols}`);
    assert(Math.abs(r.s[0]! - 13) < 1e-14, `σ = ${r.s[0]}`);
    const long = rows === 1 ? r.v : r.u;
    const short = rows === 1 ? r.u : r.v;
    assert(Math.abs(Math.abs(short[0]!) - 1) < 1e-15);
    x.forEach((xi, i) => assert(Math.abs(long[i]! * short[0]! - xi / 13) < 1e-15));
  }
  const one = decomposed([-2], 1, 1);
  assertEquals([...one.s], [2]);
  assertEquals(one.u[0]! * one.v[0]!, -1);
});

function failure<A>(r: E.Either<SvdFailed, A>): SvdFailed {
  if (E.isRight(r)) throw new Error("expected a failure");
  return r.left;
}

Deno.test("svd() refuses non-finite entries, bad shapes, and stops at the sweep limit", () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const a = uniform(12, 1);
    a[5] = bad;
    assertEquals(failure(svd(a, 3, 4)).reason, "non-finite");
    assertEquals(failure(svdShortSide(a, 4, 3)).reason, "non-finite");
  }
  assertEquals(failure(svd(new Float64Array(5), 2, 3)).reason, "bad-shape");
  assertEquals(failure(svd(new Float64Array(0), 0, 3)).reason, "bad-shape");
  const a = uniform(30 * 30, 3);
  assertEquals(failure(svd(a, 30, 30, { maxSweeps: 1 })).reason, "no-convergence");
  assert(E.isRight(svd(a, 30, 30)));
});

Deno.test("svdShortSide() gives svd()'s values and the shorter side's vectors", () => {
  for (const [rows, cols] of [[9, 17], [17, 9], [10, 10]] as const) {
    const a = uniform(rows * cols, 5 + rows);
    const full = decomposed(a, rows, cols);
    const r = svdShortSide(a, rows, cols);
    if (E.isLeft(r)) throw new Error(r.left.message);
    const short = r.right;
    assertEquals(short.side, rows < cols ? "left" : "right");
    assertEquals([...short.s], [...full.s]);
    // The same arithmetic without the accumulated rotations: identical vectors.
    assertEquals([...short.vectors], [...(rows < cols ? full.u : full.v)]);
  }
});
