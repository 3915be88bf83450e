/**
 * A run directory (`checkpoint/run_layout.ts` names its contents) as the
 * interpreter's `store` and `log` effects, held by one process at a time.
 *
 * Opening it settles whose it is before anything is written: a fresh run
 * refuses a folder that holds an earlier run (or replaces it when asked),
 * `--resume` refuses a folder with no run, a second writer finds the lock
 * held, and temporaries left by a killed writer are removed.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  configInvalid,
  contentInvalid,
  describeUnknown,
  type FileError,
  type IoFailed,
  ioFailed,
  type LlamaShape,
  type PipelineError,
} from "../base/mod.ts";
import {
  CHECKPOINT_FILES,
  checkpointStateText,
  FINAL_FILES,
  readCheckpointState,
  RUN_DIR,
  RUN_OUTPUTS,
  shapeConfigText,
  STEP_METADATA,
  type TokenizerFiles,
} from "../checkpoint/mod.ts";
import {
  type Checkpoint,
  decodeMetricLines,
  type EngineSnapshot,
  type LogEffect,
  type NamedArray,
  type RunMetric,
  RunMetricCodec,
  type StoreEffect,
} from "../pipeline/mod.ts";
import {
  lockDir,
  readSafetensors,
  recoverDir,
  removeStaleTemps,
  type TensorInput,
  tensorToFloat32,
  writeDirAtomic,
  writeFileAtomic,
  writeSafetensors,
} from "../store/mod.ts";
import { tensorboardLog } from "./tensorboard_log.ts";

/** How to treat the folder: a new run, the continuation of the run in it, or a replacement. */
export type RunDirMode = "fresh" | "resume" | "replace";

/** An open run directory: its effects, and the lock to release when the run ends. */
export interface RunDir {
  readonly dir: string;
  readonly store: StoreEffect;
  readonly log: LogEffect;
  /** Releases the lock (the OS releases it too if the process dies). */
  release(): void;
}

/** Options of {@link openRunDir}. */
export interface RunDirOptions {
  readonly mode: RunDirMode;
  /** Where human-readable lines go. */
  readonly print: (line: string) => void;
  /**
   * The tokeniser the run's ids belong to, as the files written beside every checkpoint's
   * weights (`tokenizerFiles`: Hugging Face's tokenizer.json and tokenizer_config.json, and
   * STEP's record).
   */
  readonly tokenizer?: TokenizerFiles;
  /** The model's shape when the run cannot change it (fine-tuning), recorded in checkpoints. */
  readonly shape?: LlamaShape;
  /**
   * Whether the metrics are also written as TensorBoard event files in `DIR/tensorboard/`
   * (`tensorboard_log.ts`); unset: not.
   */
  readonly tensorboard?: boolean;
}

