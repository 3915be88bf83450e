/**
 * Test helpers: run one test on every backend this machine has, compare
 * arrays with a scale-aware tolerance, and move data between the float64
 * reference and tensors.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { type BackendName, initBackend, webGpuUnavailable } from "./backend.ts";
import { type Arr, arr, dot, finiteDiff, uniformArr } from "./_reference.ts";
import { type HeapSgemm, openHeapSgemm, type SgemmArgs } from "./blas/mod.ts";

/**
 * The heap sgemm (oneDNN's where installed, else OpenBLAS's), or undefined after marking the
 * test's step as skipped (with the reason) where OpenBLAS is missing.
 */
export async function heapSgemmOrSkip(t: Deno.TestContext): Promise<HeapSgemm | undefined> {
  const opened = openHeapSgemm();
  if (E.isRight(opened)) return opened.right.sgemm;
  console.log(`  skipping: ${opened.left}`);
  await t.step({ name: "needs OpenBLAS", ignore: true, fn: () => {} });
  return undefined;
}

/**
 * alpha·op(A)·op(B) in float64, [m, n], for row-major A and B read from `a` and `b` with leading
 * dimensions lda and ldb (op = transpose where `transA`/`transB`): the reference of the heap
 * sgemm and of its cut parts.
 */
export function stridedProductRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  g: Pick<SgemmArgs, "transA" | "transB" | "m" | "n" | "k" | "alpha" | "lda" | "ldb">,
): Float64Array {
  const c = new Float64Array(g.m * g.n);
  for (let i = 0; i < g.m; i++) {
    for (let j = 0; j < g.n; j++) {
      let sum = 0;
      for (let p = 0; p < g.k; p++) {
        sum += a[g.transA ? p * g.lda + i : i * g.lda + p]! *
          b[g.transB ? j * g.ldb + p : p * g.ldb + j]!;
      }
      c[i * g.n + j] = g.alpha * sum;
    }
  }
  return c;
}

/** Backends the kernel tests cover; webgpu is skipped (with a message) without an adapter. */
export const TESTED_BACKENDS: readonly BackendName[] = ["cpu", "wasm", "webgpu"];

async function unavailable(name: BackendName): Promise<string | undefined> {
  return name === "webgpu" ? await webGpuUnavailable() : undefined;
}

/**
 * Registers a Deno test with one step per backend. WebGPU keeps a device and
 * its promises alive across tests, so the op and resource sanitizers are off.
 */
export function backendTest(
  name: string,
  fn: (backend: BackendName) => Promise<void> | void,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      for (const backend of TESTED_BACKENDS) {
        const why = await unavailable(backend);
        if (why !== undefined) {
          console.log(`  skipping ${backend}: ${why}`);
          await t.step({ name: backend, ignore: true, fn: () => {} });
          continue;
        }
        const got = await initBackend(backend);
        if (E.isLeft(got)) throw new Error(got.left.message);
        await t.step(backend, () => fn(backend));
      }
    },
  });
}

/** Largest |a − e| over the elements. */
export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  }
  return worst;
}

/**
 * Asserts max|a − e| ≤ rel · max|e| (plus a tiny floor): float32 results
 * against float64 references differ by rounding that scales with the values.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rel: number,
  label: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: ${actual.length} values, expected ${expected.length}`);
  }
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  const diff = maxAbsDiff(actual, expected);
  if (!(diff <= rel * scale + 1e-12)) {
    throw new Error(
      `${label}: max |actual − expected| = ${diff.toExponential(3)} exceeds ${rel} × ${
        scale.toExponential(3)
      }`,
    );
  }
}

/** A float32 tensor with the reference array's values. */
export function toTensor(a: Arr): tf.Tensor {
  return tf.tensor(Float32Array.from(a.data), [...a.shape], "float32");
}

/** The tensor's values as a float64 array (disposes nothing). */
export async function toArr(t: tf.Tensor): Promise<Arr> {
  return arr(t.shape, (await t.data()) as Float32Array);
}

/** The reference array rounded to float32, so both sides start from the same inputs. */
export function asFloat32(a: Arr): Arr {
  return arr(a.shape, Float32Array.from(a.data));
}

/** A block under test: float64 reference and tfjs op over the same inputs. */
export interface BlockCase {
  readonly label: string;
  /** Float inputs, already rounded to float32. */
  readonly inputs: readonly Arr[];
  readonly reference: (xs: readonly Arr[]) => Arr;
  readonly op: (xs: readonly tf.Tensor[]) => tf.Tensor;
  /** Inputs whose gradients are checked. */
  readonly differentiate: readonly number[];
  /** Relative tolerances (see {@link assertClose}); defaults 1e-5 and 1e-3. */
  readonly forwardTol?: number;
  readonly gradTol?: number;
}

/**
 * Checks a block's forward values against the reference, its gradients of
 * L = Σ c·y (c fixed and random) against central differences of the
 * reference in float64, and that a second gradient call leaks no tensor.
 */
export async function checkBlock(c: BlockCase): Promise<void> {
  const ts = c.inputs.map(toTensor);
  const expected = c.reference(c.inputs);
  const y = c.op(ts);
  assertClose(
    (await y.data()) as Float32Array,
    expected.data,
    c.forwardTol ?? 1e-5,
    `${c.label} forward`,
  );
  y.dispose();

  const weights = asFloat32(uniformArr(expected.shape, 7));
  const wT = toTensor(weights);
  const lossGrads = (): tf.Tensor[] =>
    tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(c.op(xs), wT)))(ts);
  const drop = (gs: tf.Tensor[]): void => gs.forEach((g) => g.dispose());
  drop(lossGrads()); // warm-up: kernels and caches allocate on first use
  const before = tf.memory().numTensors;
  const grads = lossGrads();
  for (const i of c.differentiate) {
    const fd = finiteDiff(() => dot(c.reference(c.inputs), weights), c.inputs[i]!.data);
    assertClose(
      (await grads[i]!.data()) as Float32Array,
      fd,
      c.gradTol ?? 1e-3,
      `${c.label} d/dx${i}`,
    );
  }
  drop(grads);
  if (tf.memory().numTensors !== before) {
    throw new Error(
      `${c.label}: ${tf.memory().numTensors - before} tensors leaked by a gradient call`,
    );
  }
  wT.dispose();
  ts.forEach((t) => t.dispose());
}
