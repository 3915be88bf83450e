/**
 * Parquet reading without the shared data: the test builds a minimal Parquet file itself
 * (one row group, one PLAIN-encoded BYTE_ARRAY column, no compression), writing the
 * Thrift compact-protocol metadata byte by byte.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { readDocuments } from "./readers.ts";
import { resolveSources } from "./sources.ts";

/** A tiny Thrift compact-protocol writer: just what a Parquet footer needs. */
class Compact {
  bytes: number[] = [];
  private last: number[] = [0];
  private varint(n: bigint): void {
    let v = n;
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }
  private zigzag(n: number | bigint): void {
    const v = BigInt(n);
    this.varint(v >= 0n ? v << 1n : ((-v) << 1n) - 1n);
  }
  private field(id: number, type: number): void {
    const delta = id - this.last[this.last.length - 1]!;
    this.bytes.push((delta << 4) | type); // ids here always grow by 1..15
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number): this {
    this.field(id, 5);
    this.zigzag(v);
    return this;
  }
  i64(id: number, v: number): this {
    this.field(id, 6);
    this.zigzag(v);
    return this;
  }
  binary(id: number, s: string): this {
    this.field(id, 8);
    const b = new TextEncoder().encode(s);
    this.varint(BigInt(b.length));
    this.bytes.push(...b);
    return this;
  }
  struct(id: number, body: (w: this) => void): this {
    this.field(id, 12);
    this.last.push(0);
    body(this);
    this.bytes.push(0);
    this.last.pop();
    return this;
  }
  listOf(id: number, elemType: number, items: Array<(w: this) => void>): this {
    this.field(id, 9);
    this.bytes.push((items.length << 4) | elemType);
    for (const item of items) {
      if (elemType === 12) {
        this.last.push(0);
        item(this);
        this.bytes.push(0);
        this.last.pop();
      } else item(this);
    }
    return this;
  }
  rawI32(v: number): void {
    this.zigzag(v);
  }
  rawBinary(s: string): void {
    const b = new TextEncoder().encode(s);
    this.varint(BigInt(b.length));
    this.bytes.push(...b);
  }
  end(): number[] {
    this.bytes.push(0);
    return this.bytes;
  }
}

function parquetFile(column: string, values: string[]): Uint8Array {
  const data: number[] = [];
  for (const v of values) {
    const b = new TextEncoder().encode(v);
    data.push(b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b); // PLAIN: u32 length + bytes
  }
  const page = new Compact()
    .i32(1, 0) // DATA_PAGE
    .i32(2, data.length)
    .i32(3, data.length)
    .struct(5, (w) => w.i32(1, values.length).i32(2, 0).i32(3, 3).i32(4, 3))
    .end();
  const chunkStart = 4;
  const chunkSize = page.length + data.length;
  const meta = new Compact()
    .i32(1, 1) // version
    .listOf(2, 12, [
      (w) => w.binary(4, "schema").i32(5, 1),
      (w) => w.i32(1, 6).i32(3, 0).binary(4, column).i32(6, 0), // BYTE_ARRAY, REQUIRED, UTF8
    ])
    .i64(3, values.length)
    .listOf(4, 12, [(w) =>
      w.listOf(1, 12, [(c) =>
        c.i64(2, chunkStart).struct(3, (m) =>
          m.i32(1, 6)
            .listOf(2, 5, [(x) => x.rawI32(0)])
            .listOf(3, 8, [(x) => x.rawBinary(column)])
            .i32(4, 0) // UNCOMPRESSED
            .i64(5, values.length)
            .i64(6, chunkSize)
            .i64(7, chunkSize)
            .i64(9, chunkStart))]).i64(2, chunkSize).i64(3, values.length)])
    .end();
  const magic = [0x50, 0x41, 0x52, 0x31]; // "PAR1"
  const len = meta.length;
  return new Uint8Array([
    ...magic,
    ...page,
    ...data,
    ...meta,
    len & 0xff,
    (len >> 8) & 0xff,
    (len >> 16) & 0xff,
    len >>> 24,
    ...magic,
  ]);
}

async function read(
  dir: string,
  name: string,
  field?: string,
): Promise<E.Either<string, string[]>> {
  const units = await resolveSources([field === undefined ? name : { path: name, field }], dir)();
  if (E.isLeft(units)) return E.left(units.left.message);
  const docs = await readDocuments(units.right[0]!)();
  return E.isLeft(docs) ? E.left(`${docs.left.path}: ${docs.left.message}`) : E.right(docs.right);
}

Deno.test("Parquet: one document per row of the text column, in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(
      `${dir}/t.parquet`,
      parquetFile("text", ["first row", "", "third — ünïcode"]),
    );
    assertEquals(await read(dir, "t.parquet"), E.right(["first row", "third — ünïcode"]));
    await Deno.writeFile(`${dir}/b.parquet`, parquetFile("body", ["x"]));
    assertEquals(await read(dir, "b.parquet", "body"), E.right(["x"]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Parquet: a missing column or a corrupt file is an error naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/b.parquet`, parquetFile("body", ["x"]));
    assertEquals(
      await read(dir, "b.parquet"),
      E.left(`${dir}/b.parquet: Column "text" not found (columns: body)`),
    );
    await Deno.writeFile(
      `${dir}/bad.parquet`,
      new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    );
    const bad = await read(dir, "bad.parquet");
    assert(E.isLeft(bad) && bad.left.startsWith(`${dir}/bad.parquet: Cannot read parquet file:`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
