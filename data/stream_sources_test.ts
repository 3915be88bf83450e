/**
 * The streamed reader against the in-memory one (`readDocuments`): for every format the
 * streamed pieces, joined per document, are exactly its documents, on the shared public data
 * and on generated files, with the chunk size forced tiny so multi-byte characters, CRLF pairs,
 * lines and Gutenberg markers straddle chunks.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import fc from "fast-check";
import { parquetWriteBuffer } from "hyparquet-writer";
import { fileURLToPath } from "node:url";
import { gzipSync, zstdCompressSync } from "node:zlib";
import type { FileError } from "../base/mod.ts";
import { readDocuments } from "./readers.ts";
import { type ResolvedFile, type ResolvedUnit, resolveSources } from "./sources.ts";
import { type DocPiece, streamDocuments } from "./stream_sources.ts";

const SHARED = fileURLToPath(new URL("../../shared/data", import.meta.url));
const shared = (() => {
  try {
    return Deno.statSync(SHARED).isDirectory;
  } catch {
    return false;
  }
})();
const skipNote = shared ? "" : ` (skipped: ${SHARED} is absent)`;

/** Documents as the stream gives them: pieces joined; checks the piece structure on the way. */
async function streamed(
  unit: ResolvedUnit,
  chunkBytes?: number,
): Promise<E.Either<FileError, string[]>> {
  const docs: string[] = [];
  let open: string[] = [];
  const options = chunkBytes === undefined ? {} : { chunkBytes };
  for await (const r of streamDocuments(unit, options)) {
    if (E.isLeft(r)) return r;
    const p: DocPiece = r.right;
    open.push(p.text);
    if (p.last) {
      docs.push(open.join(""));
      open = [];
    } else assert(p.text.length > 0, "only a final piece may be empty");
  }
  assert(open.length === 0, "the stream ended inside a document");
  return E.right(docs);
}

async function resolveOne(
  path: string,
  extra: Record<string, unknown> = {},
): Promise<ResolvedFile> {
  const r = await resolveSources([{ path, ...extra }], "/")();
  if (E.isLeft(r)) throw new Error(r.left.message);
  assert(r.right.length === 1);
  return r.right[0] as ResolvedFile;
}

