import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import {
  type AlpacaRecord,
  encodeAlpaca,
  encodeAlpacaSet,
  parseAlpaca,
  readAlpaca,
} from "./alpaca.ts";
import { alpacaPrompt } from "./instruct.ts";
import { byteTokenizer } from "./tokenizer.ts";

const SHARED = new URL("../../shared/data/alpaca/alpaca_en_demo.json", import.meta.url).pathname;

function message(r: E.Either<{ readonly message: string }, unknown>): string {
  assert(E.isLeft(r), "expected an error");
  return r.left.message;
}

Deno.test("parseAlpaca() reads a JSON array and JSONL to the same records", () => {
  const records = [
    { instruction: "Add.", input: "1 2", output: "3", extra: true },
    { instruction: "Greet.", output: "Hello." },
  ];
  const array = parseAlpaca(JSON.stringify(records, null, 2), "a.json");
  const lines = parseAlpaca(records.map((r) => JSON.stringify(r)).join("\n\n") + "\n", "a.jsonl");
  const want: AlpacaRecord[] = [
    { instruction: "Add.", input: "1 2", output: "3" },
    { instruction: "Greet.", output: "Hello." },
  ];
  assertEquals(array, E.right(want));
  assertEquals(lines, E.right(want));
});

Deno.test("parseAlpaca() names the record, line and field of the first bad record", () => {
  assertEquals(
    message(parseAlpaca('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', "f")),
    'record 1: "output" is missing',
  );
  assertEquals(
    message(parseAlpaca('[{"instruction": "a", "output": 3}]', "f")),
    'record 0: "output" must be a string, got number',
  );
  assertEquals(
    message(parseAlpaca('[{"instruction": "a", "input": null, "output": "b"}]', "f")),
    'record 0: "input" must be a string when present, got null',
  );
  assertEquals(
    message(parseAlpaca('{"instruction": "a", "output": "b"}\n\n{"output": "b"}', "f")),
    'record 1 (line 3): "instruction" is missing',
  );
  assertEquals(
    message(parseAlpaca('{"instruction": "a", "output": "b"}\n{"instruction": ', "f")).split(
      ":",
    )[0],
    "record 1 (line 2)",
  );
  assertEquals(
    message(parseAlpaca('[{"instruction": " ", "output": "b"}]', "f")),
    'record 0: "instruction" is empty',
  );
  assertEquals(message(parseAlpaca("[1]", "f")), "record 0: expected an object, got number");
  assertEquals(message(parseAlpaca("[]", "f")), "holds no records");
  assertEquals(
    message(parseAlpaca('{"a": 1}', "f")),
    'record 0 (line 1): "instruction" is missing',
  );
  assert(message(parseAlpaca('[{"instruction": "a",', "f")).startsWith("not valid JSON"));
  const e = parseAlpaca("[2]", "data/x.json");
  assert(E.isLeft(e) && e.left.path === "data/x.json");
});

Deno.test("encodeAlpaca() masks the prompt and ends the response with end-of-text", () => {
  const tok = byteTokenizer();
  const r = { instruction: "Name a colour.", input: "", output: "Red." };
  const x = encodeAlpaca(r, { tokenizer: tok, maxSeqLen: 1024 });
  assert(x !== undefined);
  const prompt = tok.encode(alpacaPrompt(r));
  const whole = [...prompt, ...tok.encode("Red."), tok.eot];
  assertEquals(Array.from(x.tokens), whole.slice(0, -1));
  const expected = whole.slice(1).map((t, i) => (i + 1 < prompt.length ? -1 : t));
  assertEquals(Array.from(x.targets), expected);
  assertEquals(x.responseTokens, 5);
  assert(!x.truncated);
  assertEquals(tok.decode(x.targets.filter((t) => t >= 0)), "Red.<|endoftext|>");
});

