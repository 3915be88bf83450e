/**
 * Any checkpoint directory in, any out: the format is recognised from what
 * the directory holds, and output directories appear whole or not at all
 * (written beside the target, renamed into place when complete).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { statfsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type ext, formatBytes, ioFailed } from "../base/mod.ts";
import { removeStaleTemps, writeDirAtomic, writeFileAtomic } from "../store/mod.ts";
import { exists, readJson } from "./_files.ts";
import type { HfDtype } from "./hf_config.ts";
import { checkOutput } from "./output_path.ts";
import { openHfCheckpoint, type SpecialTokens, writeHfCheckpoint } from "./hf_checkpoint.ts";
import type { CkptError, ModelView } from "./model_view.ts";
import { writePeftAdapter } from "./peft.ts";
import { CHECKPOINT_FILES, FINAL_FILES, RUN_DIR } from "./run_layout.ts";
import {
  openStepCheckpoint,
  type StepOpenOptions,
  writeStepCheckpoint,
} from "./step_checkpoint.ts";
import { mergeAdapters } from "./transforms.ts";

/** `hf`: a Hugging Face LLaMA directory; `step`: this project's `final/` or `checkpoint/`. */
export type CheckpointFormat = "hf" | "step";

/** The sub-directory a Hugging Face export puts PEFT adapters in. */
export const ADAPTER_DIR = "adapter";

/** A checkpoint open for reading and the format it was found in. */
export interface OpenedCheckpoint {
  /** The model as a view: shape, tensors read on demand, adapters if any. */
  readonly view: ModelView;
  /** The format the directory was recognised as. */
  readonly format: CheckpointFormat;
}

/**
 * Opens a checkpoint directory: `config.json` with `hidden_size` (Hugging Face) or
 * `hidden` (our `final/`), or `state.json` (our `checkpoint/`). A path to a
 * `.safetensors` file inside one (as `report.json`'s `finalCheckpoint` gives
 * it) opens the directory that holds it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openCheckpoint } from "./checkpoint_dir.ts";
 * const r = await openCheckpoint("/no/such/dir")();
 * assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function openCheckpoint(
  path: string,
  options: StepOpenOptions = {},
): ext.TaskEither<CkptError, OpenedCheckpoint> {
  return async () => {
    const dir = await checkpointDirOf(path);
    const config = `${dir}/${FINAL_FILES.config}`;
    if (await exists(config)) {
      const json = await readJson(config)();
      if (E.isLeft(json)) return json;
      const ours = typeof json.right === "object" && json.right !== null && "hidden" in json.right;
      const view = ours ? await openStepCheckpoint(dir, options)() : await openHfCheckpoint(dir)();
      return E.map((v: ModelView) => ({ view: v, format: ours ? "step" : "hf" } as const))(view);
    }
    if (await exists(`${dir}/${CHECKPOINT_FILES.state}`)) {
      return E.map((v: ModelView) => ({ view: v, format: "step" } as const))(
        await openStepCheckpoint(dir, options)(),
      );
    }
    const inside = [];
    for (const sub of [RUN_DIR.final, RUN_DIR.checkpoint]) {
      if (await exists(`${dir}/${sub}`)) inside.push(`${dir}/${sub}`);
    }
    const hint = inside.length > 0 ? ` (a run directory? try ${inside.join(" or ")})` : "";
    return E.left(
      ioFailed(dir, `not a checkpoint: no config.json or state.json${hint}`),
    );
  };
}

/** The directory of a checkpoint given as itself or as one of its `.safetensors` files. */
async function checkpointDirOf(path: string): Promise<string> {
  if (!path.endsWith(".safetensors")) return path;
  try {
    return (await Deno.stat(path)).isFile ? dirname(path) : path;
  } catch {
    return path;
  }
}

