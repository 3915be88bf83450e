import type * as tf from "@tensorflow/tfjs-core";
import { asFloat32, backendTest, checkBlock } from "../_test_util.ts";
import { attentionRef, uniformArr } from "../_reference.ts";
import { causalAttention } from "./attention.ts";

for (const [heads, kvHeads] of [[2, 2], [4, 2], [3, 1]] as const) {
  const kind = heads === kvHeads ? "multi-head" : `grouped-query ${heads}/${kvHeads}`;
  backendTest(
    `causalAttention() ${kind} matches the reference and finite differences`,
    async () => {
      const q = asFloat32(uniformArr([2, 4, heads, 4], 11, 1.5));
      const k = asFloat32(uniformArr([2, 4, kvHeads, 4], 12, 1.5));
      const v = asFloat32(uniformArr([2, 4, kvHeads, 4], 13, 1));
      await checkBlock({
        label: `attention ${heads}/${kvHeads}`,
        inputs: [q, k, v],
        reference: ([q, k, v]) => attentionRef(q!, k!, v!),
        op: ([q, k, v]) => causalAttention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D),
        differentiate: [0, 1, 2],
      });
    },
  );
}
