/**
 * Safetensors on disk, one tensor at a time: a lazy reader that parses the
 * header and then reads only the tensor asked for, and a streaming writer
 * that fixes the layout up front and accepts tensors in any order, so a
 * checkpoint larger than memory can be transformed tensor by tensor. Whole
 * files are written atomically (temporary name, fsync, rename).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import {
  type ConfigInvalid,
  configInvalid,
  contentInvalid,
  describeUnknown,
  type ext,
  type FileError,
  type IoFailed,
  ioFailed,
} from "../base/mod.ts";
import { openAtomicFile, writeAll } from "./atomic.ts";
import {
  type DecodedSafetensors,
  decodeSafetensors,
  encodeSafetensors,
  type Layout,
  parseHeader,
  planLayout,
  readHeaderLength,
  type SafetensorsHeader,
  type TensorInfo,
} from "./safetensors.ts";
import {
  byteSize,
  type RawTensor,
  type TensorInput,
  type TensorSpec,
  toRawTensor,
} from "./tensor_data.ts";

/** An open safetensors file whose header is parsed and whose tensors are read on demand. */
export interface SafetensorsReader {
  /** The file read, as it was given. */
  readonly path: string;
  /** The parsed header: names, dtypes, shapes and byte ranges of every tensor. */
  readonly header: SafetensorsHeader;
  /** Size of the file in bytes, checked against the header's last offset when it was opened. */
  readonly fileSize: number;
  /** The entry of `name`, if the file has it. */
  info(name: string): TensorInfo | undefined;
  /** Reads one tensor's bytes from the file (only those bytes). */
  read(name: string): ext.TaskEither<FileError, RawTensor>;
  /** Releases the file handle. */
  close(): void;
}

/** Reads exactly `length` bytes at `position` (a plain `read` may return fewer). */
async function readAt(file: Deno.FsFile, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(out.subarray(done));
    if (n === null) throw new Error(`file ended after ${position + done} bytes`);
    done += n;
  }
  return out;
}

/**
 * Opens a safetensors file and validates its header without reading tensor data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSafetensors, writeSafetensors } from "./safetensors_file.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSafetensors(`${dir}/m.safetensors`, { w: { dtype: "F32", shape: [1], data: new Float32Array([3]) } })();
 * const r = await openSafetensors(`${dir}/m.safetensors`)();
 * if (r._tag === "Right") {
 *   const t = await r.right.read("w")();
 *   assert(t._tag === "Right" && t.right.bytes.length === 4);
 *   r.right.close();
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function openSafetensors(path: string): ext.TaskEither<FileError, SafetensorsReader> {
  return async () => {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      return E.left(ioFailed(path, `Cannot open safetensors file: ${describeUnknown(e)}`));
    }
    try {
      const fileSize = (await file.stat()).size;
      const first8 = fileSize >= 8 ? await readAt(file, 0, 8) : new Uint8Array(0);
      const n = readHeaderLength(first8, fileSize, path);
      if (E.isLeft(n)) {
        file.close();
        return n;
      }
      const headerBytes = await readAt(file, 8, n.right);
      const header = parseHeader(headerBytes, fileSize - 8 - n.right, path);
      if (E.isLeft(header)) {
        file.close();
        return header;
      }
      const byName = new Map(header.right.tensors);
      // Reads share one handle and its seek position, so they run one after another.
      let queue: Promise<unknown> = Promise.resolve();
      let closed = false;
      const reader: SafetensorsReader = {
        path,
        header: header.right,
        fileSize,
        info: (name) => byName.get(name),
        read: (name) => () => {
          const info = byName.get(name);
          if (info === undefined) {
            return Promise.resolve(E.left(contentInvalid(path, `No tensor "${name}" in the file`)));
          }
          if (closed) return Promise.resolve(E.left(ioFailed(path, "Reader is closed")));
          const job = queue.then(() =>
            readAt(file, header.right.dataStart + info.begin, info.end - info.begin)
          );
          queue = job.catch(() => undefined);
          return job.then(
            (bytes) => E.right({ dtype: info.dtype, shape: info.shape, bytes }),
            (e) => E.left(ioFailed(path, `Cannot read tensor "${name}": ${describeUnknown(e)}`)),
          );
        },
        close: () => {
          if (!closed) file.close();
          closed = true;
        },
      };
      return E.right(reader);
    } catch (e) {
      file.close();
      return E.left(ioFailed(path, `Cannot read safetensors header: ${describeUnknown(e)}`));
    }
  };
}

/**
 * Reads and decodes a whole safetensors file into memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readSafetensors } from "./safetensors_file.ts";
 * const r = await readSafetensors("/no/such.safetensors")();
 * assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function readSafetensors(path: string): ext.TaskEither<FileError, DecodedSafetensors> {
  return TE.flatMapEither(
    TE.tryCatch(
      () => Deno.readFile(path),
      (e) => ioFailed(path, `Cannot read safetensors file: ${describeUnknown(e)}`),
    ),
    (bytes) => decodeSafetensors(bytes, path),
  );
}

/**
 * Writes named tensors to `path` atomically (the whole file appears at once or not at all).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeSafetensors } from "./safetensors_file.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await writeSafetensors(`${dir}/a.safetensors`, {
 *   b: { dtype: "BF16", shape: [2], data: new Float32Array([1, 2]) },
 * }, { step: "10" })();
 * assert(r._tag === "Right");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, TensorInput>>,
  metadata: Readonly<Record<string, string>> = {},
): ext.TaskEither<IoFailed | ConfigInvalid, void> {
  return async () => {
    const bytes = encodeSafetensors(tensors, metadata);
    if (E.isLeft(bytes)) return bytes;
    const opened = await openAtomicFile(path)();
    if (E.isLeft(opened)) return opened;
    const written = await opened.right.write(bytes.right)();
    const done = E.isLeft(written) ? written : await opened.right.commit()();
    if (E.isLeft(done)) await opened.right.abort();
    return done;
  };
}

/** Writes a file whose layout is fixed before any tensor bytes are supplied. */
export interface SafetensorsWriter {
  /** The final path: the bytes go to a temporary file that `commit` renames onto it. */
  readonly path: string;
  /** The header written first and the byte range each tensor must fill. */
  readonly layout: Layout;
  /** Writes one tensor (any order); its dtype and shape must match the spec given at creation. */
  write(
    name: string,
    tensor: TensorInput | RawTensor,
  ): ext.TaskEither<IoFailed | ConfigInvalid, void>;
  /** Checks every tensor was written, then makes the file visible at `path`. */
  commit(): ext.TaskEither<IoFailed | ConfigInvalid, void>;
  /** Discards the temporary file. */
  abort(): Promise<void>;
}

