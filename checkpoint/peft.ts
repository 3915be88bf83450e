/**
 * LoRA adapters in the PEFT format: a directory with `adapter_config.json`
 * (PEFT's `LoraConfig`: `peft_type: "LORA"`, `task_type: "CAUSAL_LM"`, `r`,
 * `lora_alpha`, `target_modules`, `layers_to_transform`, …) and
 * `adapter_model.safetensors` whose tensors are named as `save_pretrained`
 * names them, e.g. `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`
 * [r, in] and `….lora_B.weight` [out, r] — PEFT's A and B are the transposes
 * of ours (A [in, r], B [r, out]); the delta is the same, scale·(B·A)ᵀ = scale·A·B.
 *
 * STEP puts adapters only on the frozen layers, so the config lists those in
 * `layers_to_transform` (with `layers_pattern: "layers"`); when the adapted
 * (layer, projection) pairs are not a full product, `target_modules` lists
 * the full module names instead, which PEFT matches exactly.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  configInvalid,
  contentInvalid,
  type ext,
  ioFailed,
  type LlamaShape,
  parseProjectionName,
  type Projection,
  projectionDims,
  projectionModule,
  PROJECTIONS,
} from "../base/mod.ts";
import { createSafetensorsWriter, type RawTensor, writeFileAtomic } from "../store/mod.ts";
import { exists, jsonText, openAll, readJson } from "./_files.ts";
import { type HfDtype, safetensorsDtype } from "./hf_config.ts";
import { transpose } from "./layout.ts";
import {
  type CkptError,
  floatValues,
  type LazyTensor,
  type LoraAdapters,
  shapeMismatch,
} from "./model_view.ts";

/** The adapter config file name. */
export const ADAPTER_CONFIG = "adapter_config.json";
/** The adapter weights file name. */
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

const PREFIX = "base_model.model.";

/** PEFT's tensor name of one of our adapter names (`….q_proj.lora_A` → `base_model.model.….q_proj.lora_A.weight`). */
export function peftTensorName(ours: string): string {
  return `${PREFIX}${ours}.weight`;
}

/** Options of {@link peftConfig} and {@link writePeftAdapter}. */
export interface PeftOptions {
  /** `base_model_name_or_path`: where PEFT users load the base model from. */
  readonly baseModel: string;
  /** The base model's depth (a full set of layers writes `layers_to_transform: null`). */
  readonly depth: number;
}

/**
 * The `adapter_config.json` of a set of adapters.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peftConfig } from "./peft.ts";
 * const tensors = ["self_attn.q_proj", "self_attn.v_proj"].flatMap((m) =>
 *   [0, 1].map((l) => ({ name: `model.layers.${l}.${m}.lora_A`, shape: [8, 4], load: () => () => Promise.reject() }))
 * );
 * const c = peftConfig({ rank: 4, alpha: 8, scale: 2, targets: ["q", "v"], layers: [0, 1], tensors },
 *   { baseModel: "out/hf", depth: 4 });
 * assert(c.r === 4 && JSON.stringify(c.layers_to_transform) === "[0,1]");
 * ```
 */
