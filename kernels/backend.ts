/**
 * Backend selection: the one door through which tfjs backends are loaded.
 *
 * Backends are imported dynamically so that importing `kernels/` touches no
 * backend; `initBackend` loads, initialises and patches the chosen one (the
 * kernels tfjs lacks for training are registered here).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { createRequire } from "node:module";
import { describeUnknown, type KernelFailed, kernelFailed } from "../base/mod.ts";
import { registerGradients } from "./_gradients.ts";
import { installBufferLedger } from "./peak_memory.ts";
import { registerScatterKernels } from "./_scatter_kernels.ts";
import { registerWasmIdentity, registerWasmMatMul } from "./_wasm_matmul.ts";
import { fusedUnion, type FusibleOp } from "../solvers/mod.ts";
import {
  fusedWasmOps,
  kernelThreads,
  registerFusedWasmKernels,
  startFusedWasmPool,
} from "./fused/mod.ts";
import { withSharedWasmMemory } from "./_shared_wasm_memory.ts";
import { fusedWebGpuOps, registerWebGpuKernels } from "./webgpu/mod.ts";

// tfjs turns pthreads off under Node-like runtimes; Deno has no classic
// workers for emscripten's pool either, so the wasm build runs single-threaded.
const THREADS_USABLE = false;

/** Backends the engine can run on. */
export const BACKEND_NAMES = ["wasm", "cpu", "webgpu", "tensorflow"] as const;
/** One of {@link BACKEND_NAMES}; `wasm` is the default. */
export type BackendName = typeof BACKEND_NAMES[number];

/** What {@link initBackend} got, for the run log. */
export interface BackendInfo {
  readonly name: BackendName;
  /** tfjs's own name of the active backend (`tensorflow` for tfjs-node). */
  readonly tfjsBackend: string;
  /** One line, e.g. `wasm: XNNPACK SIMD, 1 thread; kernels/ adds ...`. */
  readonly description: string;
  /** "wasm": the threads its fused kernels' jobs are cut over (1 unless the heap is shared). */
  readonly fusedThreads?: number;
}

/** Narrows a user-supplied string to a {@link BackendName}. */
export function isBackendName(s: string): s is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(s);
}

/**
 * Loads, initialises and activates a backend; idempotent (a second call with
 * the active backend returns the same description without reinitialising).
 *
 * @example
 * ```ts
 * import { initBackend } from "./backend.ts";
 * const got = await initBackend("cpu");
 * if (got._tag === "Right") console.log(got.right.description);
 * ```
 */
export async function initBackend(name: BackendName): Promise<E.Either<KernelFailed, BackendInfo>> {
  try {
    registerGradients();
    installBufferLedger();
    switch (name) {
      case "cpu":
        return await initCpu();
      case "wasm":
        return await initWasm();
      case "webgpu":
        return await initWebGpu();
      case "tensorflow":
        return await initTensorflow();
    }
  } catch (reason: unknown) {
    return E.left(kernelFailed(`Cannot start backend "${name}": ${describeUnknown(reason)}`));
  }
}

async function activate(tfjsName: string): Promise<boolean> {
  if (tf.getBackend() === tfjsName && tf.findBackend(tfjsName) !== null) return true;
  return await tf.setBackend(tfjsName);
}

async function initCpu(): Promise<E.Either<KernelFailed, BackendInfo>> {
  await import("@tensorflow/tfjs-backend-cpu");
  registerScatterKernels("cpu");
  if (!(await activate("cpu"))) return E.left(kernelFailed(`Cannot start backend "cpu"`));
  // The CPU backend prints an "install tfjs-node" banner on first use when it
  // sees Node APIs, which Deno has; the advice does not apply here.
  (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  return E.right({
    name: "cpu",
    tfjsBackend: "cpu",
    description: "cpu: tfjs reference backend (plain JavaScript, 1 thread)" +
      "; kernels/ replaces UnsortedSegmentSum with a linear scatter-add",
  });
}

async function initWasm(): Promise<E.Either<KernelFailed, BackendInfo>> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  if (tf.findBackend("wasm") === null || tf.getBackend() !== "wasm") {
    // Deno resolves npm packages into node_modules/; the .wasm binaries sit
    // beside the package's main file, which is all emscripten needs.
    const main = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(new URL("./", `file://${main}`).href);
  }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", THREADS_USABLE);
  registerScatterKernels("wasm");
  registerWasmMatMul();
  registerWasmIdentity();
  registerFusedWasmKernels();
  // More than one thread for the fused kernels needs the heap on a shared memory, which
  // only the first start of the backend in a process can choose.
  let threads: number;
  try {
    threads = kernelThreads();
  } catch (e: unknown) {
    return E.left(kernelFailed(describeUnknown(e)));
  }
  const started = threads > 1
    ? await withSharedWasmMemory(() => activate("wasm"))
    : await activate("wasm");
  if (!started) return E.left(kernelFailed(`Cannot start backend "wasm"`));
  guardWasmMalloc();
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const fusedThreads = startFusedWasmPool();
  return E.right({
    name: "wasm",
    tfjsBackend: "wasm",
    description: `wasm: XNNPACK${simd ? " SIMD" : " (no SIMD)"}, ${wasm.getThreadsCount()} thread` +
      "; kernels/ adds UnsortedSegmentSum, routes transposed/batched matmuls to XNNPACK," +
      " makes Identity share memory and runs RMSNorm, RoPE, SwiGLU, cross-entropy, AdamW and" +
      ` the embedding as fused wasm SIMD kernels (${threadsText(fusedThreads)})`,
    fusedThreads,
  });
}

