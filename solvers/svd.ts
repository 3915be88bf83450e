/**
 * Thin singular value decomposition in float64, for GaLore's projectors.
 *
 * Algorithm (Drmač–Veselić's preconditioned one-sided Jacobi): make the matrix tall (transpose a
 * wide one), factor it T·P = Q·R by Householder QR with column pivoting, then orthogonalise the
 * columns of X = Rᵀ by Hestenes rotations, X·J = Uₓ·Σ. With R = J·Σ·Uₓᵀ, T = (Q·J)·Σ·(P·Uₓ)ᵀ.
 * Pivoted QR leaves X nearly column-orthogonal with graded norms, so Jacobi needs a few sweeps
 * on an n×n matrix instead of many on the m×n one, and one-sided Jacobi keeps the small singular
 * values accurate where a Gram-matrix eigensolver would square the condition number.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { ext } from "../base/mod.ts";

/** A = U·diag(s)·Vᵀ with k = min(rows, cols). */
export interface Svd {
  /** Rows of the decomposed matrix. */
  readonly rows: number;
  /** Columns of the decomposed matrix. */
  readonly cols: number;
  /** min(rows, cols). */
  readonly k: number;
  /** rows × k, row-major, orthonormal columns. */
  readonly u: Float64Array;
  /** k singular values, descending, ≥ 0. */
  readonly s: Float64Array;
  /** cols × k, row-major, orthonormal columns. */
  readonly v: Float64Array;
  /** Jacobi sweeps it took (the last one rotates nothing). */
  readonly sweeps: number;
}

/** Why a decomposition was refused. */
export interface SvdFailed {
  /** Tells this failure apart from a successful result. */
  readonly _tag: "SvdFailed";
  /**
   * `non-finite`: a NaN or infinite entry; `no-convergence`: still rotating after `maxSweeps`;
   * `bad-shape`: the data's length is not rows × cols.
   */
  readonly reason: "non-finite" | "no-convergence" | "bad-shape";
  /** The same in words, with the entry or shape at fault. */
  readonly message: string;
}

/** Options of {@link svd}. */
export interface SvdOptions {
  /** Jacobi sweeps before giving up; default 60 (well-behaved inputs take under 10). */
  readonly maxSweeps?: number;
}

const EPS = 2.220446049250313e-16;
/** Below this a squared column norm (after scaling the input to max |a| = 1) is treated as 0. */
const NEGLIGIBLE = 1e-280;

function failed<A>(reason: SvdFailed["reason"], message: string): ext.Either<SvdFailed, A> {
  return E.left({ _tag: "SvdFailed", reason, message });
}

/**
 * The thin SVD of the row-major `rows`×`cols` matrix `a`.
 *
 * @returns `SvdFailed` for non-finite entries, a length that does not match the shape, or
 *   rotations still needed after `maxSweeps` sweeps.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { svd } from "./svd.ts";
 * const r = svd(Float64Array.from([3, 0, 0, -2]), 2, 2);
 * assert(r._tag === "Right" && r.right.s[0] === 3 && r.right.s[1] === 2);
 * ```
 */
export function svd(
  a: ArrayLike<number>,
  rows: number,
  cols: number,
  options: SvdOptions = {},
): ext.Either<SvdFailed, Svd> {
  return E.map((c: Core) => {
    const { m, n, k } = c;
    const left = applyQ(c.t, c.tau, c.rot!, m, n); // Q·J, column-major m×n
    const tall = new Float64Array(m * k);
    c.order.forEach((src, dst) => {
      for (let i = 0; i < m; i++) tall[i * k + dst] = left[src * m + i]!;
    });
    const short = shortVectors(c);
    return c.wide
      ? { rows, cols, k, u: short, s: c.s, v: tall, sweeps: c.sweeps }
      : { rows, cols, k, u: tall, s: c.s, v: short, sweeps: c.sweeps };
  })(decompose(a, rows, cols, options, "rotations"));
}

/** The singular vectors of the shorter side only (see {@link svdShortSide}). */
export interface ShortSideSvd {
  /** Rows of the decomposed matrix. */
  readonly rows: number;
  /** Columns of the decomposed matrix. */
  readonly cols: number;
  /** min(rows, cols). */
  readonly k: number;
  /** `left` (U, rows×k) when rows < cols, else `right` (V, cols×k). */
  readonly side: "left" | "right";
  /** k×k, row-major, orthonormal columns: U when `side` is left, V when right. */
  readonly vectors: Float64Array;
  /** k singular values, descending, ≥ 0. */
  readonly s: Float64Array;
  /** Jacobi sweeps it took (the last one rotates nothing). */
  readonly sweeps: number;
}

