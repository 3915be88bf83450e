import { assertAllPassed, webGpuTest } from "./_test_util.ts";
import { compareFusedToComposite, type KernelCase, kernelCases } from "./equivalence.ts";

function ropeCase(b: number, t: number, heads: number, d: number): KernelCase {
  const wave = (n: number, f: number, a: number): Float32Array =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + 0.5) * a);
  const half = d / 2;
  return {
    label: `rope b ${b} t ${t} H ${heads} d ${d}`,
    kind: "rope",
    shapes: [[b, t, heads, d], [t, half], [t, half]],
    values: [wave(b * t * heads * d, 0.37, 2), wave(t * half, 0.11, 1), wave(t * half, 0.23, 1)],
    differentiate: [0],
    eps: 0,
  };
}

webGpuTest(
  "StepRope on webgpu matches ropeComposite on random shapes (odd d/2, odd t)",
  async () => {
    const cases = kernelCases({ seed: 51, perOp: 6, maxSeq: 13 }).filter((c) => c.kind === "rope");
    assertAllPassed(await compareFusedToComposite(cases));
  },
);

webGpuTest(
  "StepRope on webgpu matches the composite at head dim 64 and beyond one dispatch dimension",
  async () => {
    // 2·300·4·64: a LLaMA head dim over several positions; 1·1·3·2: the smallest head;
    // 2·2·65 600·64 ≈ 16.8 M elements: 65 600 workgroups, so tfjs folds the dispatch into 2-D.
    assertAllPassed(
      await compareFusedToComposite([
        ropeCase(2, 300, 4, 64),
        ropeCase(1, 1, 3, 2),
        ropeCase(2, 2, 65_600, 64),
      ]),
    );
  },
);
