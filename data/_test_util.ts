/**
 * Writes token shard sets by hand, in the on-disk format `shard_set.ts` reads, for tests: an
 * independent writer (no code shared with the builder), so reading tests check the format
 * itself.
 *
 * @module
 */

/** DataView's flag: shard files are little-endian. */
const LE = true;

/** How {@link writeShardSetForTest} lays the documents out. */
export interface TestShardOptions {
  /** Vocabulary size (uint32 storage above 65,536). */
  readonly vocabSize: number;
  /** End-of-document id written in the manifest. */
  readonly eot: number;
  /** A shard is closed at the first document end at or past this many tokens. */
  readonly shardTokens: number;
}

/** Writes `docs` (each a document's ids, end-of-text included) as a shard set in `dir`. */
export async function writeShardSetForTest(
  dir: string,
  docs: readonly ArrayLike<number>[],
  options: TestShardOptions,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const wide = options.vocabSize > 65536;
  const shards: { file: string; docs: string; tokens: number; documents: number }[] = [];
  let pending: ArrayLike<number>[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const n = pending.reduce((a, d) => a + d.length, 0);
    const bytes = new Uint8Array(n * (wide ? 4 : 2));
    const view = new DataView(bytes.buffer);
    const ends = new Uint8Array(pending.length * 8);
    const endView = new DataView(ends.buffer);
    let at = 0;
    pending.forEach((d, k) => {
      for (let i = 0; i < d.length; i++, at++) {
        if (wide) view.setUint32(at * 4, d[i]!, LE);
        else view.setUint16(at * 2, d[i]!, LE);
      }
      endView.setFloat64(k * 8, at, LE);
    });
    const name = String(shards.length).padStart(5, "0");
    await Deno.writeFile(`${dir}/${name}.tok`, bytes);
    await Deno.writeFile(`${dir}/${name}.docs`, ends);
    shards.push({
      file: `${name}.tok`,
      docs: `${name}.docs`,
      tokens: n,
      documents: pending.length,
    });
    pending = [];
  };
  let size = 0;
  for (const d of docs) {
    pending.push(d);
    size += d.length;
    if (size >= options.shardTokens) {
      await flush();
      size = 0;
    }
  }
  await flush();
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify({
      format: "step-token-shards",
      version: 1,
      key: "test",
      tokenizer: "test",
      vocabSize: options.vocabSize,
      eot: options.eot,
      dtype: wide ? "uint32" : "uint16",
      tokens: shards.reduce((a, s) => a + s.tokens, 0),
      documents: docs.length,
      sourceBytes: 0,
      shards,
    }),
  );
}

/** `count` random documents of 1 to `maxLength` ids below `vocab - 1`, each ending with `eot`. */
export function randomDocuments(
  count: number,
  maxLength: number,
  vocab: number,
  eot: number,
  rand: () => number,
): Int32Array[] {
  return Array.from({ length: count }, () => {
    const d = new Int32Array(1 + Math.floor(rand() * maxLength));
    for (let i = 0; i < d.length - 1; i++) {
      const id = Math.floor(rand() * (vocab - 1));
      d[i] = id >= eot ? id + 1 : id;
    }
    d[d.length - 1] = eot;
    return d;
  });
}

/** A small seeded generator (mulberry32) for the tests' random data. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
