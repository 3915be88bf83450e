/**
 * Reverse-mode gradients over tfjs's tape, releasing memory as the backward
 * pass goes. `tf.engine().gradients` keeps every tensor the forward pass saved
 * and the gradient of every intermediate tensor until the whole backward pass
 * ends, so its peak holds all activations AND all their gradients. Here a
 * tape node's saved tensors are freed as soon as its gradient has been
 * computed, and an intermediate tensor's gradient as soon as the node that
 * produced it has consumed it: each tensor is the output of one node, which
 * comes before all of its consumers on the tape, so its gradient is complete
 * and needed by no one once that node is done.
 *
 * The arithmetic is tfjs's own: the same gradient functions, run in the same
 * order, accumulated with the same `add`, except that where the backend adds a
 * matrix product into an existing sum (the pooled products of ./fused), a
 * product's contribution to a gradient already begun is summed inside the
 * product: the same sum, rounded once less. Private to `kernels/`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { releaseDisposedGpuBuffers } from "./ops/release.ts";
import { addingNextProduct } from "./fused/mod.ts";

/** A node of tfjs's gradient tape, as the engine records it. */
interface TapeNode {
  readonly id: number;
  readonly kernelName: string;
  readonly inputs: Readonly<Record<string, tf.Tensor>>;
  readonly outputs: readonly tf.Tensor[];
  readonly saved: readonly tf.Tensor[];
  readonly gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

/** The engine methods and state the backward pass uses. */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
}

const BatchMatMul = "BatchMatMul";

/** Whether `t` is the gradient of one tensor only (a gradient function may hand one on). */
function sole(grad: ReadonlyMap<number, tf.Tensor>, t: tf.Tensor): boolean {
  let n = 0;
  for (const g of grad.values()) if (g === t) n++;
  return n === 1;
}

/** The nodes on a path from some x to y, their inputs pruned to those that depend on an x. */
function pathNodes(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodeFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodeToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  return tape.filter((n) => nodeFromX.has(n.id) && nodeToY.has(n.id)).map((n) => ({
    ...n,
    inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))),
  }));
}

/** Options of {@link gradientsReleasing}. */
export interface GradientOptions {
  /**
   * A gradient per x from earlier micro-batches: each new contribution is added to it the moment
   * it is computed (the function takes ownership), so accumulating never holds two sets of
   * gradients.
   */
  readonly accumulate?: readonly (tf.Tensor | undefined)[];
  /** The gradient of `f`'s value (default ones, for a scalar loss); the function takes it. */
  readonly dy?: tf.Tensor;
}

/**
 * `f`'s value and its gradients with respect to `xs` (null where `f` does not depend on an x),
 * releasing each saved tensor and each intermediate gradient as soon as the backward pass is
 * done with it. `f` returns a scalar, or any tensor given `options.dy`.
 *
 * @throws {Error} from a gradient function whose result has the wrong shape.
 */
export function gradientsReleasing<Y extends tf.Tensor = tf.Scalar>(
  f: () => Y,
  xs: readonly tf.Tensor[],
  options: GradientOptions = {},
): { readonly value: Y; readonly grads: (tf.Tensor | null)[] } {
  const { accumulate, dy } = options;
  const engine = tf.engine() as unknown as EngineInternals;
  const y = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () => engine.tidy("forward", f),
  );
  const tape = engine.state.activeTape ?? [];
  const nodes = pathNodes(tape, xs, y);
  const wanted = new Set(xs.map((x) => x.id));
  return engine.tidy("backward", () => {
    const grad = new Map<number, tf.Tensor>([[y.id, dy ?? tf.onesLike(y)]]);
    accumulate?.forEach((acc, i) => {
      if (acc !== undefined) grad.set(xs[i]!.id, acc);
    });
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i]!;
      if (node.gradient === undefined) {
        throw new Error(`Cannot compute gradient: no gradient function for ${node.kernelName}`);
      }
      const dys = node.outputs.map((o) => grad.get(o.id) ?? null);
      const gradient = node.gradient;
      const names = Object.keys(node.inputs);
      // A matrix product's contribution to a gradient already begun is added inside the product
      // (./fused: sgemm's beta = 1, where the backend does it) instead of by an Add after it.
      const summed = new Set<string>();
      // One scope per node: what a gradient function makes besides its results (a composite
      // op's temporaries, zeros for unused outputs) dies here, not at the end of the pass.
      const dxs = engine.tidy(() => {
        const inputGrads = gradient(dys);
        return names.map((name) => {
          const current = grad.get(node.inputs[name]!.id);
          if (node.kernelName !== BatchMatMul || current === undefined || !sole(grad, current)) {
            return inputGrads[name]!();
          }
          const r = addingNextProduct(current, inputGrads[name]!);
          if (r.added) summed.add(name);
          return r.value;
        });
      });
      for (const [k, name] of names.entries()) {
        const x = node.inputs[name]!;
        const dx = dxs[k]!;
        if (dx.shape.join() !== x.shape.join()) {
          throw new Error(
            `Gradient of input "${name}" of ${node.kernelName} has shape [${dx.shape}], not [${x.shape}]`,
          );
        }
        const current = grad.get(x.id);
        if (current === undefined) {
          grad.set(x.id, dx);
          continue;
        }
        if (summed.has(name)) {
          // dx holds current + the product, on current's buffer.
          grad.set(x.id, dx);
          current.dispose();
          continue;
        }
        grad.set(x.id, tf.add(current, dx));
        // Both summands are spent (tfjs keeps the contribution until the pass ends).
        for (const t of [current, dx]) if (![...grad.values()].includes(t)) t.dispose();
      }
      for (const o of node.outputs) {
        const dy = grad.get(o.id);
        if (dy === undefined || wanted.has(o.id)) continue;
        grad.delete(o.id);
        // A gradient function may hand dy itself on as an input's gradient: keep it then.
        if (![...grad.values()].includes(dy)) dy.dispose();
      }
      for (const t of node.saved) t.dispose();
      releaseDisposedGpuBuffers();
    }
    const grads = xs.map((x) => grad.get(x.id) ?? null);
    if (engine.state.gradientDepth === 0) {
      for (const node of tape) for (const t of node.saved) t.dispose();
      engine.state.activeTape = null;
    }
    return { value: y, grads: grads as tf.Tensor[] };
  });
}
