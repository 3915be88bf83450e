import * as tf from "@tensorflow/tfjs-core";
import { assertEquals } from "../../tests/assert.ts";
import { initBackend } from "../backend.ts";
import { assertClose } from "../_test_util.ts";
import {
  FUSED_ADAMW,
  FUSED_KERNEL_NAMES,
  FUSED_SWIGLU,
  hasFusedKernel,
  hasFusedPair,
  kernelNames,
  liveOps,
  registryKernels,
} from "./fused_kernels.ts";
import { swiglu, swigluComposite } from "./swiglu.ts";

const PRESENT = true;
const ABSENT = false;

/** The parts of tfjs-backend-cpu's MathBackendCPU a test kernel needs. */
interface CpuLike {
  data: { get(dataId: tf.DataId): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

function values(backend: CpuLike, t: tf.TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

Deno.test({
  name: "ops pick a fused kernel registered for the active backend and fall back without one",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const got = await initBackend("cpu");
    assertEquals(got._tag, "Right");
    for (const name of FUSED_KERNEL_NAMES) assertEquals(hasFusedKernel(name), ABSENT);
    const calls: string[] = [];
    // A stand-in SwiGLU pair in plain loops, marked so the test can tell it ran.
    tf.registerKernel({
      kernelName: FUSED_SWIGLU.forward,
      backendName: "cpu",
      kernelFunc: ({ inputs, backend }) => {
        calls.push("forward");
        const b = backend as unknown as CpuLike;
        const g = values(b, inputs["gate"]!);
        const u = values(b, inputs["up"]!);
        const y = g.map((x, i) => (x / (1 + Math.exp(-x))) * u[i]!);
        return b.makeTensorInfo([...inputs["gate"]!.shape], "float32", y);
      },
    });
    tf.registerKernel({
      kernelName: FUSED_SWIGLU.gradient,
      backendName: "cpu",
      kernelFunc: ({ inputs, backend }) => {
        calls.push("gradient");
        const b = backend as unknown as CpuLike;
        const dy = values(b, inputs["dy"]!);
        const g = values(b, inputs["gate"]!);
        const u = values(b, inputs["up"]!);
        const dGate = g.map((x, i) => {
          const s = 1 / (1 + Math.exp(-x));
          return dy[i]! * u[i]! * s * (1 + x * (1 - s));
        });
        const dUp = g.map((x, i) => dy[i]! * x / (1 + Math.exp(-x)));
        const shape = [...inputs["gate"]!.shape];
        return [b.makeTensorInfo(shape, "float32", dGate), b.makeTensorInfo(shape, "float32", dUp)];
      },
    });
    try {
      const gate = tf.tensor2d([[0.5, -1, 2], [3, 0, -0.25]]);
      const up = tf.tensor2d([[1, 2, -1], [0.5, 4, 2]]);
      assertEquals(hasFusedPair(FUSED_SWIGLU, [gate, up]), PRESENT);
      assertEquals(hasFusedPair(FUSED_SWIGLU, [tf.cast(gate, "int32")]), ABSENT);
      const f = (op: typeof swiglu) => (g: tf.Tensor, u: tf.Tensor) =>
        tf.sum(tf.mul(op(g as tf.Tensor2D, u as tf.Tensor2D), tf.reshape(tf.range(0, 6), [2, 3])));
      const [fused, composite] = [swiglu, swigluComposite].map((op) => tf.grads(f(op))([gate, up]));
      assertEquals(calls, ["forward", "gradient"]);
      for (let i = 0; i < 2; i++) {
        assertClose(await fused![i]!.data(), await composite![i]!.data(), 1e-6, `grad ${i}`);
      }
      tf.dispose([gate, up, ...fused!, ...composite!]);
    } finally {
      tf.unregisterKernel(FUSED_SWIGLU.forward, "cpu");
      tf.unregisterKernel(FUSED_SWIGLU.gradient, "cpu");
    }
    const x = tf.ones([1, 2]) as tf.Tensor2D;
    const y = swiglu(x, x);
    assertEquals(calls.length, 2, "without the kernels the composite path runs");
    assertClose(await y.data(), [1 / (1 + Math.exp(-1)), 1 / (1 + Math.exp(-1))], 1e-6, "silu");
    tf.dispose([x, y]);
  },
});

function thrown(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  return "nothing thrown";
}

Deno.test("registryKernels() names each kernel once and refuses a registry that breaks a contract", () => {
  const [fwd, grad, update] = [() => [], () => [], () => []] as tf.KernelFunc[];
  assertEquals(
    registryKernels(["swiglu", "adamw", "adamwInPlace"], {
      swiglu: [fwd!, grad!],
      adamw: [update!],
      adamwInPlace: [update!],
    }),
    [[FUSED_SWIGLU.forward, fwd], [FUSED_SWIGLU.gradient, grad], [FUSED_ADAMW, update]],
  );
  assertEquals(
    thrown(() => registryKernels(["swiglu"], { swiglu: [fwd!] })),
    "fused registry: swiglu has 1 kernels, its contract 2",
  );
  assertEquals(
    thrown(() =>
      registryKernels(["adamw", "adamwInPlace"], { adamw: [update!], adamwInPlace: [fwd!] })
    ),
    "fused registry: two functions for StepAdamW",
  );
  assertEquals(kernelNames(["adamw", "adamwInPlace", "swiglu"]), [
    FUSED_ADAMW,
    FUSED_SWIGLU.forward,
    FUSED_SWIGLU.gradient,
  ]);
});

Deno.test({
  name: "liveOps() reports an op only while its kernels are registered as the registry holds them",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    assertEquals((await initBackend("cpu"))._tag, "Right");
    const [fwd, grad, other] = [() => [], () => [], () => []] as tf.KernelFunc[];
    const impls = { swiglu: [fwd!, grad!] };
    assertEquals(liveOps("cpu", ["swiglu"], impls), []);
    tf.registerKernel({ kernelName: FUSED_SWIGLU.forward, backendName: "cpu", kernelFunc: fwd! });
    try {
      assertEquals(liveOps("cpu", ["swiglu"], impls), [], "the gradient is missing");
      tf.registerKernel({
        kernelName: FUSED_SWIGLU.gradient,
        backendName: "cpu",
        kernelFunc: other!,
      });
      assertEquals(
        liveOps("cpu", ["swiglu"], impls),
        [],
        "another function has the gradient's name",
      );
      tf.unregisterKernel(FUSED_SWIGLU.gradient, "cpu");
      tf.registerKernel({
        kernelName: FUSED_SWIGLU.gradient,
        backendName: "cpu",
        kernelFunc: grad!,
      });
      assertEquals(liveOps("cpu", ["swiglu"], impls), ["swiglu"]);
      assertEquals(liveOps("wasm", ["swiglu"], impls), [], "registered for cpu only");
    } finally {
      tf.unregisterKernel(FUSED_SWIGLU.forward, "cpu");
      tf.unregisterKernel(FUSED_SWIGLU.gradient, "cpu");
    }
  },
});
