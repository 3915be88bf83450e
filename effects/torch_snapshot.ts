/**
 * The exchange directory between the torch engine and the PyTorch trainer
 * (`torch_engine/trainer.py`): an engine snapshot written in Hugging Face layouts (linear
 * weights and LoRA matrices [out, in]) for a launch to start from, and read back into our
 * layout when a launch saves its state.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import * as path from "node:path";
import {
  type ContentInvalid,
  contentInvalid,
  isAdapterName,
  type KernelFailed,
  kernelFailed,
  type LlamaShape,
} from "../base/mod.ts";
import { isLinearWeight, transpose } from "../checkpoint/mod.ts";
import type { EngineSnapshot, NamedArray } from "../pipeline/mod.ts";
import {
  readSafetensors,
  tensorToFloat32,
  writeFileAtomic,
  writeSafetensors,
} from "../store/mod.ts";

/** Whether a tensor is stored transposed in HF/PEFT layouts: linear weights and LoRA matrices. */
function transposedInHf(name: string): boolean {
  return isLinearWeight(name) || isAdapterName(name);
}

function toHf(p: NamedArray, paramName = p.name): { shape: number[]; data: Float32Array } {
  if (!transposedInHf(paramName)) return { shape: [...p.shape], data: p.data };
  const [rows, cols] = p.shape as [number, number];
  return { shape: [cols, rows], data: transpose(p.data, rows, cols) };
}

const EXCHANGE = {
  model: "model.safetensors",
  moments: "moments.safetensors",
  state: "state.json",
} as const;

/** Writes `s` as an exchange directory for the trainer (HF layouts, float32). */
export function writeExchange(
  dir: string,
  s: EngineSnapshot,
  shape: LlamaShape,
): TE.TaskEither<KernelFailed, void> {
  return async () => {
    const fail = (e: { readonly message: string }) =>
      E.left(kernelFailed(`Cannot hand the model to PyTorch (${dir}): ${e.message}`));
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      return fail({ message: String(e) });
    }
    const model = Object.fromEntries(
      s.params.map((p) => [p.name, { dtype: "F32" as const, ...toHf(p) }]),
    );
    const w = await writeSafetensors(path.join(dir, EXCHANGE.model), model)();
    if (E.isLeft(w)) return fail(w.left);
    const moments = Object.fromEntries(
      s.moments.map((m) => [m.name, { dtype: "F32" as const, ...toHf(m, m.name.slice(2)) }]),
    );
    const mo = await writeSafetensors(path.join(dir, EXCHANGE.moments), moments)();
    if (E.isLeft(mo)) return fail(mo.left);
    const state = JSON.stringify({ shape, ...s.meta });
    const st = await writeFileAtomic(
      path.join(dir, EXCHANGE.state),
      new TextEncoder().encode(state),
    )();
    return E.isLeft(st) ? fail(st.left) : E.right(undefined);
  };
}

function fromHf(
  name: string,
  paramName: string,
  shape: readonly number[],
  data: Float32Array,
): NamedArray {
  if (!transposedInHf(paramName)) return { name, shape, data };
  const [rows, cols] = shape as [number, number];
  return { name, shape: [cols, rows], data: transpose(data, rows, cols) };
}

/** Reads an exchange directory the trainer wrote back into a snapshot (our layout). */
export function readExchange(
  dir: string,
): TE.TaskEither<KernelFailed | ContentInvalid, EngineSnapshot> {
  return async () => {
    const bad = (m: string) => E.left(contentInvalid(dir, `PyTorch's state is unreadable: ${m}`));
    const model = await readSafetensors(path.join(dir, EXCHANGE.model))();
    if (E.isLeft(model)) return bad(model.left.message);
    const moments = await readSafetensors(path.join(dir, EXCHANGE.moments))();
    if (E.isLeft(moments)) return bad(moments.left.message);
    let meta: EngineSnapshot["meta"];
    try {
      meta = JSON.parse(await Deno.readTextFile(path.join(dir, EXCHANGE.state)));
    } catch (e) {
      return bad(String(e));
    }
    const arrays = (
      d: typeof model.right,
      paramOf: (n: string) => string,
    ): E.Either<string, NamedArray[]> => {
      const out: NamedArray[] = [];
      for (const [name, raw] of d.tensors) {
        const data = tensorToFloat32(raw, name);
        if (E.isLeft(data)) return E.left(data.left.message);
        out.push(fromHf(name, paramOf(name), raw.shape, data.right));
      }
      return E.right(out);
    };
    const params = arrays(model.right, (n) => n);
    if (E.isLeft(params)) return bad(params.left);
    const adam = arrays(moments.right, (n) => n.slice(2));
    if (E.isLeft(adam)) return bad(adam.left);
    return E.right({
      params: params.right,
      moments: adam.right,
      meta: { trainable: meta.trainable, loraScale: meta.loraScale, adamStep: meta.adamStep },
    });
  };
}