Deno.test("encodeAlpaca() starts the prompt with BOS where the tokenizer prepends one", () => {
  const plain = byteTokenizer();
  const tok = { ...plain, bos: 300 };
  const r = { instruction: "Hi.", output: "Yo" };
  const x = encodeAlpaca(r, { tokenizer: tok, maxSeqLen: 1024 });
  assert(x !== undefined);
  const prompt = [300, ...plain.encode(alpacaPrompt(r))];
  const whole = [...prompt, ...plain.encode("Yo"), plain.eot];
  assertEquals(Array.from(x.tokens), whole.slice(0, -1));
  assertEquals(
    Array.from(x.targets),
    whole.slice(1).map((t, i) => (i + 1 < prompt.length ? -1 : t)),
  );
  // BOS counts against the context like any prompt token.
  assertEquals(encodeAlpaca(r, { tokenizer: tok, maxSeqLen: prompt.length - 1 }), undefined);
});

Deno.test("encodeAlpaca() keeps the prompt whole and cuts the response's tail", () => {
  const tok = byteTokenizer();
  const r = { instruction: "Count.", output: "0123456789" };
  const p = tok.encode(alpacaPrompt(r)).length;
  const cut = encodeAlpaca(r, { tokenizer: tok, maxSeqLen: p + 3 });
  assert(cut !== undefined);
  assertEquals(cut.tokens.length, p + 3);
  assertEquals(tok.decode(cut.targets.filter((t) => t >= 0)), "0123");
  assertEquals([cut.responseTokens, cut.truncated], [4, true]);
  // The prompt exactly fills the context: one response token is still a target.
  const one = encodeAlpaca(r, { tokenizer: tok, maxSeqLen: p });
  assert(one !== undefined);
  assertEquals([one.responseTokens, one.targets.at(-1)], [1, "0".charCodeAt(0)]);
  assertEquals(encodeAlpaca(r, { tokenizer: tok, maxSeqLen: p - 1 }), undefined);
  // Just long enough for the whole response and its end-of-text: not cut.
  const fits = encodeAlpaca(r, { tokenizer: tok, maxSeqLen: p + 10 });
  assertEquals([fits?.truncated, fits?.targets.at(-1)], [false, tok.eot]);
});

Deno.test("encodeAlpacaSet() reports the dropped records by index", () => {
  const tok = byteTokenizer();
  const records = [
    { instruction: "short", output: "a" },
    { instruction: "x".repeat(300), output: "b" },
    { instruction: "also short", output: "c".repeat(400) },
  ];
  const s = encodeAlpacaSet(records, { tokenizer: tok, maxSeqLen: 256 });
  assertEquals([s.kept, s.dropped, s.truncated], [[0, 2], [1], 1]);
  assertEquals(s.examples.map((x) => x.tokens.length <= 256), [true, true]);
});

Deno.test({
  name: "readAlpaca() reads the shared Alpaca sample: 999 records, some with input",
  ignore: (() => {
    try {
      Deno.statSync(SHARED);
      return false;
    } catch {
      console.log(`skipped: ${SHARED} is absent (the shared data folder is not mounted)`);
      return true;
    }
  })(),
  fn: async () => {
    const r = await readAlpaca(SHARED)();
    assert(E.isRight(r));
    assertEquals(r.right.length, 999);
    assert(r.right.some((x) => (x.input ?? "") !== ""));
    assert(r.right.some((x) => (x.input ?? "") === ""));
  },
});

Deno.test("readAlpaca() names a missing file and a file that is not UTF-8", async () => {
  const missing = await readAlpaca("/no/such/alpaca.json")();
  assert(E.isLeft(missing) && missing.left._tag === "IoFailed");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/bad.json`, new Uint8Array([0x5b, 0xff, 0x5d]));
    const bad = await readAlpaca(`${dir}/bad.json`)();
    assert(E.isLeft(bad) && bad.left._tag === "ContentInvalid");
    assertEquals(
      bad.left.message,
      "not valid UTF-8: byte 0xFF at offset 1 (line 1); save the file as UTF-8",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
