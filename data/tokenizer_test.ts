import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as path from "node:path";
import * as E from "fp-ts/lib/Either.js";
import fc from "fast-check";
import {
  byteTokenizer,
  encodeDocument,
  EOT_TEXT,
  gpt2Tokenizer,
  loadTokenizer,
  tokenizerFor,
} from "./tokenizer.ts";

Deno.test("byteTokenizer() encodes UTF-8 bytes, has vocab 257 and decodes back", () => {
  const tok = byteTokenizer();
  assertEquals([tok.name, tok.vocabSize, tok.eot], ["bytes", 257, 256]);
  assertEquals(Array.from(tok.encode("Aé\n")), [65, 0xc3, 0xa9, 10]);
  assertEquals(tok.decode(tok.encode("naïve — ok")), "naïve — ok");
  assertEquals(tok.decode([104, 105, 256, 0xc3, 0xa9]), `hi${EOT_TEXT}é`);
  // The literal marker is text, not the end-of-text id.
  assert(!Array.from(tok.encode(EOT_TEXT)).includes(256));
});

Deno.test("gpt2Tokenizer() is r50k_base: 50257 ids, <|endoftext|> = 50256, known ids", async () => {
  const r = await gpt2Tokenizer()();
  assert(E.isRight(r));
  const tok = r.right;
  assertEquals([tok.vocabSize, tok.eot], [50257, 50256]);
  // GPT-2's ids for "Hello world" and " the" (as in OpenAI's encoder.json).
  assertEquals(Array.from(tok.encode("Hello world")), [15496, 995]);
  assertEquals(Array.from(tok.encode(" the")), [262]);
  assertEquals(tok.decode([50256]), EOT_TEXT);
  const literal = tok.encode(`a${EOT_TEXT}b`);
  assert(!Array.from(literal).includes(50256));
  assertEquals(tok.decode(literal), `a${EOT_TEXT}b`);
  const text =
    "Thou art more lovely and more temperate:\nRough winds do shake the darling buds of May.";
  assertEquals(tok.decode(tok.encode(text)), text);
});

Deno.test("gpt2Tokenizer()'s word cache gives gpt-tokenizer's own ids (books, random Unicode)", async () => {
  const r = await gpt2Tokenizer()();
  assert(E.isRight(r));
  const tok = r.right;
  const bpe = await import("gpt-tokenizer/encoding/r50k_base");
  const direct = (s: string) => bpe.encode(s, { disallowedSpecial: new Set<string>() });
  let book = "Thou art more lovely and more temperate:\n\n  Rough winds do shake ".repeat(200);
  try {
    const shared = new URL("../../shared/data/tinyshakespeare/input.txt", import.meta.url);
    book = Deno.readTextFileSync(shared).slice(0, 300_000);
  } catch {
    console.warn("data/tokenizer_test.ts: ../shared/data is absent; a built-in text instead");
  }
  for (let pass = 0; pass < 2; pass++) assertEquals(Array.from(tok.encode(book)), direct(book));
  const text = fc.array(
    fc.oneof(
      fc.string({ unit: "binary", maxLength: 12 }),
      fc.string({ unit: "grapheme", maxLength: 12 }),
      fc.constantFrom("  ", " \n\n ", "'s", "'ll", "\ud800", "<|endoftext|>", "\t\t x"),
    ),
    { maxLength: 20 },
  ).map((parts) => parts.join(""));
  fc.assert(
    fc.property(text, (s) => {
      assertEquals(Array.from(tok.encode(s)), direct(s));
    }),
    { numRuns: 500 },
  );
});

Deno.test("tokenizerFor() builds each named tokeniser", async () => {
  const b = await tokenizerFor("bytes")();
  const g = await tokenizerFor("gpt2")();
  assert(E.isRight(b) && E.isRight(g));
  assertEquals([b.right.vocabSize, g.right.vocabSize], [257, 50257]);
});