/**
 * The singular values and the singular vectors of the shorter dimension (left vectors of a wide
 * matrix, right vectors of a square or tall one), as GaLore's projectors need. The same
 * decomposition as {@link svd} without accumulating the rotations or forming Q: about half the
 * time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { svdShortSide } from "./svd.ts";
 * const r = svdShortSide(Float64Array.from([0, 2, 0, 1, 0, 0]), 2, 3);
 * assert(r._tag === "Right" && r.right.side === "left" && r.right.s[0] === 2);
 * ```
 */
export function svdShortSide(
  a: ArrayLike<number>,
  rows: number,
  cols: number,
  options: SvdOptions = {},
): ext.Either<SvdFailed, ShortSideSvd> {
  return E.map((c: Core): ShortSideSvd => ({
    rows,
    cols,
    k: c.k,
    side: c.wide ? "left" : "right",
    vectors: shortVectors(c),
    s: c.s,
    sweeps: c.sweeps,
  }))(decompose(a, rows, cols, options, "none"));
}

/** The shared part: T (tall) factored, Jacobi converged, columns sorted. */
interface Core {
  readonly wide: boolean;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** Reflectors below R, column-major m×n. */
  readonly t: Float64Array;
  readonly tau: Float64Array;
  readonly perm: Int32Array;
  /** Uₓ, column-major n×n, unsorted. */
  readonly x: Float64Array;
  /** The accumulated rotations J, when asked for. */
  readonly rot: Float64Array | undefined;
  /** Column of x (and of J) holding the i-th largest singular value. */
  readonly order: readonly number[];
  readonly s: Float64Array;
  readonly sweeps: number;
}

function decompose(
  a: ArrayLike<number>,
  rows: number,
  cols: number,
  options: SvdOptions,
  accumulate: "rotations" | "none",
): ext.Either<SvdFailed, Core> {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    return failed("bad-shape", `shape ${rows}×${cols} is not a positive matrix shape`);
  }
  if (a.length !== rows * cols) {
    return failed("bad-shape", `${a.length} values for a ${rows}×${cols} matrix`);
  }
  let amax = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i]!);
    if (!Number.isFinite(x)) return failed("non-finite", `entry ${i} is ${a[i]}`);
    if (x > amax) amax = x;
  }
  const wide = rows < cols;
  const m = wide ? cols : rows;
  const n = wide ? rows : cols;
  // Column-major T (m×n, m ≥ n), scaled so that no square over- or underflows.
  const scale = amax === 0 ? 1 : 1 / amax;
  const t = new Float64Array(m * n);
  if (wide) {
    for (let i = 0; i < t.length; i++) t[i] = a[i]! * scale; // row j of A is column j of Aᵀ
  } else {
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) t[j * m + i] = a[i * cols + j]! * scale;
    }
  }
  const { tau, perm } = pivotedQr(t, m, n);
  const x = transposedR(t, m, n);
  const rot = accumulate === "rotations" ? identity(n) : undefined;
  const sweeps = jacobi(x, rot, n, options.maxSweeps ?? 60);
  if (sweeps === undefined) {
    return failed("no-convergence", `Jacobi rotations still needed after the sweep limit`);
  }
  const sigma = new Float64Array(n);
  for (let j = 0; j < n; j++) sigma[j] = Math.sqrt(sumSquares(x, j * n, n));
  normaliseColumns(x, sigma, n);
  const order = Array.from({ length: n }, (_, j) => j).sort((p, q) => sigma[q]! - sigma[p]!);
  const s = Float64Array.from(order, (j) => sigma[j]! / scale);
  return E.right({ wide, m, n, k: n, t, tau, perm, x, rot, order, s, sweeps });
}

/** P·Uₓ sorted: T's right singular vectors, row-major n×n. */
function shortVectors(c: Core): Float64Array {
  const { n } = c;
  const out = new Float64Array(n * n);
  c.order.forEach((src, dst) => {
    for (let i = 0; i < n; i++) out[c.perm[i]! * n + dst] = c.x[src * n + i]!;
  });
  return out;
}

function sumSquares(x: Float64Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i++) s += x[off + i]! * x[off + i]!;
  return s;
}

function swapColumns(x: Float64Array, a: number, b: number, len: number): void {
  for (let r = 0; r < len; r++) {
    const tmp = x[a + r]!;
    x[a + r] = x[b + r]!;
    x[b + r] = tmp;
  }
}

