/**
 * A run directory as the interpreter's `store` and `log` effects:
 *
 * ```
 * DIR/metrics.jsonl          one JSON record per line (train, eval, merge, grow, stage)
 * DIR/checkpoint/            replaced atomically: model.safetensors, moments.safetensors, state.json
 * DIR/final/                 the merged model: model.safetensors + config.json
 * DIR/report.json, *.svg     written at the end
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { describeUnknown, type IoFailed, ioFailed } from "../pipeline/errors.ts";
import type {
  Checkpoint,
  EngineSnapshot,
  LogEffect,
  NamedArray,
  StoreEffect,
} from "../pipeline/effects.ts";
import type { LlamaShape } from "../solvers/llama_shape.ts";
import {
  readSafetensors,
  recoverDir,
  type TensorInput,
  tensorToFloat32,
  writeDirAtomic,
  writeFileAtomic,
  writeSafetensors,
} from "../store/mod.ts";

function record(arrays: readonly NamedArray[]): Record<string, TensorInput> {
  return Object.fromEntries(
    arrays.map((a) => [a.name, { dtype: "F32", shape: [...a.shape], data: a.data }] as const),
  );
}

type Failure = { readonly _tag: string; readonly message: string };

/** Runs writes in order; any failure becomes an `IoFailed` naming `path`. */
function writesInOrder(
  path: string,
  writes: readonly TE.TaskEither<Failure, void>[],
): TE.TaskEither<IoFailed, void> {
  return TE.bimap(
    (e: Failure) => (e._tag === "IoFailed" ? (e as IoFailed) : ioFailed(path, e.message)),
    () => undefined,
  )(TE.sequenceSeqArray(writes));
}

function readArrays(path: string): TE.TaskEither<IoFailed, NamedArray[]> {
  return TE.flatMapEither(readSafetensors(path), (file) => {
    const out: NamedArray[] = [];
    for (const [name, raw] of file.tensors) {
      const data = tensorToFloat32(raw, name);
      if (E.isLeft(data)) return E.left(ioFailed(path, data.left.message));
      // Copy: decoded tensors are views into the file buffer, which the engine must not alias.
      out.push({ name, shape: raw.shape, data: new Float32Array(data.right) });
    }
    return E.right(out);
  });
}

/** The store effect over `dir`. */
export function runDirStore(dir: string): StoreEffect {
  const ckpt = `${dir}/checkpoint`;
  return {
    saveCheckpoint: (c: Checkpoint) =>
      writeDirAtomic(ckpt, (tmp) =>
        writesInOrder(ckpt, [
          writeSafetensors(`${tmp}/model.safetensors`, record(c.snapshot.params)),
          writeSafetensors(`${tmp}/moments.safetensors`, record(c.snapshot.moments)),
          writeFileAtomic(
            `${tmp}/state.json`,
            new TextEncoder().encode(
              JSON.stringify({ progress: c.progress, meta: c.snapshot.meta }, null, 1),
            ),
          ),
        ])),
    loadCheckpoint: () => async () => {
      const recovered = await recoverDir(ckpt)();
      if (E.isLeft(recovered)) return recovered;
      if (recovered.right === "absent") return E.right(undefined);
      let state: { progress?: unknown; meta?: unknown };
      try {
        state = JSON.parse(await Deno.readTextFile(`${ckpt}/state.json`));
      } catch (e) {
        return E.left(
          ioFailed(`${ckpt}/state.json`, `corrupted checkpoint state: ${describeUnknown(e)}`),
        );
      }
      if (
        typeof state.progress !== "object" || state.progress === null ||
        typeof state.meta !== "object"
      ) {
        return E.left(
          ioFailed(`${ckpt}/state.json`, "corrupted checkpoint state: missing progress or meta"),
        );
      }
      const params = await readArrays(`${ckpt}/model.safetensors`)();
      if (E.isLeft(params)) return params;
      const moments = await readArrays(`${ckpt}/moments.safetensors`)();
      if (E.isLeft(moments)) return moments;
      const snapshot: EngineSnapshot = {
        params: params.right,
        moments: moments.right,
        meta: state.meta as Record<string, unknown>,
      };
      return E.right({ snapshot, progress: state.progress as Record<string, unknown> });
    },
    saveFinal: (snapshot: EngineSnapshot, shape: LlamaShape) => {
      const final = `${dir}/final`;
      return TE.map(() => `${final}/model.safetensors`)(
        writeDirAtomic(final, (tmp) =>
          writesInOrder(final, [
            writeSafetensors(`${tmp}/model.safetensors`, record(snapshot.params), {
              format: "step-llama",
              layout: "linear weights are [in, out]",
            }),
            writeFileAtomic(
              `${tmp}/config.json`,
              new TextEncoder().encode(JSON.stringify(shape, null, 2)),
            ),
          ])),
      );
    },
    writeText: (name: string, text: string) =>
      TE.map(() => `${dir}/${name}`)(
        writeFileAtomic(`${dir}/${name}`, new TextEncoder().encode(text)),
      ),
  };
}

/** The log effect: lines to `print`, metrics appended to `DIR/metrics.jsonl`. */
export function runDirLog(dir: string, print: (line: string) => void): LogEffect {
  const path = `${dir}/metrics.jsonl`;
  return {
    line: print,
    metric: (r) => Deno.writeTextFileSync(path, JSON.stringify(r) + "\n", { append: true }),
    truncate: (records: number) =>
      TE.tryCatch(async () => {
        let text = "";
        try {
          text = await Deno.readTextFile(path);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
        const kept = text.split("\n").filter((l) => l.length > 0).slice(0, records);
        await writeFileAtomic(path, new TextEncoder().encode(kept.map((l) => l + "\n").join("")))();
      }, (e) => ioFailed(path, describeUnknown(e))),
  };
}

/** Reads the metrics of a run directory. */
export async function readMetrics(dir: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(`${dir}/metrics.jsonl`).catch(() => "");
  return text.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}
