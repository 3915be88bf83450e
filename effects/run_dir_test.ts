import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { exitCode } from "../base/mod.ts";
import { readMetrics } from "./run_dir.ts";

const GROW = '{"type":"grow","node":"s2.grow","add":1,"layers":4,"globalStep":600}';

Deno.test("readMetrics() decodes each line; a damaged one fails naming the file and line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await readMetrics(dir), E.right([]), "no metrics yet: no records");
    await Deno.writeTextFile(`${dir}/metrics.jsonl`, `${GROW}\n`);
    const ok = await readMetrics(dir);
    assert(E.isRight(ok) && ok.right[0]?.type === "grow" && ok.right[0].layers === 4);
    await Deno.writeTextFile(`${dir}/metrics.jsonl`, `${GROW}\n{"type":"grow","add":1}\n`);
    const bad = await readMetrics(dir);
    assert(E.isLeft(bad) && bad.left._tag === "ContentInvalid", JSON.stringify(bad));
    assertEquals(bad.left.path, `${dir}/metrics.jsonl`);
    assertStringIncludes(bad.left.message, "line 2 is not a run metrics record: node:");
    assertEquals(exitCode(bad.left), 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
