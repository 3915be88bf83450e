/**
 * hyparquet's random-access view of an open Parquet file, shared by the in-memory reader
 * (`readers.ts`) and the streamed one (`stream_sources.ts`).
 *
 * @module
 */
import type { AsyncBuffer } from "hyparquet";

/**
 * hyparquet's random-access buffer over an open file; reads run one at a time, and `onBytes`
 * hears how many bytes each read brought in (the streamed reader's progress).
 */
export function parquetFileBuffer(
  handle: Deno.FsFile,
  size: number,
  onBytes: (n: number) => void = () => {},
): AsyncBuffer {
  let queue: Promise<unknown> = Promise.resolve();
  return {
    byteLength: size,
    slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = end ?? size;
      const job = queue.then(async () => {
        const out = new Uint8Array(stop - start);
        await handle.seek(start, Deno.SeekMode.Start);
        let done = 0;
        while (done < out.length) {
          const n = await handle.read(out.subarray(done));
          if (n === null) throw new Error(`file ended at byte ${start + done}`);
          done += n;
        }
        onBytes(done);
        return out.buffer;
      });
      queue = job.catch(() => undefined);
      return job;
    },
  };
}