/** "1 thread", or "2 threads on a shared wasm memory". */
export function threadsText(threads: number): string {
  return threads === 1 ? "1 thread" : `${threads} threads on a shared wasm memory`;
}

/** The part of tfjs-backend-wasm 4.22's emscripten module the allocation guard wraps. */
interface WasmModuleLike {
  _malloc: (bytes: number) => number;
  readonly asm: { readonly malloc: (bytes: number) => number };
  readonly HEAPU8: Uint8Array;
}

const guardedModules = new WeakSet<object>();

/**
 * Makes a failed heap allocation an error that says so. tfjs-backend-wasm takes `_malloc`'s
 * result as the tensor's address without checking it: when the wasm32 heap cannot grow, the
 * tensor lands at address 0 or past the heap's end, and some later access aborts with a bare
 * `Aborted()` or "memory access out of bounds". Tensors are allocated through this JavaScript
 * export, so wrapping it catches every one of them.
 */
function guardWasmMalloc(): void {
  const wasm = (tf.backend() as unknown as { wasm: WasmModuleLike }).wasm;
  if (guardedModules.has(wasm)) return;
  guardedModules.add(wasm);
  // Emscripten's `_malloc` is a stub that replaces itself with the raw export on its first
  // call, which would drop a wrapper of the stub: wrap the export itself.
  const malloc = wasm.asm.malloc;
  wasm._malloc = (bytes: number) => {
    const at = malloc(bytes);
    // Near 4 GiB the allocator also hands out blocks that end past the heap (seen here: a 256
    // MiB block at 3.75 GiB of a 3.84 GiB heap that could not grow), so the end is checked too.
    if (bytes > 0 && (at === 0 || (at >>> 0) + bytes > wasm.HEAPU8.length)) {
      throw new WasmHeapFull(bytes, wasm.HEAPU8.length);
    }
    return at;
  };
}

/** A tensor the wasm backend could not allocate: its heap (wasm32: at most 4 GiB) is full. */
export class WasmHeapFull extends Error {
  /**
   * @param requested bytes of the tensor that did not fit
   * @param heapBytes the heap's size when it failed
   */
  constructor(readonly requested: number, readonly heapBytes: number) {
    super(
      `the wasm heap is full: a tensor of ${requested} bytes did not fit in its ${heapBytes} ` +
        "bytes (wasm32 heaps end at 4 GiB); `deno task run --dry-run` states the largest model " +
        "this backend can train",
    );
    this.name = "WasmHeapFull";
  }
}

/**
 * The ops the active backend runs as fused kernels, read from the registries (the memory
 * prediction needs them): each registry answers for its own backend only.
 */
export function fusedOps(): FusibleOp[] {
  return fusedUnion(fusedWasmOps(), fusedWebGpuOps());
}

/**
 * Threads the active backend's fused kernels cut a call over once its workers are ready (the
 * memory prediction counts fused attention's scratch per part): the wasm pool's plan, else 1.
 */
export function fusedKernelThreads(): number {
  return tf.getBackend() === "wasm" ? startFusedWasmPool() : 1;
}

/** The WebGPU adapter, or why there is none (the message a skipped test or a failed start prints). */
export async function webGpuAdapter(): Promise<E.Either<string, GPUAdapter>> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (gpu === undefined) {
    return E.left("navigator.gpu is missing (run deno with --unstable-webgpu)");
  }
  const adapter = await gpu.requestAdapter();
  return adapter === null
    ? E.left(
      `no WebGPU adapter found (install a GPU driver, or Mesa's software Vulkan driver "mesa-vulkan-drivers")`,
    )
    : E.right(adapter);
}

/** Why WebGPU cannot run here, or undefined when it can. */
export async function webGpuUnavailable(): Promise<string | undefined> {
  const got = await webGpuAdapter();
  return E.isLeft(got) ? got.left : undefined;
}

async function initWebGpu(): Promise<E.Either<KernelFailed, BackendInfo>> {
  const found = await webGpuAdapter();
  if (E.isLeft(found)) return E.left(kernelFailed(`Cannot start backend "webgpu": ${found.left}`));
  const adapter = found.right;
  await import("@tensorflow/tfjs-backend-webgpu");
  registerWebGpuKernels();
  if (!(await activate("webgpu"))) return E.left(kernelFailed(`Cannot start backend "webgpu"`));
  const info = adapter.info;
  const what = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s !== "").join(" ");
  return E.right({
    name: "webgpu",
    tfjsBackend: "webgpu",
    description: `webgpu: ${what === "" ? "unnamed adapter" : what}`,
  });
}

async function initTensorflow(): Promise<E.Either<KernelFailed, BackendInfo>> {
  // Held in variables so `deno check` does not try to resolve packages that
  // only the user's machine can install (their installer fetches libtensorflow).
  const candidates = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];
  const failures: string[] = [];
  for (const spec of candidates) {
    try {
      await import(spec);
      if (await activate("tensorflow")) {
        return E.right({
          name: "tensorflow",
          tfjsBackend: "tensorflow",
          description: `tensorflow: libtensorflow through ${spec}`,
        });
      }
      failures.push(`${spec} loaded but its backend did not start`);
    } catch (reason: unknown) {
      failures.push(`${spec}: ${describeUnknown(reason).split("\n")[0]}`);
    }
  }
  return E.left(kernelFailed(
    `Cannot start backend "tensorflow": neither "@tensorflow/tfjs-node-gpu" nor ` +
      `"@tensorflow/tfjs-node" could be loaded; add one to deno.json's imports at version 4.22.0 ` +
      `(its installer downloads libtensorflow) or choose "wasm": ${failures.join("; ")}`,
  ));
}