/** Options of {@link writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /** Which format to write: a Hugging Face directory or this project's. */
  readonly format: CheckpointFormat;
  /** Stored dtype of a Hugging Face output (ours is always float32). */
  readonly dtype: HfDtype;
  /** Largest shard of a Hugging Face output. */
  readonly maxShardBytes: number;
  /**
   * `separate`: a Hugging Face output keeps the base weights and writes the adapters as
   * PEFT into `adapter/`; `merge`: they are merged into the weights. Ours always merges.
   */
  readonly adapters: "separate" | "merge";
  /** `base_model_name_or_path` of a PEFT adapter written beside the base. */
  readonly baseModel: string;
  /** Replace `out` if it exists (otherwise that is an error). */
  readonly replace: boolean;
  /**
   * Text files (name → text) written beside the weights inside the same atomic directory, e.g.
   * the tokeniser's (`tokenizerFiles`): the output never appears without them.
   */
  readonly extraFiles?: Readonly<Record<string, string>>;
  /** A Hugging Face output's `bos_token_id` / `eos_token_id` (the carried tokeniser's). */
  readonly specialTokens?: SpecialTokens;
}

/** What {@link writeCheckpoint} wrote: paths relative to `dir`. */
export interface WrittenCheckpoint {
  /** The directory written. */
  readonly dir: string;
  /**
   * Every file written, relative to `dir` (e.g. `model.safetensors`,
   * `adapter/adapter_config.json`).
   */
  readonly files: readonly string[];
}

/** Bytes a save of `view` writes (weights and adapters at the stored width). */
function outputBytes(view: ModelView, options: WriteCheckpointOptions): number {
  const width = options.format === "step" || options.dtype === "float32" ? 4 : 2;
  const tensors = [...view.tensors, ...(view.adapters?.tensors ?? [])];
  const extra = Object.values(options.extraFiles ?? {}).reduce(
    (sum, text) => sum + text.length * 3,
    0,
  );
  return tensors.reduce((sum, t) => sum + width * t.shape.reduce((a, b) => a * b, 1), extra);
}

/** Free bytes on the file system that holds `dir` (or its nearest existing ancestor). */
function freeBytes(dir: string): number | undefined {
  let at = resolve(dir);
  for (;;) {
    try {
      const s = statfsSync(at);
      return s.bavail * s.bsize;
    } catch {
      const parent = dirname(at);
      if (parent === at) return undefined;
      at = parent;
    }
  }
}

/**
 * Writes a view to `out` in `options.format`, streaming tensor by tensor; `out` appears
 * only when complete. Does not close the view.
 */
export function writeCheckpoint(
  view: ModelView,
  out: string,
  options: WriteCheckpointOptions,
): ext.TaskEither<CkptError, WrittenCheckpoint> {
  return async () => {
    // Library callers get the rule too: the view's own source is an input.
    const allowed = await checkOutput(
      { kind: "folder", path: out, replace: options.replace },
      [{ what: "the input", path: view.source, checkpoint: true }],
    );
    if (E.isLeft(allowed)) return allowed;
    const target = allowed.right;
    await removeStaleTemps(target);
    const needed = outputBytes(view, options);
    const free = freeBytes(dirname(resolve(target)));
    if (free !== undefined && needed > free) {
      return E.left(ioFailed(
        target,
        `writing the model needs ${formatBytes(needed)}, its disk has ${formatBytes(free)} free`,
      ));
    }
    const files: string[] = [];
    const model = options.format === "step" || options.adapters === "merge"
      ? mergeAdapters(view)
      : view;
    const written = await writeDirAtomic(target, (tmp) => async () => {
      for (const [name, text] of Object.entries(options.extraFiles ?? {})) {
        const w = await writeFileAtomic(`${tmp}/${name}`, text)();
        if (E.isLeft(w)) return w;
      }
      if (options.format === "step") {
        const w = await writeStepCheckpoint(model, tmp)();
        if (E.isLeft(w)) return w;
        files.push(...w.right);
        return E.right(undefined);
      }
      const w = await writeHfCheckpoint(model, tmp, options)();
      if (E.isLeft(w)) return w;
      files.push(...w.right.files);
      if (model.adapters === undefined) return E.right(undefined);
      const sub = `${tmp}/${ADAPTER_DIR}`;
      await Deno.mkdir(sub);
      const a = await writePeftAdapter(model.adapters, sub, {
        dtype: options.dtype,
        baseModel: options.baseModel,
        depth: model.shape.layers,
      })();
      if (E.isLeft(a)) return a;
      files.push(...a.right.map((f) => `${ADAPTER_DIR}/${f}`));
      return E.right(undefined);
    })();
    const extra = Object.keys(options.extraFiles ?? {});
    return E.isLeft(written) ? written : E.right({ dir: target, files: [...files, ...extra] });
  };
}
