import { backendTest, checkBlock } from "../_test_util.ts";
import { asFloat32 } from "../_test_util.ts";
import { rmsNormRef, uniformArr } from "../_reference.ts";
import { rmsNorm } from "./rms_norm.ts";
import type * as tf from "@tensorflow/tfjs-core";

backendTest(
  "rmsNorm() matches the float64 reference and its finite-difference gradients",
  async () => {
    const x = asFloat32(uniformArr([5, 8], 1, 2));
    const w = asFloat32(uniformArr([8], 2, 1.5));
    await checkBlock({
      label: "rmsNorm",
      inputs: [x, w],
      reference: ([x, w]) => rmsNormRef(x!, w!, 1e-5),
      op: ([x, w]) => rmsNorm(x as tf.Tensor2D, w as tf.Tensor1D, { eps: 1e-5 }),
      differentiate: [0, 1],
    });
  },
);
