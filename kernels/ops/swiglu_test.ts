import type * as tf from "@tensorflow/tfjs-core";
import { asFloat32, backendTest, checkBlock } from "../_test_util.ts";
import { swigluRef, uniformArr } from "../_reference.ts";
import { swiglu } from "./swiglu.ts";

backendTest(
  "swiglu() matches the float64 reference and its finite-difference gradients",
  async () => {
    await checkBlock({
      label: "swiglu",
      inputs: [asFloat32(uniformArr([4, 6], 3, 4)), asFloat32(uniformArr([4, 6], 4, 2))],
      reference: ([g, u]) => swigluRef(g!, u!),
      op: ([g, u]) => swiglu(g as tf.Tensor2D, u as tf.Tensor2D),
      differentiate: [0, 1],
    });
  },
);
