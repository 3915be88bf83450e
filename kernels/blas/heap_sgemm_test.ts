import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../../tests/assert.ts";
import { attachHeapSgemm, openHeapSgemm } from "./mod.ts";
import { openOneDnn } from "./_onednn.ts";
import { stridedProductRef } from "../_test_util.ts";

/** Runs `f` with STEP_GEMM set to `value` (or unset), then restores it. */
function withGemm<T>(value: string | undefined, f: () => T): T {
  const saved = Deno.env.get("STEP_GEMM");
  try {
    if (value === undefined) Deno.env.delete("STEP_GEMM");
    else Deno.env.set("STEP_GEMM", value);
    return f();
  } finally {
    if (saved === undefined) Deno.env.delete("STEP_GEMM");
    else Deno.env.set("STEP_GEMM", saved);
  }
}

/**
 * C = ½·op(A)·op(B) + C on a heap, A and B strided (lda, ldb past their widths), C starting
 * non-zero so that beta = 1 shows: the heap sgemm against float64, per transposition.
 */
function checkOnHeap(sgemm: ReturnType<typeof attachHeapSgemm>): void {
  const [m, n, k, pad] = [37, 29, 41, 3];
  let s = 7;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const pairs: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
  for (const [transA, transB] of pairs) {
    const [aRows, aCols] = transA ? [k, m] : [m, k];
    const [bRows, bCols] = transB ? [n, k] : [k, n];
    const [lda, ldb] = [aCols + pad, bCols + pad];
    const heap = new Uint8Array(4 * (64 + aRows * lda + bRows * ldb + m * n));
    const f = new Float32Array(heap.buffer);
    const [a, b, c] = [64, 64 + aRows * lda, 64 + aRows * lda + bRows * ldb];
    for (let i = a; i < c + m * n; i++) f[i] = rand();
    const dims = { transA, transB, m, n, k, alpha: 0.5, lda, ldb };
    const want = stridedProductRef(f.subarray(a), f.subarray(b), dims)
      .map((x, i) => x + f[c + i]!);
    sgemm(heap, { ...dims, a: 4 * a, b: 4 * b, beta: 1, c: 4 * c, ldc: n });
    want.forEach((w, i) => {
      assert(Math.abs(f[c + i]! - w) <= 1e-5 * (1 + Math.abs(w)), `${transA}/${transB} C[${i}]`);
    });
  }
}

Deno.test("openHeapSgemm: oneDNN where it loads unless STEP_GEMM=openblas; both multiply as float64 does", async (t) => {
  const blas = withGemm("openblas", () => openHeapSgemm());
  if (E.isLeft(blas)) {
    await t.step({ name: `skipped: ${blas.left}`, ignore: true, fn: () => {} });
    return;
  }
  assert(!blas.right.sgemm.library.startsWith("onednn:"), blas.right.sgemm.library);
  checkOnHeap(blas.right.sgemm);
  checkOnHeap(attachHeapSgemm(blas.right.sgemm.library));
  const chosen = withGemm(undefined, () => openHeapSgemm());
  assert(E.isRight(chosen));
  const dnnl = openOneDnn();
  if (E.isLeft(dnnl)) {
    console.log(`  oneDNN not used: ${dnnl.left}`);
    assertEquals(chosen.right.sgemm.library, blas.right.sgemm.library);
    return;
  }
  assertEquals(chosen.right.sgemm.library, `onednn:${dnnl.right.library}`);
  assertStringIncludes(chosen.right.sgemm.label, "oneDNN ");
  chosen.right.sgemm.threadsFor(1);
  checkOnHeap(chosen.right.sgemm);
  checkOnHeap(attachHeapSgemm(chosen.right.sgemm.library));
  // An explicit library is the user's choice: no oneDNN then.
  const explicit = openHeapSgemm({ library: blas.right.info.library });
  assert(E.isRight(explicit) && !explicit.right.sgemm.library.startsWith("onednn:"));
});

Deno.test("openHeapSgemm: a STEP_GEMM it does not know is refused with the value", async (t) => {
  const blas = withGemm("openblas", () => openHeapSgemm());
  if (E.isLeft(blas)) {
    // Without OpenBLAS the variable is never read.
    await t.step({ name: `skipped: ${blas.left}`, ignore: true, fn: () => {} });
    return;
  }
  let message = "";
  try {
    withGemm("mkl", () => openHeapSgemm());
  } catch (e: unknown) {
    message = String(e);
  }
  assertStringIncludes(message, 'STEP_GEMM must be "onednn" or "openblas", got "mkl"');
});
