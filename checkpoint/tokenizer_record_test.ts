import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { findTokenizer, TOKENIZER_FILE, tokenizerRecordText } from "./tokenizer_record.ts";

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tok-record-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a checkpoint's tokenizer: recorded, from the run around it, guessed, or unknown", () =>
  withDir(async (dir) => {
    await Deno.mkdir(`${dir}/run/final`, { recursive: true });
    await Deno.writeTextFile(`${dir}/run/pipeline.yaml`, "data:\n  tokenizer: gpt2\n");
    const fromRun = await findTokenizer(`${dir}/run/final`, 50257);
    assert(E.isRight(fromRun) && fromRun.right?.name === "gpt2" && !fromRun.right.guessed);
    await Deno.writeTextFile(`${dir}/run/final/${TOKENIZER_FILE}`, tokenizerRecordText("bytes"));
    const recorded = await findTokenizer(`${dir}/run/final`, 50257);
    assert(E.isRight(recorded) && recorded.right?.name === "bytes", "the record wins over the run");
    assertStringIncludes(recorded.right!.how, TOKENIZER_FILE);

    await Deno.mkdir(`${dir}/hf`);
    const bare = await findTokenizer(`${dir}/hf`, 50304);
    assert(E.isRight(bare) && bare.right === undefined, "no files, no record: unknown");
    await Deno.writeTextFile(`${dir}/hf/vocab.json`, "{}");
    await Deno.writeTextFile(`${dir}/hf/merges.txt`, "");
    const bpe = await findTokenizer(`${dir}/hf`, 50304);
    assert(E.isRight(bpe) && bpe.right?.name === "gpt2" && bpe.right.guessed);
    const bytes = await findTokenizer(`${dir}/elsewhere`, 257);
    assert(E.isRight(bytes) && bytes.right?.name === "bytes" && bytes.right.guessed);
    assert(E.isRight(await findTokenizer(`${dir}/elsewhere`, 300)));

    const small = await findTokenizer(`${dir}/run/final`, 200);
    assert(
      E.isLeft(small) && small.left.message.includes("more than the model's vocabulary of 200"),
    );
    await Deno.writeTextFile(`${dir}/run/final/${TOKENIZER_FILE}`, '{"tokenizer": "sp"}');
    const bad = await findTokenizer(`${dir}/run/final`, 50257);
    assert(E.isLeft(bad) && bad.left._tag === "ConfigInvalid");
    assertEquals(bad.left.where, `${dir}/run/final/${TOKENIZER_FILE}: tokenizer`);
  }));
