import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import { decodeUtf8, firstBadUtf8, readUtf8File } from "./text_file.ts";
import { readAlpaca } from "./alpaca.ts";
import { readDocuments } from "./readers.ts";
import { readQuestions } from "./mt_bench.ts";

Deno.test("firstBadUtf8() finds the sequence TextDecoder refuses, with its offset and line", () => {
  const enc = new TextEncoder();
  assertEquals(firstBadUtf8(enc.encode("a\nç€😀\n")), undefined);
  const cases: [number[], number][] = [
    [[0x80], 0], // a lone continuation byte
    [[0x61, 0xc0, 0xaf], 1], // overlong "/"
    [[0xe0, 0x80, 0xaf], 0], // overlong, three bytes
    [[0xed, 0xa0, 0x80], 0], // a UTF-16 surrogate
    [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
    [[0x0a, 0x0a, 0xe2, 0x82], 2], // cut short at the end of the file
    [[0xf0, 0x9f, 0x98, 0x41], 0], // a continuation replaced by "A"
  ];
  for (const [bytes, offset] of cases) {
    const data = Uint8Array.from(bytes);
    assert(E.isLeft(decodeUtf8(data, "f")), `${bytes} is refused by the decoder too`);
    const bad = firstBadUtf8(data);
    assertEquals(bad?.offset, offset, `${bytes}`);
    assertEquals(bad?.line, bytes.slice(0, offset).filter((b) => b === 0x0a).length + 1);
  }
});

Deno.test("decodeUtf8() drops a byte-order mark and names the byte, offset and line", () => {
  const ok = decodeUtf8(Uint8Array.from([0xef, 0xbb, 0xbf, 0x68, 0x69]), "f");
  assert(E.isRight(ok) && ok.right === "hi");
  const latin1 = Uint8Array.from([...new TextEncoder().encode("one\ntwo\ncaf"), 0xe9, 0x0a]);
  const bad = decodeUtf8(latin1, "menu.txt");
  assert(E.isLeft(bad) && bad.left._tag === "ContentInvalid" && bad.left.path === "menu.txt");
  assertEquals(
    bad.left.message,
    "not valid UTF-8: byte 0xE9 at offset 11 (line 3); save the file as UTF-8",
  );
});

Deno.test("every reader refuses a FIFO, a device and a directory by name before opening them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const made = new Deno.Command("mkfifo", { args: [`${dir}/pipe.jsonl`] }).outputSync();
    const paths = [...(made.success ? [`${dir}/pipe.jsonl`] : []), "/dev/zero", dir];
    for (const path of paths) {
      const file = {
        kind: "file",
        path,
        field: "text",
        gutenberg: false,
        size: 0,
        mtimeMs: 0,
      } as const;
      const reads = [
        await readUtf8File(path)(),
        await readAlpaca(path)(),
        await readQuestions(path)(),
        await readDocuments({ ...file, format: "jsonl" })(),
        await readDocuments({ ...file, format: "text" })(),
      ];
      for (const r of reads) {
        assert(E.isLeft(r) && r.left._tag === "IoFailed", path);
        assertEquals(r.left.path, path);
        assert(r.left.message.startsWith("not a regular file ("), r.left.message);
      }
    }
    const missing = await readUtf8File(`${dir}/absent.txt`)();
    assert(E.isLeft(missing) && missing.left.message === "no such file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corpus JSONL, Alpaca and MT-Bench files that are not UTF-8 are refused, not replaced", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/data.jsonl`;
    const head = new TextEncoder().encode('{"text": "ok"}\n{"text": "caf');
    await Deno.writeFile(path, Uint8Array.from([...head, 0xe9, 0x22, 0x7d, 0x0a]));
    const file = {
      kind: "file",
      path,
      field: "text",
      gutenberg: false,
      size: 0,
      mtimeMs: 0,
    } as const;
    for (
      const r of [
        await readDocuments({ ...file, format: "jsonl" })(),
        await readAlpaca(path)(),
        await readQuestions(path)(),
      ]
    ) {
      assert(E.isLeft(r) && r.left._tag === "ContentInvalid");
      assert(r.left.message.includes(`offset ${head.length} (line 2)`), r.left.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