export function peftConfig(adapters: LoraAdapters, options: PeftOptions): Record<string, unknown> {
  const present = new Set(
    adapters.tensors.filter((t) => t.name.endsWith(".lora_A")).map((t) =>
      t.name.slice(0, -".lora_A".length)
    ),
  );
  const full = present.size === adapters.layers.length * adapters.targets.length;
  const allLayers = adapters.layers.length === options.depth;
  return {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: options.baseModel,
    r: adapters.rank,
    lora_alpha: adapters.alpha,
    lora_dropout: 0,
    target_modules: full ? adapters.targets.map((p) => `${p}_proj`) : [...present].sort(),
    layers_to_transform: full && !allLayers ? [...adapters.layers] : null,
    layers_pattern: full && !allLayers ? "layers" : null,
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/**
 * Writes adapters as a PEFT LoRA directory into the existing directory `dir`.
 * Only α / r is representable (PEFT's scale), so `adapters.scale` must equal it.
 */
export function writePeftAdapter(
  adapters: LoraAdapters,
  dir: string,
  options: PeftOptions & { readonly dtype: HfDtype },
): ext.TaskEither<CkptError, string[]> {
  return async () => {
    const dtype = safetensorsDtype(options.dtype);
    const peftShape = (t: LazyTensor): number[] => [t.shape[1]!, t.shape[0]!];
    const writer = await createSafetensorsWriter(
      `${dir}/${ADAPTER_WEIGHTS}`,
      adapters.tensors.map((t) =>
        [peftTensorName(t.name), { dtype, shape: peftShape(t) }] as const
      ),
      { format: "pt" },
    )();
    if (E.isLeft(writer)) return writer;
    for (const t of adapters.tensors) {
      const values = await t.load()();
      const w = E.isLeft(values) ? values : await writer.right.write(peftTensorName(t.name), {
        dtype,
        shape: peftShape(t),
        data: transpose(values.right, t.shape[0]!, t.shape[1]!),
      })();
      if (E.isLeft(w)) {
        await writer.right.abort();
        return w;
      }
    }
    const committed = await writer.right.commit()();
    if (E.isLeft(committed)) return committed;
    const c = await writeFileAtomic(
      `${dir}/${ADAPTER_CONFIG}`,
      jsonText(peftConfig(adapters, options)),
    )();
    return E.isLeft(c) ? c : E.right([ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
  };
}

/** Adapters read from a PEFT directory, holding its file open until `close`. */
export interface OpenAdapters extends LoraAdapters {
  /** The PEFT directory the adapters were read from. */
  readonly source: string;
  /** Closes the adapter file; tensors not yet loaded cannot be read after it. */
  close(): void;
}

const TENSOR = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/;

/** r, α and the scale from `adapter_config.json`, refusing what this project cannot merge. */
function readConfig(
  json: unknown,
  where: string,
): ext.Either<CkptError, { rank: number; alpha: number; scale: number }> {
  const c = (typeof json === "object" && json !== null ? json : {}) as Record<string, unknown>;
  const bad = (key: string, message: string): ext.Either<CkptError, never> =>
    E.left(configInvalid(`${where}: ${key}`, message));
  if (c.peft_type !== "LORA") {
    return bad("peft_type", `expected "LORA", got ${JSON.stringify(c.peft_type)}`);
  }
  const rank = c.r;
  if (!Number.isInteger(rank) || (rank as number) < 1) {
    return bad("r", `expected a positive integer, got ${JSON.stringify(rank)}`);
  }
  const alpha = c.lora_alpha;
  if (typeof alpha !== "number" || !(alpha > 0)) {
    return bad("lora_alpha", `expected a positive number, got ${JSON.stringify(alpha)}`);
  }
  for (const key of ["use_dora", "fan_in_fan_out"]) {
    if (c[key] === true) return bad(key, "is true, which this project cannot merge");
  }
  if (c.bias !== undefined && c.bias !== "none") {
    return bad("bias", `only "none" is supported, got ${JSON.stringify(c.bias)}`);
  }
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = c[key];
    if (v !== undefined && v !== null && Object.keys(v as object).length > 0) {
      return bad(key, "per-module ranks or alphas are not supported");
    }
  }
  const r = rank as number;
  // Rank-stabilised LoRA scales by α/√r instead of α/r.
  const scale = c.use_rslora === true ? alpha / Math.sqrt(r) : alpha / r;
  return E.right({ rank: r, alpha, scale });
}

/**
 * Opens a PEFT LoRA directory for a base model of `shape` (its depth in `shape.layers`),
 * checking names and shapes; tensors load in our layout (A [in, r], B [r, out]).
 */
export function openPeftAdapter(
  dir: string,
  shape: LlamaShape,
): ext.TaskEither<CkptError, OpenAdapters> {
  return async () => {
    const configPath = `${dir}/${ADAPTER_CONFIG}`;
    const json = await readJson(configPath)();
    if (E.isLeft(json)) return json;
    const config = readConfig(json.right, configPath);
    if (E.isLeft(config)) return config;
    const { rank } = config.right;
    const path = `${dir}/${ADAPTER_WEIGHTS}`;
    if (!await exists(path) && await exists(`${dir}/adapter_model.bin`)) {
      return E.left(
        ioFailed(dir, "only safetensors adapters are supported, found adapter_model.bin"),
      );
    }
    const opened = await openAll([path]);
    if (E.isLeft(opened)) return opened;
    const reader = opened.right[0]!;
    const fail = (e: CkptError): ext.Either<CkptError, never> => {
      reader.close();
      return E.left(e);
    };
    const byModule = new Map<string, { layer: number; p: Projection; a?: string; b?: string }>();
    for (const [name, info] of reader.header.tensors) {
      const m = TENSOR.exec(name);
      const at = m === null ? undefined : parseProjectionName(`${m[1]}.weight`);
      if (m === null || at === undefined || at.rest !== "weight" || at.layer >= shape.layers) {
        return fail(
          contentInvalid(
            path,
            `unexpected tensor "${name}" (not a LoRA matrix of a projection of a ${shape.layers}-layer LLaMA)`,
          ),
        );
      }
      const d = projectionDims(shape, at.p);
      const want = m[2] === "A" ? [rank, d.in] : [d.out, rank];
      const wrong = shapeMismatch(name, info.shape, want, `r = ${rank} and the base model`);
      if (wrong !== undefined) return fail(configInvalid(path, wrong));
      const module = m[1]!;
      const entry = byModule.get(module) ?? { layer: at.layer, p: at.p };
      byModule.set(module, m[2] === "A" ? { ...entry, a: name } : { ...entry, b: name });
    }
    if (byModule.size === 0) return fail(contentInvalid(path, "holds no LoRA tensors"));
    const tensors: LazyTensor[] = [];
    const layers = new Set<number>();
    const targets = new Set<Projection>();
    const sorted = [...byModule].sort(([, x], [, y]) =>
      x.layer - y.layer || PROJECTIONS.indexOf(x.p) - PROJECTIONS.indexOf(y.p)
    );
    for (const [module, e] of sorted) {
      if (e.a === undefined || e.b === undefined) {
        return fail(
          contentInvalid(path, `"${module}" has lora_${e.a === undefined ? "B" : "A"} only`),
        );
      }
      const d = projectionDims(shape, e.p);
      const ours = projectionModule(e.layer, e.p);
      tensors.push(
        transposed(reader.path, reader.read, e.a, `${ours}.lora_A`, [rank, d.in]),
        transposed(reader.path, reader.read, e.b, `${ours}.lora_B`, [d.out, rank]),
      );
      layers.add(e.layer);
      targets.add(e.p);
    }
    return E.right({
      ...config.right,
      targets: PROJECTIONS.filter((p) => targets.has(p)),
      layers: [...layers].sort((x, y) => x - y),
      tensors,
      source: dir,
      close: () => reader.close(),
    });
  };
}

function transposed(
  file: string,
  read: (name: string) => ext.TaskEither<CkptError, RawTensor>,
  stored: string,
  name: string,
  peftShape: readonly [number, number],
): LazyTensor {
  const [rows, cols] = peftShape;
  return {
    name,
    shape: [cols, rows],
    load: () =>
      TE.flatMapEither(
        read(stored),
        (raw) =>
          E.map((v: Float32Array) => transpose(v, rows, cols))(floatValues(raw, file, stored)),
      ),
  };
}
