import * as tf from "@tensorflow/tfjs-core";
import { asFloat32, backendTest, checkBlock } from "../_test_util.ts";
import { embeddingRef, uniformArr } from "../_reference.ts";
import { embedding } from "./embedding.ts";

backendTest(
  "embedding() gathers rows and scatter-adds repeated tokens in its gradient",
  async () => {
    const tokens = [4, 1, 4, 0, 4, 2];
    await checkBlock({
      label: "embedding",
      inputs: [asFloat32(uniformArr([6, 3], 31, 1))],
      reference: ([table]) => embeddingRef(table!, tokens),
      op: ([table]) => tf.tidy(() => embedding(table as tf.Tensor2D, tf.tensor1d(tokens, "int32"))),
      differentiate: [0],
    });
  },
);
