import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { readDocuments, stripGutenberg } from "./readers.ts";
import { type DataSource, type ResolvedFile, resolveSources } from "./sources.ts";

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function docsOf(sources: DataSource[], baseDir: string): Promise<E.Either<string, string[]>> {
  const units = await resolveSources(sources, baseDir)();
  if (E.isLeft(units)) return E.left(`${units.left._tag}: ${JSON.stringify(units.left)}`);
  const out: string[] = [];
  for (const u of units.right) {
    const d = await readDocuments(u)();
    if (E.isLeft(d)) return E.left(`${d.left.path}: ${d.left.message}`);
    out.push(...d.right);
  }
  return E.right(out);
}

Deno.test("text files: BOM dropped, CRLF normalised, one document per file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(
      `${dir}/a.txt`,
      new Uint8Array([0xef, 0xbb, 0xbf, 72, 105, 13, 10, 79, 107]),
    );
    assertEquals(await docsOf(["a.txt"], dir), E.right(["Hi\nOk"]));
  });
});

Deno.test("JSONL: one document per line from the named field; blank lines and empty texts skipped", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/d.jsonl`,
      '{"text":"one"}\n\n{"text":""}\r\n{"text":"two","x":1}\n',
    );
    await Deno.writeTextFile(`${dir}/c.jsonl`, '{"body":"alpha"}\n{"body":"beta"}\n');
    assertEquals(await docsOf(["d.jsonl"], dir), E.right(["one", "two"]));
    assertEquals(
      await docsOf([{ path: "c.jsonl", field: "body" }], dir),
      E.right(["alpha", "beta"]),
    );
  });
});

Deno.test("JSONL: a line without the field or with bad JSON is an IoFailed naming file, line and field", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/d.jsonl`, '{"text":"ok"}\n{"content":"x"}\n');
    const missing = await docsOf(["d.jsonl"], dir);
    assertEquals(missing, E.left(`${dir}/d.jsonl: Line 2: field "text" is missing`));
    await Deno.writeTextFile(`${dir}/n.jsonl`, '{"text":3}\n');
    assertEquals(
      await docsOf(["n.jsonl"], dir),
      E.left(`${dir}/n.jsonl: Line 1: field "text" is not a string`),
    );
    await Deno.writeTextFile(`${dir}/b.jsonl`, '{"text":"ok"}\n{"text":\n');
    const bad = await docsOf(["b.jsonl"], dir);
    assert(
      E.isLeft(bad) && bad.left.startsWith(`${dir}/b.jsonl: Line 2 is not valid JSON`),
      String(bad),
    );
  });
});

Deno.test("directories are walked in name order, mixing formats by extension, skipping hidden and other files", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/corpus/sub`, { recursive: true });
    await Deno.mkdir(`${dir}/corpus/.cache`);
    await Deno.writeTextFile(`${dir}/corpus/b.txt`, "B");
    await Deno.writeTextFile(`${dir}/corpus/a.jsonl`, '{"text":"A1"}\n{"text":"A2"}\n');
    await Deno.writeTextFile(`${dir}/corpus/sub/c.txt`, "C");
    await Deno.writeTextFile(`${dir}/corpus/SOURCE.md`, "not data");
    await Deno.writeTextFile(`${dir}/corpus/.cache/x.txt`, "hidden");
    await Deno.writeTextFile(`${dir}/corpus/skip.txt`, "skipped");
    assertEquals(
      await docsOf([{ path: "corpus", exclude: ["skip.txt"] }], dir),
      E.right(["A1", "A2", "B", "C"]),
    );
    // Globs sort by full path; dot-directories are not matched.
    assertEquals(await docsOf(["corpus/**/*.txt"], dir), E.right(["B", "skipped", "C"]));
    assertEquals(
      await docsOf([{ path: "corpus/*", exclude: ["*.jsonl", "skip.txt"] }], dir),
      E.right(["B"]),
    );
  });
});

Deno.test("resolveSources() records size and mtime, and names a missing path or an empty match", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.txt`, "12345");
    const r = await resolveSources(["a.txt"], dir)();
    assert(E.isRight(r));
    const f = r.right[0] as ResolvedFile;
    assertEquals([f.path, f.size, f.format, f.field], [`${dir}/a.txt`, 5, "text", "text"]);
    assert(f.mtimeMs > 0);
    const missing = await resolveSources(["nope.txt"], dir)();
    assertEquals(
      missing,
      E.left({ _tag: "IoFailed", path: `${dir}/nope.txt`, message: "No such file or directory" }),
    );
    const none = await resolveSources(["*.parquet"], dir)();
    assert(E.isLeft(none) && none.left._tag === "IoFailed" && none.left.path === "*.parquet");
    await Deno.mkdir(`${dir}/empty`);
    const empty = await resolveSources(["empty"], dir)();
    assert(E.isLeft(empty) && /holds no .txt, .jsonl or .parquet files/.test(empty.left.message));
    const noSources = await resolveSources([], dir)();
    assert(E.isLeft(noSources) && noSources.left._tag === "ConfigInvalid");
  });
});

Deno.test("stripGutenberg() keeps only the book between the markers", () => {
  const text = "Header\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nChapter 1.\nText.\n" +
    "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence";
  assertEquals(stripGutenberg(text), "Chapter 1.\nText.");
  assertEquals(stripGutenberg("no markers"), "no markers");
});
