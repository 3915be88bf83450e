/**
 * Test helper: orthonormal columns by twice-repeated Gram–Schmidt, for building matrices with
 * known singular vectors (the SVD and GaLore tests).
 *
 * @module
 */

/** Orthonormalises the k columns of the row-major n×k matrix `a` (k ≤ n) in place; returns it. */
export function orthonormalise(a: Float64Array, n: number, k: number): Float64Array {
  for (let j = 0; j < k; j++) {
    // Two passes: one leaves round-off large enough to matter at condition 1e10.
    for (let pass = 0; pass < 2; pass++) {
      for (let q = 0; q < j; q++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += a[i * k + q]! * a[i * k + j]!;
        for (let i = 0; i < n; i++) a[i * k + j] = a[i * k + j]! - d * a[i * k + q]!;
      }
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += a[i * k + j]! ** 2;
    for (let i = 0; i < n; i++) a[i * k + j] = a[i * k + j]! / Math.sqrt(norm);
  }
  return a;
}