/** Asserts streamed == readDocuments for `unit` at each chunk size. */
async function same(unit: ResolvedUnit, chunks: readonly (number | undefined)[]): Promise<void> {
  const expected = await readDocuments(unit)();
  for (const c of chunks) {
    const got = await streamed(unit, c);
    if (E.isLeft(expected)) {
      assert(E.isLeft(got), `chunk ${c}: expected an error, got documents`);
      assertEquals(got.left.message, expected.left.message, `chunk ${c}`);
    } else {
      assert(E.isRight(got), `chunk ${c}: ${E.isLeft(got) ? got.left.message : ""}`);
      assertEquals(got.right.length, expected.right.length, `chunk ${c}: document count`);
      got.right.forEach((d, i) => assert(d === expected.right[i], `chunk ${c}: document ${i}`));
    }
  }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "stream_sources_test" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function write(dir: string, name: string, data: string | Uint8Array): Promise<ResolvedFile> {
  const p = `${dir}/${name}`;
  await Deno.writeFile(p, typeof data === "string" ? new TextEncoder().encode(data) : data);
  return await resolveOne(p);
}

Deno.test({
  name:
    `streamDocuments: real text, JSONL and Parquet files read as readDocuments reads them${skipNote}`,
  ignore: !shared,
  fn: async () => {
    const files: [string, Record<string, unknown>, (number | undefined)[]][] = [
      ["tinyshakespeare/input.txt", {}, [undefined, 61, 4096]],
      ["wikitext-2/valid.txt", {}, [undefined, 1000]],
      ["corpus-en/pg1661.txt", { gutenberg: true }, [undefined, 29, 333]],
      ["corpus-en/pg1661.txt", {}, [8192]],
      ["corpus-en/11-0.txt", { gutenberg: true }, [undefined, 50]],
      ["corpus-en/The-Art-of-War.txt", { gutenberg: true }, [undefined, 7]],
      ["c4-sample/c4_demo.jsonl", {}, [undefined, 7, 100]],
      ["lambada/lambada_test.jsonl", {}, [undefined, 13]],
      ["c4-sample/c4_demo.parquet", {}, [undefined]],
    ];
    for (const [name, extra, chunks] of files) {
      await same(await resolveOne(`${SHARED}/${name}`, extra), chunks);
    }
  },
});

Deno.test({
  name:
    `streamDocuments: a big text is cut at safe line ends, each piece about the chunk size${skipNote}`,
  ignore: !shared,
  fn: async () => {
    const unit = await resolveOne(`${SHARED}/tinyshakespeare/input.txt`);
    const lengths: number[] = [];
    for await (const r of streamDocuments(unit, { chunkBytes: 65536 })) {
      assert(E.isRight(r));
      lengths.push(r.right.text.length);
      if (!r.right.last) {
        const t = r.right.text;
        // Cut right after "\n", with a non-space character before it (and after: the next piece).
        assert(t.endsWith("\n") && /\S/.test(t[t.length - 2]!));
      }
    }
    assert(lengths.length > 10);
    assert(lengths.slice(0, -1).every((n) => n >= 65536 && n < 65536 + 2000));
  },
});

Deno.test("streamDocuments: multi-byte characters, CRLF, CR, a BOM and blank files", async () => {
  await withDir(async (dir) => {
    const texts: Record<string, string> = {
      "mixed.txt": "\uFEFFcafé 中文 😀😀\r\nline two\rline three\r\n\r\nend 🎉",
      "crlf_end.txt": "a\r\nb\r\n\r",
      "empty.txt": "",
      "space.txt": "   \n  ",
      "only_bom.txt": "\uFEFF",
      "astral.txt": "😀".repeat(50) + "\n" + "x😀".repeat(40),
      "no_newline.txt": "word ".repeat(100) + "tail",
      "no_space.txt": "ab😀".repeat(100),
      "blank_lines.txt": "a\n\n\nb\n \nc\n\n",
    };
    for (const [name, text] of Object.entries(texts)) {
      await same(await write(dir, name, text), [1, 2, 3, 4, 5, 7, 11, undefined]);
    }
  });
});

Deno.test("streamDocuments: Gutenberg header and footer cut as stripGutenberg cuts them", async () => {
  await withDir(async (dir) => {
    const body = "Chapter 1\n\nIt was a dark night. 😀\nThe end.";
    const texts: Record<string, string> = {
      "both.txt":
        `licence\n*** START OF THE BOOK ***\n\n  ${body}  \n\n*** END OF THE BOOK ***\nmore`,
      "tight.txt": `***START OF X\n${body}\n***END OF X`,
      "no_start.txt": `${body}\n*** END OF IT\nafter`,
      "no_end.txt": `head\n*** START OF IT ***\r\n${body}\r\n`,
      "neither.txt": `  ${body}\n\n`,
      "end_first.txt": `*** END OF A\nx\n*** START OF B\n${body}\n*** END OF B\ny`,
      "start_at_eof.txt": `${body}\n*** START OF NOTHING`,
      "two_starts.txt": `a\n*** START OF 1\nb\n*** START OF 2\nc\n*** END OF 1`,
      "sep_start.txt": `a\u2028*** START OF X\u2029more\nbody\u2028*** END OF X`,
      "indented.txt": `a\n *** START OF X\nb\n *** END OF X\nc`,
      "empty_body.txt": `a\n*** START OF X\n \n\n*** END OF X\nb`,
      "marker_mid.txt": `a *** START OF X\nb *** END OF X\nc`,
    };
    for (const [name, text] of Object.entries(texts)) {
      const unit = { ...(await write(dir, name, text)), gutenberg: true };
      await same(unit, [1, 2, 3, 5, 7, 13, undefined]);
    }
  });
});

Deno.test("streamDocuments: random texts at random chunk sizes equal readDocuments", async () => {
  const atoms = [
    "a",
    "word",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\r",
    "\r\n",
    "\t",
    "é",
    "中",
    "😀",
    "\u2028",
    "\u00a0",
    "*** START OF",
    "*** END OF",
    "***END OF",
    "*",
  ];
  await withDir(async (dir) => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...atoms), { maxLength: 60 }),
        fc.integer({ min: 1, max: 17 }),
        fc.boolean(),
        async (parts, chunk, gutenberg) => {
          const unit = { ...(await write(dir, `r${n++}.txt`, parts.join(""))), gutenberg };
          await same(unit, [chunk]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

Deno.test("streamDocuments: JSONL line by line, long lines across chunks, errors as readDocuments names them", async () => {
  await withDir(async (dir) => {
    const lines = [
      JSON.stringify({ text: "first 😀 é" }),
      "",
      "  " + JSON.stringify({ text: "x".repeat(300), other: 1 }) + "  \r",
      JSON.stringify({ text: "" }),
      JSON.stringify({ text: "line\nbreak inside\r\nthe value" }),
    ];
    await same(await write(dir, "ok.jsonl", lines.join("\n")), [1, 3, 7, 64, undefined]);
    await same(await write(dir, "ok_nl.jsonl", lines.join("\n") + "\n\n"), [1, 7, undefined]);
    await same(await write(dir, "bad.jsonl", `${lines[0]}\n{"text": \n`), [1, 7, undefined]);
    await same(await write(dir, "missing.jsonl", `${lines[0]}\n{"body": "x"}\n`), [5, undefined]);
    await same(await write(dir, "number.jsonl", `${lines[0]}\n\n{"text": 3}\n`), [5, undefined]);
    const body = await resolveOne(`${dir}/ok.jsonl`, { field: "other" });
    await same(body, [7, undefined]);
  });
});

Deno.test("streamDocuments: bad UTF-8 is named by byte, offset and line, wherever the chunk cuts", async () => {
  await withDir(async (dir) => {
    const enc = new TextEncoder();
    const cases: Record<string, Uint8Array> = {
      "lone.txt": new Uint8Array([...enc.encode("ab\ncé\n"), 0xff, ...enc.encode("\nz")]),
      "cut.txt": new Uint8Array([...enc.encode("ab\n\n"), 0xe2, 0x82]), // truncated at the end
      "surrogate.txt": new Uint8Array([...enc.encode("x\ny"), 0xed, 0xa0, 0x80, 0x41]),
      "overlong.jsonl": new Uint8Array([...enc.encode('{"text":"a"}\n{"text":"'), 0xc0, 0xaf]),
      "late.jsonl": new Uint8Array([...enc.encode('{"text":"é"}\n'.repeat(5)), 0xf5]),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const unit = await write(dir, name, bytes);
      await same(unit, [1, 2, 3, 4, 5, 9, undefined]);
      const r = await streamed(unit, 2);
      assert(
        E.isLeft(r) && r.left._tag === "ContentInvalid" &&
          /offset \d+ \(line \d+\)/.test(r.left.message),
      );
    }
  });
});

Deno.test("streamDocuments: .gz (several members too) and .zst text and JSONL decompressed while streaming", async () => {
  await withDir(async (dir) => {
    const text = "\uFEFFhead\r\n*** START OF X\n" + "Ünïcödé 😀 line\n".repeat(500) +
      "*** END OF X\n";
    const plain = await write(dir, "book.txt", text);
    const bytes = new TextEncoder().encode(text);
    const half = bytes.length >> 1;
    const members = new Uint8Array([
      ...gzipSync(bytes.subarray(0, half)),
      ...gzipSync(bytes.subarray(half)),
    ]);
    const jsonl = Array.from({ length: 200 }, (_, i) => JSON.stringify({ text: `doc ${i} é` }))
      .join("\n");
    const pairs: [ResolvedFile, ResolvedFile][] = [
      [await write(dir, "a.txt.gz", gzipSync(bytes)), plain],
      [await write(dir, "b.txt.gz", members), plain],
      [await write(dir, "c.txt.zst", zstdCompressSync(bytes)), plain],
      [await write(dir, "d.jsonl.gz", gzipSync(jsonl)), await write(dir, "d.jsonl", jsonl)],
      [
        await write(dir, "e.jsonl.zst", zstdCompressSync(jsonl)),
        await write(dir, "e.jsonl", jsonl),
      ],
    ];
    for (const [packed, original] of pairs) {
      for (const gutenberg of [false, true]) {
        const want = await readDocuments({ ...original, gutenberg })();
        assert(E.isRight(want));
        for (const chunk of [7, 1000, undefined]) {
          assertEquals(await streamed({ ...packed, gutenberg }, chunk), want);
        }
      }
    }
    // A corrupt archive and bad UTF-8 inside one are content errors naming the file.
    const corrupt = await write(dir, "f.txt.gz", gzipSync(bytes).subarray(0, 100));
    const bad = await streamed(corrupt);
    assert(E.isLeft(bad) && bad.left._tag === "ContentInvalid" && bad.left.path === corrupt.path);
    const badUtf8 = await write(
      dir,
      "g.txt.zst",
      zstdCompressSync(new Uint8Array([0x61, 0x0a, 0xff])),
    );
    assertEquals(
      await streamed(badUtf8),
      E.left({
        _tag: "ContentInvalid",
        path: badUtf8.path,
        message:
          "not valid UTF-8: byte 0xFF at offset 2 of the decompressed text (line 2); save the file as UTF-8",
      }),
    );
  });
});

Deno.test("streamDocuments: Parquet row group by row group, reading only that group's bytes", async () => {
  await withDir(async (dir) => {
    const texts = Array.from(
      { length: 90 },
      (_, i) => (i % 7 === 3 ? "" : `row ${i} ${"é".repeat(i)}`),
    );
    const bulk = Array.from({ length: 90 }, (_, i) => "z".repeat(20_000) + i);
    const bytes = parquetWriteBuffer({
      columnData: [
        { name: "text", data: texts, type: "STRING" },
        { name: "bulk", data: bulk, type: "STRING" },
      ],
      rowGroupSize: 30,
      codec: "UNCOMPRESSED",
    });
    const unit = await write(dir, "t.parquet", new Uint8Array(bytes));
    await same(unit, [undefined]);
    // Bytes read before the first document: the footer (a first read of 64 KiB) and the first
    // group's `text` chunk only.
    let read = 0;
    let atFirst = -1;
    for await (const r of streamDocuments(unit, { onBytes: (n) => (read += n) })) {
      assert(E.isRight(r));
      if (atFirst < 0) atFirst = read;
    }
    assert(atFirst > 0 && atFirst < 70_000, `read ${atFirst} bytes before the first row`);
    assert(read < bytes.byteLength / 4, `read ${read} of ${bytes.byteLength} bytes`);
    const missing = await resolveOne(unit.path, { field: "body" });
    await same(missing, [undefined]);
    const numbers = parquetWriteBuffer({
      columnData: [{ name: "text", data: [1, 2], type: "INT32" }],
    });
    await same(await write(dir, "n.parquet", new Uint8Array(numbers)), [undefined]);
  });
});

Deno.test("streamDocuments: the built-in corpus, and a missing file or a FIFO as IoFailed", async () => {
  const builtin = { kind: "builtin", seed: 3, bytes: 20_000, version: 1 } as const;
  await same(builtin, [undefined]);
  const missing: ResolvedFile = {
    kind: "file",
    path: "/nonexistent/x.txt",
    format: "text",
    field: "text",
    gutenberg: false,
    size: 0,
    mtimeMs: 0,
  };
  assertEquals(
    await streamed(missing),
    E.left({ _tag: "IoFailed", path: "/nonexistent/x.txt", message: "no such file" }),
  );
  const dev = await streamed({ ...missing, path: "/dev/zero" });
  assert(
    E.isLeft(dev) && dev.left._tag === "IoFailed" && dev.left.message.includes("character device"),
  );
});

Deno.test("resolveSources: .gz and .zst after a text or JSONL extension are data; .parquet.gz is not", async () => {
  await withDir(async (dir) => {
    for (const name of ["a.txt.gz", "b.jsonl.zst", "c.parquet.gz", "d.gz", "e.TXT.GZ"]) {
      await Deno.writeFile(`${dir}/${name}`, new Uint8Array([1]));
    }
    const r = await resolveSources([dir], "/")();
    assert(E.isRight(r));
    assertEquals(
      r.right.map((u) => (u.kind === "file" ? [u.path.slice(dir.length + 1), u.format] : [])),
      [["a.txt.gz", "text"], ["b.jsonl.zst", "jsonl"], ["e.TXT.GZ", "text"]],
    );
  });
});
