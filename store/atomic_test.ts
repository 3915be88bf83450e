import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as TE from "fp-ts/lib/TaskEither.js";
import { ioFailed } from "../base/errors.ts";
import { openAtomicFile, recoverDir, writeDirAtomic, writeFileAtomic } from "./atomic.ts";

async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("writeFileAtomic() replaces content and leaves no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const target = `${dir}/state.json`;
    assertEquals((await writeFileAtomic(target, "old")())._tag, "Right");
    assertEquals((await writeFileAtomic(target, new Uint8Array([110, 101, 119]))())._tag, "Right");
    assertEquals(await Deno.readTextFile(target), "new");
    assertEquals(await listNames(dir), ["state.json"]);
    if (Deno.build.os !== "windows") assertEquals((await Deno.stat(target)).mode! & 0o777, 0o644);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openAtomicFile() shows nothing at the target until commit, and abort keeps the old file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const target = `${dir}/w.bin`;
    await writeFileAtomic(target, "previous")();
    const opened = await openAtomicFile(target)();
    assert(opened._tag === "Right");
    await opened.right.write(new Uint8Array(1000))();
    // A crash here (simulated by abort) must leave the previous content in place.
    assertEquals(await Deno.readTextFile(target), "previous");
    await opened.right.abort();
    assertEquals(await Deno.readTextFile(target), "previous");
    assertEquals(await listNames(dir), ["w.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() reports a missing parent directory as IoFailed naming the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await writeFileAtomic(`${dir}/no/such/dir/x.bin`, "x")();
    assert(r._tag === "Left");
    assertEquals(r.left._tag, "IoFailed");
    assertEquals(r.left.path, `${dir}/no/such/dir/x.bin`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeDirAtomic() swaps in a complete directory and drops the previous one", async () => {
  const root = await Deno.makeTempDir();
  try {
    const target = `${root}/ckpt`;
    const first = await writeDirAtomic(target, (tmp) => writeFileAtomic(`${tmp}/a.txt`, "1"))();
    assertEquals(first._tag, "Right");
    const second = await writeDirAtomic(target, (tmp) =>
      TE.map(() => undefined)(
        TE.sequenceArray([
          writeFileAtomic(`${tmp}/a.txt`, "2"),
          writeFileAtomic(`${tmp}/b.txt`, "2b"),
        ]),
      ))();
    assertEquals(second._tag, "Right");
    assertEquals(await listNames(target), ["a.txt", "b.txt"]);
    assertEquals(await Deno.readTextFile(`${target}/a.txt`), "2");
    assertEquals(await listNames(root), ["ckpt"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("writeDirAtomic() keeps the previous directory when filling fails", async () => {
  const root = await Deno.makeTempDir();
  try {
    const target = `${root}/ckpt`;
    await writeDirAtomic(target, (tmp) => writeFileAtomic(`${tmp}/a.txt`, "good"))();
    const failed = await writeDirAtomic(target, (tmp) =>
      TE.flatMap(
        writeFileAtomic(`${tmp}/a.txt`, "half"),
        () => TE.left(ioFailed(`${tmp}/b.txt`, "disk full")),
      ))();
    assert(failed._tag === "Left");
    assertEquals(failed.left.message, "disk full");
    assertEquals(await Deno.readTextFile(`${target}/a.txt`), "good");
    assertEquals(await listNames(root), ["ckpt"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("recoverDir() restores the previous directory after a crash between the renames", async () => {
  const root = await Deno.makeTempDir();
  try {
    const target = `${root}/ckpt`;
    // The state a crash leaves: old version moved aside, new one still temporary.
    await Deno.mkdir(`${root}/.ckpt.old`);
    await Deno.writeTextFile(`${root}/.ckpt.old/a.txt`, "previous");
    await Deno.mkdir(`${root}/.ckpt.tmp-abc`);
    await Deno.writeTextFile(`${root}/.ckpt.tmp-abc/a.txt`, "partial");
    const r = await recoverDir(target)();
    assertEquals(r, { _tag: "Right", right: "restored" });
    assertEquals(await Deno.readTextFile(`${target}/a.txt`), "previous");
    assertEquals(await listNames(root), ["ckpt"]);
    assertEquals(await recoverDir(target)(), { _tag: "Right", right: "present" });
    assertEquals(await recoverDir(`${root}/none`)(), { _tag: "Right", right: "absent" });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