Deno.test("encodeDocument() is [bos] + encode(text) + [eot]", () => {
  const bytes = byteTokenizer();
  assertEquals(Array.from(encodeDocument(bytes, "hi")), [104, 105, 256]);
  assertEquals(Array.from(encodeDocument(bytes, "")), [256]);
  const withBos = { ...bytes, bos: 7 };
  assertEquals(Array.from(encodeDocument(withBos, "é")), [7, 0xc3, 0xa9, 256]);
});

/** A tiny byte-level-free BPE (characters a, b, c; merges a+b, ab+c) with the given extras. */
function tinyJson(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const vocab = { "<s>": 0, "</s>": 1, a: 2, b: 3, c: 4, ab: 5, abc: 6 };
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    added_tokens: [special(0, "<s>"), special(1, "</s>")],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: { type: "BPE", vocab, merges: ["a b", "ab c"] },
    ...extra,
  };
}

async function inFolder<T>(
  files: Record<string, string>,
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(path.join(dir, name), text);
    }
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadTokenizer() reads a folder or its tokenizer.json; the config decides eot and bos", async () => {
  const json = JSON.stringify(tinyJson());
  const config = JSON.stringify({ eos_token: "</s>", bos_token: "<s>", add_bos_token: true });
  await inFolder({ "tokenizer.json": json, "tokenizer_config.json": config }, async (dir) => {
    for (const spec of [dir, path.join(dir, "tokenizer.json")]) {
      const r = await loadTokenizer(spec)();
      assert(E.isRight(r));
      const t = r.right;
      assertEquals([t.vocabSize, t.eot, t.bos], [7, 1, 0]);
      assertEquals(Array.from(t.encode("abcab</s>c")), [6, 5, 1, 4]);
      assertEquals(Array.from(encodeDocument(t, "abc")), [0, 6, 1]);
      // No decoder: HF joins the tokens with spaces.
      assertEquals(t.decode([6, 1]), "abc </s>");
      // Named by folder and content; the files it came from are what it writes.
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(json));
      const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"));
      assertEquals(t.name, `hf-${path.basename(dir)}-${hex.join("").slice(0, 16)}`);
      assertEquals(t.hfFiles(), { "tokenizer.json": json, "tokenizer_config.json": config });
    }
  });
});

Deno.test("loadTokenizer(): add_bos_token false drops BOS; no config falls back to the template or </s>", async () => {
  const template = {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [],
    special_tokens: { "<s>": { id: "<s>", ids: [0], tokens: ["<s>"] } },
  };
  const json = JSON.stringify(tinyJson({ post_processor: template }));
  const cases: [Record<string, string>, number, number | undefined][] = [
    [{ "tokenizer.json": json }, 1, 0],
    [{ "tokenizer.json": json, "tokenizer_config.json": '{"add_bos_token": false}' }, 1, undefined],
    [{ "tokenizer.json": JSON.stringify(tinyJson()) }, 1, undefined],
  ];
  for (const [files, eot, bos] of cases) {
    await inFolder(files, async (dir) => {
      const r = await loadTokenizer(dir)();
      assert(E.isRight(r));
      assertEquals([r.right.eot, r.right.bos], [eot, bos]);
      // Without a config, the one it writes names what was chosen.
      const written = JSON.parse(r.right.hfFiles()["tokenizer_config.json"]);
      if (files["tokenizer_config.json"] === undefined) {
        assertEquals([written.eos_token, written.add_bos_token], ["</s>", bos !== undefined]);
      }
    });
  }
});