function sameSpec(a: TensorSpec, b: TensorSpec): boolean {
  return a.dtype === b.dtype && a.shape.length === b.shape.length &&
    a.shape.every((d, i) => d === b.shape[i]);
}

/**
 * Starts a streamed safetensors file: the header is written from `specs` at once, then each
 * tensor's bytes go straight to their offset, so only one tensor is in memory at a time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSafetensorsWriter } from "./safetensors_file.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await createSafetensorsWriter(`${dir}/big.safetensors`, [["x", { dtype: "I32", shape: [2] }]])();
 * if (w._tag === "Right") {
 *   await w.right.write("x", { dtype: "I32", shape: [2], data: new Int32Array([7, 8]) })();
 *   assert((await w.right.commit()())._tag === "Right");
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function createSafetensorsWriter(
  path: string,
  specs: ReadonlyArray<readonly [string, TensorSpec]>,
  metadata: Readonly<Record<string, string>> = {},
): ext.TaskEither<IoFailed | ConfigInvalid, SafetensorsWriter> {
  return async () => {
    const layout = planLayout(specs, metadata);
    if (E.isLeft(layout)) return layout;
    const opened = await openAtomicFile(path)();
    if (E.isLeft(opened)) return opened;
    const atomic = opened.right;
    const { header, tensors, fileSize } = layout.right;
    try {
      await writeAll(atomic.file, header);
      // Reserve the full size so a missing tensor is detectable rather than a short file.
      await atomic.file.truncate(fileSize);
    } catch (e) {
      await atomic.abort();
      return E.left(ioFailed(path, `Cannot write safetensors header: ${describeUnknown(e)}`));
    }
    const byName = new Map(tensors);
    const written = new Set<string>();
    let queue: Promise<unknown> = Promise.resolve();
    const writer: SafetensorsWriter = {
      path,
      layout: layout.right,
      write: (name, tensor) => async () => {
        const info = byName.get(name);
        if (info === undefined) {
          return E.left(configInvalid(`tensor "${name}"`, "not in the planned layout"));
        }
        if (!sameSpec(info, tensor)) {
          return E.left(
            configInvalid(
              `tensor "${name}"`,
              `planned ${info.dtype} ${JSON.stringify(info.shape)}, got ${tensor.dtype} ${
                JSON.stringify(tensor.shape)
              }`,
            ),
          );
        }
        const raw = "bytes" in tensor ? E.right(tensor) : toRawTensor(tensor, name);
        if (E.isLeft(raw)) return raw;
        if (raw.right.bytes.length !== byteSize(info)) {
          return E.left(
            configInvalid(
              `tensor "${name}"`,
              `${raw.right.bytes.length} bytes, expected ${byteSize(info)}`,
            ),
          );
        }
        const job = queue.then(async () => {
          await atomic.file.seek(header.length + info.begin, Deno.SeekMode.Start);
          await writeAll(atomic.file, raw.right.bytes);
        });
        queue = job.catch(() => undefined);
        try {
          await job;
          written.add(name);
          return E.right(undefined);
        } catch (e) {
          return E.left(ioFailed(path, `Cannot write tensor "${name}": ${describeUnknown(e)}`));
        }
      },
      commit: () => async () => {
        await queue;
        const missing = tensors.map(([n]) => n).filter((n) => !written.has(n));
        if (missing.length > 0) {
          return E.left(
            configInvalid(
              path,
              `tensors never written: ${missing.map((n) => `"${n}"`).join(", ")}`,
            ),
          );
        }
        return await atomic.commit()();
      },
      abort: async () => {
        await queue;
        await atomic.abort();
      },
    };
    return E.right(writer);
  };
}
