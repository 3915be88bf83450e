import { assertAllPassed, webGpuTest } from "./_test_util.ts";
import { compareFusedToComposite, type KernelCase, kernelCases } from "./equivalence.ts";

function attentionCase(b: number, t: number, heads: number, kv: number, d: number): KernelCase {
  const wave = (n: number, f: number, a: number): Float32Array =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + 0.5) * a);
  const qn = b * t * heads * d;
  const kn = b * t * kv * d;
  return {
    label: `attention b ${b} t ${t} H ${heads} K ${kv} d ${d}`,
    kind: "attention",
    shapes: [[b, t, heads, d], [b, t, kv, d], [b, t, kv, d]],
    values: [wave(qn, 0.71, 2), wave(kn, 1.13, 2), wave(kn, 0.29, 1)],
    differentiate: [0, 1, 2],
    eps: 0,
  };
}

webGpuTest(
  "StepCausalAttention on webgpu matches the composite on random shapes (GQA, odd t, small d)",
  async () => {
    const cases = kernelCases({ seed: 31, perOp: 4, maxSeq: 70 })
      .filter((c) => c.kind === "attention");
    assertAllPassed(await compareFusedToComposite(cases));
  },
);

webGpuTest(
  "StepCausalAttention on webgpu matches the composite at head dim 64 over several tiles",
  async () => {
    assertAllPassed(await compareFusedToComposite([attentionCase(1, 133, 2, 1, 64)]));
  },
);

webGpuTest(
  "StepCausalAttention on webgpu handles more workgroups than one dispatch dimension",
  async () => {
    // 66 000 query heads × 1 query tile = 66 000 workgroups: tfjs folds the dispatch into 2-D.
    // (Groups stay small: Mesa's llvmpipe stops any shader after 65 535 loop iterations.)
    // Forward only: 66 000 workgroups a pass are slow on a software adapter.
    const big = attentionCase(1, 1, 66_000, 6_000, 2);
    assertAllPassed(await compareFusedToComposite([big], { gradients: false }));
  },
);
