import * as tf from "@tensorflow/tfjs-core";
import { assertEquals } from "../tests/assert.ts";
import { backendTest } from "./_test_util.ts";

backendTest("unsortedSegmentSum() adds rows into their segments", async (backend) => {
  const x = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
  const ids = tf.tensor1d([2, 0, 2, 0], "int32");
  const out = tf.unsortedSegmentSum(x, ids, 3);
  assertEquals(out.shape, [3, 2]);
  assertEquals([...(await out.data())], [10, 12, 0, 0, 6, 8]);
  tf.dispose([x, ids, out]);
  if (backend === "webgpu") return; // stock tfjs kernel: out-of-range ids are not dropped there
  const bad = tf.tensor1d([2, 0, 2, 5], "int32");
  const x2 = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
  const dropped = tf.unsortedSegmentSum(x2, bad, 3);
  assertEquals([...(await dropped.data())], [3, 4, 0, 0, 6, 8]);
  tf.dispose([x2, bad, dropped]);
});