function identity(n: number): Float64Array {
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) r[i * n + i] = 1;
  return r;
}

/**
 * Householder QR with column pivoting in place on column-major `t` (m×n): R on and above the
 * diagonal, the reflectors' tails (leading 1 implicit) below it. The partial column norms are
 * downdated and recomputed on cancellation, as LAPACK's xLAQP2 does.
 */
function pivotedQr(
  t: Float64Array,
  m: number,
  n: number,
): { readonly tau: Float64Array; readonly perm: Int32Array } {
  const tau = new Float64Array(n);
  const perm = Int32Array.from({ length: n }, (_, j) => j);
  const part = new Float64Array(n);
  const full = new Float64Array(n);
  for (let j = 0; j < n; j++) part[j] = full[j] = Math.sqrt(sumSquares(t, j * m, m));
  const tol3 = Math.sqrt(EPS);
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let j = k + 1; j < n; j++) if (part[j]! > part[p]!) p = j;
    if (p !== k) {
      const ok = k * m;
      const op = p * m;
      for (let i = 0; i < m; i++) {
        const tmp = t[ok + i]!;
        t[ok + i] = t[op + i]!;
        t[op + i] = tmp;
      }
      [perm[k], perm[p]] = [perm[p]!, perm[k]!];
      part[p] = part[k]!;
      full[p] = full[k]!;
    }
    const ck = k * m;
    const alpha = t[ck + k]!;
    let tail = 0;
    for (let i = k + 1; i < m; i++) tail += t[ck + i]! * t[ck + i]!;
    if (tail === 0) {
      tau[k] = 0; // already upper triangular in this column: H = I
    } else {
      const norm = Math.sqrt(alpha * alpha + tail);
      const beta = alpha >= 0 ? -norm : norm;
      tau[k] = (beta - alpha) / beta;
      const f = 1 / (alpha - beta);
      for (let i = k + 1; i < m; i++) t[ck + i] = t[ck + i]! * f;
      t[ck + k] = beta;
      const tk = tau[k]!;
      for (let j = k + 1; j < n; j++) {
        const cj = j * m;
        let w = t[cj + k]!;
        for (let i = k + 1; i < m; i++) w += t[ck + i]! * t[cj + i]!;
        w *= tk;
        t[cj + k] = t[cj + k]! - w;
        for (let i = k + 1; i < m; i++) t[cj + i] = t[cj + i]! - w * t[ck + i]!;
      }
    }
    for (let j = k + 1; j < n; j++) {
      if (part[j] === 0) continue;
      const r = Math.abs(t[j * m + k]!) / part[j]!;
      const keep = Math.max(0, (1 + r) * (1 - r));
      const ratio = part[j]! / full[j]!;
      if (keep * ratio * ratio <= tol3) {
        part[j] = full[j] = Math.sqrt(sumSquares(t, j * m + k + 1, m - k - 1));
      } else {
        part[j] = part[j]! * Math.sqrt(keep);
      }
    }
  }
  return { tau, perm };
}

/** Rᵀ as a column-major n×n matrix: its column i is row i of R. */
function transposedR(t: Float64Array, m: number, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let r = i; r < n; r++) x[i * n + r] = t[r * m + i]!;
  }
  return x;
}

/**
 * Cyclic one-sided Jacobi on the columns of column-major `x` (n×n), rotations accumulated into
 * `rot`. A pair is rotated while |xᵢ·xⱼ| > tol·‖xᵢ‖‖xⱼ‖; the squared norms are updated by the
 * rotation's closed form and recomputed at each sweep and when that form cancels.
 *
 * @returns the sweeps taken, or undefined at the limit.
 */
