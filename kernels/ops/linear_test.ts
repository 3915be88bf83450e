import * as tf from "@tensorflow/tfjs-core";
import { asFloat32, backendTest, checkBlock } from "../_test_util.ts";
import { add, arr, matmul, uniformArr } from "../_reference.ts";
import { linear } from "./linear.ts";

backendTest(
  "linear() with a LoRA branch matches x·W + s·(x·A)·B and its finite differences",
  async () => {
    const scale = 0.75;
    await checkBlock({
      label: "linear+lora",
      inputs: [
        asFloat32(uniformArr([5, 4], 41, 1)),
        asFloat32(uniformArr([4, 6], 42, 1)),
        asFloat32(uniformArr([4, 2], 43, 1)),
        asFloat32(uniformArr([2, 6], 44, 1)),
      ],
      reference: ([x, w, a, b]) => {
        const low = matmul(matmul(x!, a!), b!);
        return add(matmul(x!, w!), arr(low.shape, low.data.map((v) => v * scale)));
      },
      op: ([x, w, a, b]) =>
        linear(x as tf.Tensor2D, w as tf.Tensor2D, {
          a: a as tf.Tensor2D,
          b: b as tf.Tensor2D,
          scale,
        }),
      differentiate: [0, 1, 2, 3],
    });
  },
);
