/**
 * Activation recomputation (`training.recompute: layers`): the forward pass
 * keeps only each layer's input; the backward pass runs layer by layer from
 * the top, recomputing one layer's forward under a fresh tape and
 * back-propagating the gradient of its output through it. At any moment the
 * step holds the layer inputs, one layer's activations and their gradients,
 * instead of every layer's activations — at the price of a second forward
 * pass. The arithmetic of each layer is the same as without recomputation.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { EMBED, FINAL_NORM, layerPrefix, LM_HEAD } from "../base/mod.ts";
import { gradientsReleasing } from "./_backprop.ts";
import {
  type Batch,
  checkBatch,
  decoderLayer,
  embedTokens,
  finalNorm,
  headLoss,
  layerContext,
  type LossOptions,
} from "./model.ts";
import { depthOf } from "../checkpoint/mod.ts";
import type { TrainState } from "./train_state.ts";
import { releaseDisposedGpuBuffers } from "./ops/release.ts";

/** Running gradient sums by parameter name; the caller owns the tensors. */
export type GradientSums = Map<string, tf.Tensor>;

/**
 * Runs one gradient pass of `f` over `names`' parameters (and `input`, when given) and folds the
 * parameters' gradients into `sums`. Returns `f`'s value and the input's gradient.
 */
export function backwardInto<Y extends tf.Tensor>(
  state: TrainState,
  pass: {
    readonly f: () => Y;
    readonly input: tf.Tensor | undefined;
    readonly names: readonly string[];
    readonly dy?: tf.Tensor;
  },
  sums: GradientSums,
): { readonly value: Y; readonly dInput: tf.Tensor | null } {
  const params = pass.names.map((n) => state.params.get(n)!);
  const xs = pass.input === undefined ? params : [pass.input, ...params];
  const offset = pass.input === undefined ? 0 : 1;
  const accumulate = [
    ...(pass.input === undefined ? [] : [undefined]),
    ...pass.names.map((n) => sums.get(n)),
  ];
  const r = gradientsReleasing(pass.f, xs, {
    accumulate,
    ...(pass.dy === undefined ? {} : { dy: pass.dy }),
  });
  pass.names.forEach((n, i) => {
    const g = r.grads[offset + i];
    if (g !== null && g !== undefined) sums.set(n, g);
  });
  return { value: r.value, dInput: offset === 1 ? r.grads[0] ?? null : null };
}

/**
 * One micro-batch's loss scaled by `scale`, its gradients with respect to the trainable
 * parameters added into `sums`, recomputing each layer in the backward pass. Returns the scaled
 * loss (the caller owns it).
 *
 * @throws {Error} on a malformed batch.
 */
export function recomputedMicroBatch(
  state: TrainState,
  mb: Batch,
  options: { readonly scale: number; readonly sums: GradientSums; readonly loss: LossOptions },
): tf.Scalar {
  checkBatch(state.shape, mb);
  const trains = (n: string): boolean => state.trainable.has(n);
  const depth = depthOf(state.params.keys());
  const layerNames = Array.from(
    { length: depth },
    (_, l) => [...state.trainable].filter((n) => n.startsWith(layerPrefix(l))),
  );
  // The lowest layer with something to train (-1: the embedding): no gradient flows below it.
  const firstTrained = layerNames.findIndex((names) => names.length > 0);
  const lowest = trains(EMBED) ? -1 : firstTrained === -1 ? depth : firstTrained;
  const ctx = layerContext(state.shape, mb.batch, mb.seq);
  const tokens = tf.tensor1d(mb.tokens, "int32");
  const targets = tf.tensor1d(mb.targets, "int32");
  const inputs: tf.Tensor2D[] = [embedTokens(state, tokens)];
  for (let l = 0; l < depth; l++) {
    const h = inputs[l]!;
    inputs.push(tf.tidy(() => decoderLayer(state, h, l, ctx)));
    releaseDisposedGpuBuffers();
  }
  const top = inputs[depth]!;
  const head = backwardInto(state, {
    f: (): tf.Scalar =>
      tf.tidy(() =>
        tf.mul(headLoss(state, finalNorm(state, top), targets, options.loss), options.scale)
      ),
    input: lowest < depth ? top : undefined,
    names: [FINAL_NORM, state.shape.tiedEmbeddings ? EMBED : LM_HEAD].filter(trains),
  }, options.sums);
  top.dispose();
  let dh = head.dInput;
  for (let l = depth - 1; l >= 0; l--) {
    const h = inputs[l]!;
    if (dh !== null && (layerNames[l]!.length > 0 || lowest < l)) {
      const layer = backwardInto(state, {
        f: () => decoderLayer(state, h, l, ctx),
        input: lowest < l ? h : undefined,
        names: layerNames[l]!,
        dy: dh,
      }, options.sums);
      layer.value.dispose();
      dh = layer.dInput;
    }
    h.dispose();
    releaseDisposedGpuBuffers();
  }
  if (dh !== null && trains(EMBED)) {
    backwardInto(state, {
      f: () => embedTokens(state, tokens),
      input: undefined,
      names: [EMBED],
      dy: dh,
    }, options.sums).value.dispose();
  } else {
    dh?.dispose();
  }
  tf.dispose([tokens, targets, ctx.tables.cos, ctx.tables.sin]);
  return head.value;
}