function jacobi(
  x: Float64Array,
  rot: Float64Array | undefined,
  n: number,
  maxSweeps: number,
): number | undefined {
  const tol = Math.max(1, Math.sqrt(n)) * EPS;
  const nrm = new Float64Array(n);
  for (let sweep = 1; sweep <= maxSweeps; sweep++) {
    for (let j = 0; j < n; j++) nrm[j] = sumSquares(x, j * n, n);
    let rotated = false;
    for (let i = 0; i < n - 1; i++) {
      const oi = i * n;
      let p = i;
      for (let j = i + 1; j < n; j++) if (nrm[j]! > nrm[p]!) p = j;
      if (p !== i) {
        swapColumns(x, oi, p * n, n);
        if (rot !== undefined) swapColumns(rot, oi, p * n, n);
        [nrm[i], nrm[p]] = [nrm[p]!, nrm[i]!];
      }
      // x_i·x_{j+1} is accumulated while pair (i, j) rotates, saving a pass over x_i.
      let next = NaN;
      for (let j = i + 1; j < n; j++) {
        const alpha = nrm[i]!;
        const beta = nrm[j]!;
        const known = next;
        next = NaN;
        if (alpha < NEGLIGIBLE || beta < NEGLIGIBLE) continue;
        const oj = j * n;
        let gamma = known;
        if (Number.isNaN(gamma)) {
          gamma = 0;
          for (let r = 0; r < n; r++) gamma += x[oi + r]! * x[oj + r]!;
        }
        if (Math.abs(gamma) <= tol * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const az = Math.abs(zeta);
        const tan = az > 1e150
          ? 0.5 / zeta
          : (zeta >= 0 ? 1 : -1) / (az + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + tan * tan);
        const s = c * tan;
        if (j + 1 < n) {
          const on = oj + n;
          let d = 0;
          for (let r = 0; r < n; r++) {
            const xi = x[oi + r]!;
            const xj = x[oj + r]!;
            const yi = c * xi - s * xj;
            x[oi + r] = yi;
            x[oj + r] = s * xi + c * xj;
            d += yi * x[on + r]!;
          }
          next = d;
        } else {
          for (let r = 0; r < n; r++) {
            const xi = x[oi + r]!;
            const xj = x[oj + r]!;
            x[oi + r] = c * xi - s * xj;
            x[oj + r] = s * xi + c * xj;
          }
        }
        if (rot !== undefined) {
          for (let r = 0; r < n; r++) {
            const vi = rot[oi + r]!;
            const vj = rot[oj + r]!;
            rot[oi + r] = c * vi - s * vj;
            rot[oj + r] = s * vi + c * vj;
          }
        }
        const ai = alpha - tan * gamma;
        // The closed form loses the small norm to cancellation: measure it instead.
        nrm[i] = ai < 0.1 * alpha ? sumSquares(x, oi, n) : ai;
        nrm[j] = beta + tan * gamma;
      }
    }
    if (!rotated) return sweep;
  }
  return undefined;
}

/**
 * Divides column j of `x` by σⱼ; columns with σⱼ = 0 carry no direction, so they are filled
 * with unit vectors orthogonalised (twice) against the others, keeping the basis orthonormal.
 */
function normaliseColumns(x: Float64Array, sigma: Float64Array, n: number): void {
  const empty: number[] = [];
  for (let j = 0; j < n; j++) {
    const sj = sigma[j]!;
    if (sj * sj < NEGLIGIBLE) {
      empty.push(j);
      sigma[j] = 0;
      continue;
    }
    for (let r = 0; r < n; r++) x[j * n + r] = x[j * n + r]! / sj;
  }
  const full = new Set(Array.from({ length: n }, (_, j) => j).filter((j) => !empty.includes(j)));
  let unit = 0;
  for (const j of empty) {
    const oj = j * n;
    for (;;) {
      x.fill(0, oj, oj + n);
      x[oj + unit] = 1;
      unit++;
      for (let pass = 0; pass < 2; pass++) {
        for (const q of full) {
          const oq = q * n;
          let d = 0;
          for (let r = 0; r < n; r++) d += x[oq + r]! * x[oj + r]!;
          for (let r = 0; r < n; r++) x[oj + r] = x[oj + r]! - d * x[oq + r]!;
        }
      }
      const norm = Math.sqrt(sumSquares(x, oj, n));
      if (norm > 0.5) { // at least one of any n unit vectors passes this
        for (let r = 0; r < n; r++) x[oj + r] = x[oj + r]! / norm;
        full.add(j);
        break;
      }
    }
  }
}

/** Q·[J; 0] (m×n, column-major) from the reflectors stored below R in `t`. */
function applyQ(
  t: Float64Array,
  tau: Float64Array,
  rot: Float64Array,
  m: number,
  n: number,
): Float64Array {
  const y = new Float64Array(m * n);
  for (let c = 0; c < n; c++) {
    const oc = c * m;
    for (let r = 0; r < n; r++) y[oc + r] = rot[c * n + r]!;
    for (let k = n - 1; k >= 0; k--) {
      const tk = tau[k]!;
      if (tk === 0) continue;
      const ck = k * m;
      let w = y[oc + k]!;
      for (let i = k + 1; i < m; i++) w += t[ck + i]! * y[oc + i]!;
      w *= tk;
      y[oc + k] = y[oc + k]! - w;
      for (let i = k + 1; i < m; i++) y[oc + i] = y[oc + i]! - w * t[ck + i]!;
    }
  }
  return y;
}