Deno.test("loadTokenizer() names the file and field of what is wrong", async () => {
  const problems: [Record<string, string>, string, RegExp][] = [
    [{}, "tokenizer.json", /no such file: a model folder must hold tokenizer.json/],
    [{ "tokenizer.json": "{ not json" }, "tokenizer.json", /^not JSON: /],
    [
      { "tokenizer.json": JSON.stringify(tinyJson({ model: { type: "WordPiece", vocab: {} } })) },
      "tokenizer.json",
      /^model.type: "WordPiece" is not supported \(BPE, byte-level BPE and Unigram are\)/,
    ],
    [
      { "tokenizer.json": JSON.stringify({ model: { type: "BPE", vocab: { a: "x" } } }) },
      "tokenizer.json",
      /added_tokens/,
    ],
    [
      {
        "tokenizer.json": JSON.stringify(tinyJson({ model: { type: "BPE", vocab: { a: -0.5 } } })),
      },
      "tokenizer.json",
      /^model.vocab.a: /,
    ],
    [
      {
        "tokenizer.json": JSON.stringify(tinyJson()),
        "tokenizer_config.json": '{"eos_token": "<eos>"}',
      },
      "tokenizer_config.json",
      /^eos_token: "<eos>" is not a token of /,
    ],
    [
      {
        "tokenizer.json": JSON.stringify(tinyJson()),
        "tokenizer_config.json": '{"add_bos_token": true}',
      },
      "tokenizer_config.json",
      /^bos_token: add_bos_token is true but bos_token is missing/,
    ],
    [
      { "tokenizer.json": JSON.stringify(tinyJson()), "tokenizer_config.json": '{"eos_token": 3}' },
      "tokenizer_config.json",
      /^eos_token: /,
    ],
    [
      {
        "tokenizer.json": JSON.stringify(
          tinyJson({ added_tokens: [], model: { type: "BPE", vocab: { a: 0 }, merges: [] } }),
        ),
      },
      "tokenizer.json",
      /^eos_token: none given/,
    ],
  ];
  for (const [files, file, message] of problems) {
    await inFolder(files, async (dir) => {
      const r = await loadTokenizer(dir)();
      assert(E.isLeft(r), `expected an error for ${JSON.stringify(files)}`);
      const e = r.left;
      assert(e._tag === "IoFailed" || e._tag === "ContentInvalid", JSON.stringify(e));
      assertEquals(e.path, path.join(dir, file));
      assert(message.test(e.message), `${e.message} should match ${message}`);
    });
  }
  const missing = await loadTokenizer("no/such/tokenizer.json", "model.tokenizer")();
  assert(E.isLeft(missing) && missing.left._tag === "IoFailed");
  assert(missing.left.message.includes('model.tokenizer takes "bytes", "gpt2", or a path'));
  const empty = await loadTokenizer(" ")();
  assert(E.isLeft(empty) && empty.left._tag === "ConfigInvalid");
});

Deno.test("loadTokenizer() keeps the built-ins' names and ids", async () => {
  const b = await loadTokenizer("bytes")();
  const g = await loadTokenizer("gpt2")();
  assert(E.isRight(b) && E.isRight(g));
  assertEquals([b.right.name, g.right.name], ["bytes", "gpt2-r50k_base"]);
  assertEquals(Array.from(g.right.encode("Hello world")), [15496, 995]);
  assertEquals([b.right.bos, g.right.bos], [undefined, undefined]);
});

Deno.test("gpt2 splits at Unicode's White_Space as tiktoken does (U+0085, U+FEFF)", async () => {
  const { get_encoding } = await import("tiktoken");
  const { gpt2Tokenizer } = await import("./tokenizer.ts");
  const ours = await gpt2Tokenizer()();
  if (ours._tag === "Left") throw new Error(ours.left.message);
  const reference = get_encoding("r50k_base");
  try {
    for (const s of ["\n\n\u0085", "a\n\n\u0085b", "x\ufeff y", "\ufeff\n\nz", " \u2028 q"]) {
      const want = Array.from(reference.encode(s, [], []));
      const got = Array.from(ours.right.encode(s));
      if (want.join() !== got.join()) {
        throw new Error(`${JSON.stringify(s)}: tiktoken ${want} but ours ${got}`);
      }
    }
  } finally {
    reference.free();
  }
});
