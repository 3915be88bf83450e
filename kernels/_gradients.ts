/**
 * Gradients of the tfjs kernels the model uses outside its custom-gradient
 * blocks (matmul, gather, reshape, elementwise glue).
 *
 * tfjs-core ships its gradient registry only as extension-less ES modules
 * (`dist/register_all_gradients.js`), which Deno cannot load, and none of its
 * bundles contain it. Matmul and gather must stay registered kernels rather
 * than `customGrad` blocks: tfjs asks a registered gradient for each input
 * lazily, so a frozen weight's gradient is never computed.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { PLAIN, TRANSPOSED } from "./ops/flags.ts";

type GradientMap = ReturnType<tf.GradFunc>;

/** Sums `dy` over the axes that broadcasting added or stretched to reach `shape`. */
function unbroadcast(dy: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes([...shape], dy.shape);
  const summed = axes.length > 0 ? tf.sum(dy, axes) : dy;
  return tf.reshape(summed, [...shape]);
}

function matMulGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap): GradientMap {
  const [a, b] = saved as [tf.Tensor, tf.Tensor];
  const tA = attrs["transposeA"] as boolean;
  const tB = attrs["transposeB"] as boolean;
  const da = !tA ? () => tf.matMul(dy, b, PLAIN, !tB) : () => tf.matMul(b, dy, tB, TRANSPOSED);
  const db = !tB ? () => tf.matMul(a, dy, !tA, PLAIN) : () => tf.matMul(dy, a, TRANSPOSED, tA);
  return {
    a: () => unbroadcastBatch(da(), a.shape),
    b: () => unbroadcastBatch(db(), b.shape),
  };
}

/** A broadcast batch of matmul operands sums back to the operand's batch shape. */
function unbroadcastBatch(g: tf.Tensor, shape: readonly number[]): tf.Tensor {
  if (g.rank === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - 2;
  const inner = g.shape.slice(lead);
  const batchShape = shape.slice(0, -2);
  const axes = tf.backend_util.getReductionAxes([...batchShape], g.shape.slice(0, lead));
  const summed = axes.length > 0 ? tf.sum(g, axes) : g;
  return tf.reshape(summed, [...batchShape, ...inner]);
}

function gatherGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap): GradientMap {
  const [x, indices] = saved as [tf.Tensor, tf.Tensor];
  const axis = tf.util.parseAxisParam(attrs["axis"] as number, x.shape)[0];
  if (axis !== 0 || (attrs["batchDims"] as number) !== 0) {
    throw new Error(`gather gradient: only axis 0 without batch dims is supported; got ${axis}`);
  }
  return {
    x: () => {
      const rows = tf.reshape(dy, [indices.size, ...x.shape.slice(1)]);
      return tf.unsortedSegmentSum(rows, tf.reshape(indices, [indices.size]), x.shape[0]!);
    },
    indices: () => tf.zerosLike(indices),
  };
}

function binary(
  kernelName: string,
  da: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
  db: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const g = dy as tf.Tensor;
      return {
        a: () => unbroadcast(da(g, a, b), a.shape),
        b: () => unbroadcast(db(g, a, b), b.shape),
      };
    },
  };
}

function configs(): tf.GradConfig[] {
  return [
    {
      kernelName: "BatchMatMul",
      inputsToSave: ["a", "b"],
      gradFunc: (dy, saved, attrs) => matMulGrad(dy as tf.Tensor, saved, attrs),
    },
    {
      kernelName: "GatherV2",
      inputsToSave: ["x", "indices"],
      gradFunc: (dy, saved, attrs) => gatherGrad(dy as tf.Tensor, saved, attrs),
    },
    {
      kernelName: "Reshape",
      inputsToSave: ["x"],
      gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as tf.Tensor, saved[0]!.shape) }),
    },
    {
      kernelName: "Transpose",
      gradFunc: (dy, _saved, attrs) => {
        const perm = attrs["perm"] as number[];
        const inverse = perm.map((_, i) => perm.indexOf(i));
        return { x: () => tf.transpose(dy as tf.Tensor, inverse) };
      },
    },
    {
      kernelName: "Sum",
      inputsToSave: ["x"],
      gradFunc: (dy, saved, attrs) => {
        const x = saved[0]!;
        const axes = tf.util.parseAxisParam(attrs["axis"] as number | number[], x.shape);
        const kept = tf.backend_util.expandShapeToKeepDim((dy as tf.Tensor).shape, axes);
        return { x: () => tf.mul(tf.reshape(dy as tf.Tensor, kept), tf.onesLike(x)) };
      },
    },
    { kernelName: "Identity", gradFunc: (dy) => ({ x: () => tf.clone(dy as tf.Tensor) }) },
    { kernelName: "Neg", gradFunc: (dy) => ({ x: () => tf.neg(dy as tf.Tensor) }) },
    binary("Add", (dy) => dy, (dy) => dy),
    binary("Sub", (dy) => dy, (dy) => tf.neg(dy)),
    binary("Multiply", (dy, _a, b) => tf.mul(dy, b), (dy, a) => tf.mul(dy, a)),
  ];
}

/** Registers the gradients above for kernels that have none yet; idempotent. */
export function registerGradients(): void {
  for (const config of configs()) {
    if (tf.getGradient(config.kernelName) === undefined) tf.registerGradient(config);
  }
}