async function present(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of RUN_OUTPUTS) {
    try {
      await Deno.lstat(`${dir}/${name}`);
      found.push(name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return found;
}

/** Refuses what `mode` cannot take; clears the earlier run's outputs for `replace`. */
async function claim(dir: string, mode: RunDirMode): Promise<E.Either<PipelineError, void>> {
  for (const name of RUN_OUTPUTS) await removeStaleTemps(`${dir}/${name}`);
  for (const name of [RUN_DIR.checkpoint, RUN_DIR.final]) {
    const r = await recoverDir(`${dir}/${name}`)();
    if (E.isLeft(r)) return r;
  }
  const earlier = await present(dir);
  if (mode === "resume") {
    return earlier.length > 0 ? E.right(undefined) : E.left(configInvalid(
      "--resume",
      `"${dir}" holds no run to resume (no ${RUN_DIR.metrics}, ${RUN_DIR.checkpoint}/ or ` +
        `${RUN_DIR.final}/); leave out --resume to start one`,
    ));
  }
  if (earlier.length === 0) return E.right(undefined);
  if (mode === "fresh") {
    return E.left(configInvalid(
      "--out",
      `"${dir}" holds an earlier run (${earlier.join(", ")}); pass --resume to continue it, ` +
        "--force to replace it, or choose another --out",
    ));
  }
  for (const name of earlier) await Deno.remove(`${dir}/${name}`, { recursive: true });
  return E.right(undefined);
}

/**
 * Opens `dir` as a run directory in `mode`, holding its lock until `release`.
 *
 * @example
 * ```ts
 * import { openRunDir } from "./run_dir.ts";
 * const dir = await Deno.makeTempDir();
 * const opened = await openRunDir(`${dir}/run`, { mode: "fresh", print: console.log })();
 * if (opened._tag === "Right") opened.right.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function openRunDir(
  dir: string,
  options: RunDirOptions,
): TE.TaskEither<PipelineError, RunDir> {
  return async () => {
    if (dir.trim() === "") return E.left(configInvalid("--out", "is empty: name a folder"));
    if (options.mode === "resume") {
      const exists = await Deno.stat(dir).then(() => true, () => false);
      if (!exists) {
        return E.left(
          configInvalid("--resume", `"${dir}" does not exist: there is no run to resume`),
        );
      }
    }
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      return E.left(ioFailed(dir, `cannot create the run directory: ${describeUnknown(e)}`));
    }
    const held = await lockDir(dir, "run");
    if (E.isLeft(held)) return held;
    const release = (): void => held.right.release();
    const claimed = await claim(dir, options.mode).catch((e) =>
      E.left(ioFailed(dir, `cannot prepare the run directory: ${describeUnknown(e)}`))
    );
    if (E.isLeft(claimed)) {
      release();
      return claimed;
    }
    return E.right({
      dir,
      store: runDirStore(dir, options.tokenizer, options.shape),
      log: runDirLog(dir, options.print, { tensorboard: options.tensorboard ?? false }),
      release,
    });
  };
}

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

function readArrays(path: string): TE.TaskEither<FileError, NamedArray[]> {
  return TE.flatMapEither(readSafetensors(path), (file) => {
    const out: NamedArray[] = [];
    for (const [name, raw] of file.tensors) {
      const data = tensorToFloat32(raw, name);
      if (E.isLeft(data)) return E.left(contentInvalid(path, data.left.message));
      // Copy: decoded tensors are views into the file buffer, which the engine must not alias.
      out.push({ name, shape: raw.shape, data: new Float32Array(data.right) });
    }
    return E.right(out);
  });
}

function loadCheckpoint(ckpt: string): TE.TaskEither<FileError, Checkpoint | undefined> {
  return async () => {
    const recovered = await recoverDir(ckpt)();
    if (E.isLeft(recovered)) return recovered;
    if (recovered.right === "absent") return E.right(undefined);
    const state = await readCheckpointState(ckpt)();
    if (E.isLeft(state)) return state;
    const params = await readArrays(`${ckpt}/${CHECKPOINT_FILES.model}`)();
    if (E.isLeft(params)) return params;
    const moments = await readArrays(`${ckpt}/${CHECKPOINT_FILES.moments}`)();
    if (E.isLeft(moments)) return moments;
    const snapshot: EngineSnapshot = {
      params: params.right,
      moments: moments.right,
      meta: state.right.meta,
    };
    return E.right({ snapshot, progress: state.right.progress });
  };
}

/** The store effect over `dir` (the caller holds the directory's lock). */
export function runDirStore(
  dir: string,
  tokenizer?: TokenizerFiles,
  fixedShape?: LlamaShape,
): StoreEffect {
  // The tokeniser travels with the weights, inside the same atomic directory: evaluation and
  // generation read it from the checkpoint itself, and HF loaders find a complete model folder.
  const tokenizerRecord = (tmp: string) =>
    Object.entries(tokenizer ?? {}).map(([name, text]) => writeFileAtomic(`${tmp}/${name}`, text));
  // A shape that cannot change during the run (fine-tuning) makes each checkpoint open on its
  // own; pre-training's depth changes at every growth, so its checkpoints take it from the run.
  const shapeRecord = (tmp: string) =>
    fixedShape === undefined
      ? []
      : [writeFileAtomic(`${tmp}/${FINAL_FILES.config}`, shapeConfigText(fixedShape))];
  const ckpt = `${dir}/${RUN_DIR.checkpoint}`;
  return {
    saveCheckpoint: (c: Checkpoint) =>
      writeDirAtomic(ckpt, (tmp) =>
        writesInOrder(ckpt, [
          writeSafetensors(`${tmp}/${CHECKPOINT_FILES.model}`, record(c.snapshot.params)),
          writeSafetensors(`${tmp}/${CHECKPOINT_FILES.moments}`, record(c.snapshot.moments)),
          writeFileAtomic(
            `${tmp}/${CHECKPOINT_FILES.state}`,
            checkpointStateText({ progress: c.progress, meta: c.snapshot.meta }),
          ),
          ...tokenizerRecord(tmp),
          ...shapeRecord(tmp),
        ])),
    loadCheckpoint: () => loadCheckpoint(ckpt),
    saveFinal: (snapshot: EngineSnapshot, shape: LlamaShape) => {
      const final = `${dir}/${RUN_DIR.final}`;
      return TE.map(() => `${final}/${FINAL_FILES.model}`)(
        writeDirAtomic(final, (tmp) =>
          writesInOrder(final, [
            writeSafetensors(
              `${tmp}/${FINAL_FILES.model}`,
              record(snapshot.params),
              STEP_METADATA,
            ),
            writeFileAtomic(`${tmp}/${FINAL_FILES.config}`, shapeConfigText(shape)),
            ...tokenizerRecord(tmp),
          ])),
      );
    },
    writeText: (name: string, text: string) =>
      TE.map(() => `${dir}/${name}`)(writeFileAtomic(`${dir}/${name}`, text)),
  };
}

/** Options of {@link runDirLog}. */
export interface RunDirLogOptions {
  /** Whether each record is also appended to the session's TensorBoard event file. */
  readonly tensorboard: boolean;
}

/**
 * The log effect: lines to `print`, metrics appended to the run's metrics file and, with
 * `tensorboard`, to the session's event file in `DIR/tensorboard/` (a failed event write is a
 * warning: the metrics file is written first and the run goes on).
 */
export function runDirLog(
  dir: string,
  print: (line: string) => void,
  options: RunDirLogOptions = { tensorboard: false },
): LogEffect {
  const path = `${dir}/${RUN_DIR.metrics}`;
  const events = options.tensorboard
    ? tensorboardLog(`${dir}/${RUN_DIR.tensorboard}`, { print })
    : undefined;
  return {
    line: print,
    metric: (r) => {
      Deno.writeTextFileSync(path, JSON.stringify(r) + "\n", { append: true });
      events?.record(r);
    },
    truncate: (records: number) =>
      TE.tryCatch(async () => {
        let text = "";
        try {
          text = await Deno.readTextFile(path);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
        const lines = text.split("\n").filter((l) => l.length > 0);
        const kept = lines.slice(0, records);
        await writeFileAtomic(path, kept.map((l) => l + "\n").join(""))();
        events?.resumed(kept, lines.slice(records));
      }, (e) => ioFailed(path, describeUnknown(e))),
  };
}

/**
 * The metrics of a run directory, each line decoded (none when the file does not exist yet); a
 * damaged line is `ContentInvalid` naming the file and the line.
 */
export async function readMetrics(dir: string): Promise<E.Either<FileError, RunMetric[]>> {
  const path = `${dir}/${RUN_DIR.metrics}`;
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return E.left(ioFailed(path, describeUnknown(e)));
  }
  return decodeMetricLines(RunMetricCodec, text, path);
}
