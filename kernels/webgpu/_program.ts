/**
 * What the WGSL kernels of this folder need from tfjs-backend-webgpu's
 * program API, typed structurally (the package's node build exports no
 * types), and the helpers they share. Private to `kernels/webgpu/`.
 *
 * A program produces exactly one output tensor (`result` in WGSL); inputs are
 * read-only storage arrays named by `variableNames`; sizes travel as
 * uniforms. tfjs wraps `getUserCode()` with those declarations and a
 * `_start` entry that sets the private `localId`, `localIndex`,
 * `workgroupId` and `numWorkgroups` and calls `main(index)`. It caches
 * compiled pipelines by `shaderKey` plus input ranks and dtypes, not sizes,
 * so every value baked into the WGSL text must be part of `shaderKey`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";

/** The arguments tfjs passes to a kernel function. */
export type KernelArgs = Parameters<tf.KernelFunc>[0];

/** One program-defined uniform, in the order of {@link GpuProgram.uniforms}. */
export interface ProgramUniform {
  readonly type: "int32" | "float32";
  readonly data: number[];
}

/** tfjs-backend-webgpu's `WebGPUProgram`, the fields these kernels set. */
export interface GpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  /** A flat layout (`x` only), so tfjs calls `main(index : i32)`. */
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** WGSL struct members appended to tfjs's `Uniforms`, e.g. `rows : i32, eps : f32,`. */
  uniforms: string;
  getUserCode(): string;
}

/** The parts of tfjs-backend-webgpu's `WebGPUBackend` these kernels use. */
export interface GpuBackend {
  readonly device: GPUDevice;
  runWebGPUProgram(
    program: GpuProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: ProgramUniform[],
  ): tf.TensorInfo;
  disposeData(dataId: tf.DataId): boolean;
}

/** The webgpu backend a kernel runs on. */
export function gpuOf(args: KernelArgs): GpuBackend {
  const b = args.backend as unknown as Partial<GpuBackend>;
  if (typeof b.runWebGPUProgram !== "function" || b.device === undefined) {
    throw new Error("WebGPU kernel: the active backend is not tfjs-backend-webgpu");
  }
  return b as GpuBackend;
}

/** Input `name` of a kernel call. */
export function inputOf(args: KernelArgs, kernel: string, name: string): tf.TensorInfo {
  const t = args.inputs[name];
  if (t === undefined) throw new Error(`${kernel}: input "${name}" is missing`);
  return t;
}

/** Numeric attr `name` of a kernel call. */
export function numberAttr(args: KernelArgs, kernel: string, name: string): number {
  const v = args.attrs?.[name];
  if (typeof v !== "number") throw new Error(`${kernel}: attr "${name}" is not a number`);
  return v;
}

/** Elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * WGSL: the flat index of this workgroup. tfjs reshapes a dispatch wider than
 * the device allows (65535 groups per dimension) into 2-D or 3-D, so a kernel
 * that gives each workgroup a row must not read `workgroupId.x` alone.
 */
export const GROUP_INDEX_WGSL = `
  fn groupIndex() -> i32 {
    return i32(workgroupId.z * numWorkgroups.x * numWorkgroups.y +
      workgroupId.y * numWorkgroups.x + workgroupId.x);
  }
`;

/** Options of {@link program}. */
export interface ProgramSpec {
  /** Names the WGSL text; include every value baked into it. */
  readonly key: string;
  readonly inputs: string[];
  readonly outputShape: number[];
  /** Workgroups to launch (flat; tfjs reshapes it when too wide). */
  readonly groups: number;
  readonly workgroupSize: number;
  readonly uniforms: string;
  /** WGSL defining `fn main(index : i32)` and its helpers. */
  readonly code: string;
}

/** A fresh program object (tfjs writes into it, so one per dispatch). */
export function program(spec: ProgramSpec): GpuProgram {
  return {
    variableNames: spec.inputs,
    outputShape: spec.outputShape,
    shaderKey: `step_${spec.key}`,
    dispatchLayout: { x: spec.outputShape.map((_, i) => i) },
    dispatch: [Math.max(1, spec.groups), 1, 1],
    workgroupSize: [spec.workgroupSize, 1, 1],
    uniforms: spec.uniforms,
    getUserCode: () => GROUP_INDEX_WGSL + spec.code,
  };
}

/** int32 uniforms. */
export function ints(...values: number[]): ProgramUniform[] {
  return values.map((v) => ({ type: "int32", data: [v] }));
}

/** One float32 uniform. */
export function float(value: number): ProgramUniform {
  return { type: "float32", data: [value] };
}

/** Threads per workgroup for element-wise programs. */
export const ELEMENTWISE_THREADS = 256;
