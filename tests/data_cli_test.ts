/**
 * `deno task data` end to end, in-process: `prepare` builds the shard sets of a config's sources
 * and finds them the second time, `inspect` prints counts, a sample and the vocabulary's use
 * (checked against figures computed here from the source text), and bad input exits with the
 * code docs/errors.md gives, naming the file or field.
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main } from "../cli/data.ts";
import { loadCorpus } from "../data/mod.ts";
import { decodeConfig, resolvedSources, runSeeds } from "../pipeline/mod.ts";
import { capture, type Captured } from "./cli_capture.ts";

function data(...args: string[]): Promise<Captured> {
  return capture(main, args);
}

const TEXT = "The cat sat on the mat.\nThe dog sat on the log.\n";

async function withProject(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "data_cli_test" });
  const cwd = Deno.cwd();
  try {
    Deno.chdir(dir); // sources resolve from the working directory, as `deno task` runs them
    await Deno.mkdir(`${dir}/corpus`);
    await Deno.writeTextFile(`${dir}/corpus/a.txt`, TEXT);
    await Deno.writeTextFile(`${dir}/corpus/b.jsonl`, '{"text": "zzz"}\n{"text": "éé"}\n');
    await Deno.writeTextFile(`${dir}/held.txt`, "held out\n");
    await fn(dir);
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
}

function config(source: string, extra = ""): string {
  return `name: t
model: { hidden: 64, intermediate: 176, heads: 4, layers: 2, vocab: 257, maxSeqLen: 64 }
data:
  tokenizer: bytes
  source: ${source}
  cacheDir: cache
${extra}`;
}

Deno.test("data prepare: builds the train and validation sets once, then finds them", async () => {
  await withProject(async (dir) => {
    await Deno.writeTextFile(`${dir}/c.yaml`, config("corpus", "  validation: held.txt"));
    const first = await data("prepare", "c.yaml", "--workers", "2");
    assertEquals(first.code, 0, first.err);
    const lines = first.out.split("\n");
    assertEquals(lines.length, 2);
    // 3 documents: the text file, then the two JSONL records; each byte a token, plus an EOS each.
    const tokens = new TextEncoder().encode(TEXT + "zzz" + "éé").length + 3;
    assert(lines[0]!.startsWith("train: cache/"), lines[0]);
    assertStringIncludes(lines[0]!, `(3 documents, ${tokens} tokens, 1 shard, from `);
    assertStringIncludes(lines[0]!, "; prepared in ");
    assertStringIncludes(lines[1]!, "validation: cache/");
    assertStringIncludes(lines[1]!, "(1 documents, 10 tokens, 1 shard");
    assertStringIncludes(first.err, "train: [####################] 100%");
    const again = await data("prepare", "c.yaml");
    assertEquals(again.code, 0, again.err);
    assertEquals(again.out, first.out.replace(/prepared in [0-9.]+ s/g, "already prepared"));
  });
});

Deno.test("data prepare: weighted sources make the sets a run opens, one per source", async () => {
  await withProject(async (dir) => {
    const source =
      "\n    - { path: corpus/a.txt, weight: 2 }\n    - { path: corpus/b.jsonl, weight: 1 }";
    const file = `${dir}/c.yaml`;
    await Deno.writeTextFile(file, config(source, "  validation: held.txt"));
    const prepared = await data("prepare", "c.yaml", "--workers", "1");
    assertEquals(prepared.code, 0, prepared.err);
    const lines = prepared.out.trim().split("\n");
    assertEquals(lines.map((l) => l.split(":")[0]), ["train[0]", "train[1]", "validation"]);
    assertStringIncludes(lines[0]!, `(1 documents, ${TEXT.length + 1} tokens`);
    assertStringIncludes(lines[1]!, "(2 documents, 9 tokens"); // "zzz" and "éé" (4 bytes), EOS each
    const sets = () => [...Deno.readDirSync(`${dir}/cache`)].map((e) => e.name).sort();
    const before = sets();
    assertEquals(before.length, 3);
    // The corpus loaded as `deno task run` loads it (effects/env.ts graphData): all from cache.
    const c = decodeConfig(YAML.parse(await Deno.readTextFile(file)), file);
    assert(E.isRight(c), JSON.stringify(c));
    const d = c.right.data;
    const how = {
      textField: d.textField,
      builtinBytes: d.builtinBytes,
      seed: runSeeds(c.right.training.seed).builtinCorpus,
    };
    const corpus = await loadCorpus({
      sources: resolvedSources(d.source, how),
      tokenizer: d.tokenizer,
      seed: runSeeds(c.right.training.seed).dataOrder,
      validation: { sources: resolvedSources(d.validation!, how) },
    }, { cacheDir: d.cacheDir })();
    assert(E.isRight(corpus), JSON.stringify(corpus));
    assertEquals(corpus.right.groups?.map((g) => g.weight), [2, 1]);
    assert(corpus.right.fromCache, "every stream from the sets prepare made");
    assertEquals(sets(), before, "nothing built twice");
    // inspect shows the same three sets.
    const shown = await data("inspect", "c.yaml", "--sample", "3");
    assertEquals(shown.code, 0, shown.err);
    const heads = shown.out.split("\n").filter((l) => /^[a-z]/.test(l) && l.includes(": cache/"));
    assertEquals(heads.map((l) => l.split(": ")[0]), [
      "train[0] (data.source[0])",
      "train[1] (data.source[1])",
      "validation (data.validation)",
    ]);
  });
});

Deno.test("data inspect: counts, a sample decoded back, and the vocabulary's use", async () => {
  await withProject(async (dir) => {
    await Deno.writeTextFile(`${dir}/c.yaml`, config("corpus/a.txt"));
    const before = await data("inspect", "c.yaml");
    assertEquals(before.code, 4);
    assertStringIncludes(before.err, "no token shards prepared for data.source");
    assertStringIncludes(before.err, "deno task data prepare c.yaml");
    assertEquals((await data("prepare", "c.yaml", "--workers", "1")).code, 0);
    const r = await data("inspect", "c.yaml", "--sample", "7");
    assertEquals(r.code, 0, r.err);
    const n = TEXT.length + 1;
    assertStringIncludes(
      r.out,
      "tokenizer   bytes (vocabulary 257, end of document 256), stored as uint16",
    );
    assertStringIncludes(r.out, "documents   1\n");
    assertStringIncludes(r.out, `tokens      ${n} (${n} per document on average)`);
    assertStringIncludes(r.out, `shards      1, ${2 * n + 8} B on disk`);
    assertStringIncludes(
      r.out,
      `source      ${TEXT.length} B, ${(n / TEXT.length).toFixed(3)} tokens per byte`,
    );
    assertStringIncludes(
      r.out,
      `Sample: the first 7 of ${n} tokens of document 1, decoded:\n  | The cat`,
    );
    // Independent counts: the distinct bytes of the text and the EOS, the most frequent first.
    const counts = new Map<string, number>();
    for (const ch of TEXT) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    assertStringIncludes(r.out, `Vocabulary: ${counts.size + 1} of 257 ids used`);
    const space = ((100 * counts.get(" ")!) / n).toFixed(2);
    assertStringIncludes(r.out, `the 10 most frequent:\n       32   ${space}%  " "`);
    // The same set by its folder.
    const folder = r.out.split("\n")[0]!.replace("train (data.source): ", "");
    const byDir = await data("inspect", folder, "--sample", "7");
    assertEquals(byDir.code, 0, byDir.err);
    assertEquals(byDir.out.split("\n").slice(1), r.out.split("\n").slice(1));
    // A damaged set is an error naming the file: a token file cut short, a manifest that is not one.
    const tok = `${folder}/00000.tok`;
    const bytes = await Deno.readFile(tok);
    await Deno.writeFile(tok, bytes.subarray(0, bytes.length - 2));
    const cut = await data("inspect", folder);
    assertEquals(cut.code, 2, cut.err);
    assertStringIncludes(
      cut.err,
      `Invalid content in "${tok}": Damaged token shard set: the file has ${2 * n - 2} bytes`,
    );
    await Deno.writeTextFile(`${folder}/manifest.json`, '{"format": "step-token-shards"}');
    const bad = await data("inspect", "c.yaml");
    assertEquals(bad.code, 2, bad.err);
    assertStringIncludes(bad.err, `"${folder}/manifest.json": Not a token shard manifest`);
  });
});

Deno.test("data: bad input exits 2 or 4 naming the file or field", async () => {
  await withProject(async (dir) => {
    await Deno.writeFile(`${dir}/bad.txt`, new Uint8Array([0x61, 0x0a, 0xc3]));
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    const cases: [string, string, number, string][] = [
      [
        "bad.yaml",
        config("bad.txt"),
        2,
        `"${dir}/bad.txt": not valid UTF-8: byte 0xC3 at offset 2 (line 2)`,
      ],
      ["missing.yaml", config("nowhere.txt"), 4, `${dir}/nowhere.txt`],
      [
        "empty.yaml",
        config("empty.txt"),
        2,
        `data.source: "${dir}/empty.txt": no non-empty documents`,
      ],
      [
        "tok.yaml",
        config("corpus").replace("bytes", "llama"),
        4,
        `"llama": no such file or folder (data.tokenizer takes`,
      ],
      ["yaml.yaml", "model: [", 2, "yaml.yaml: not valid YAML"],
    ];
    for (const [file, text, code, message] of cases) {
      await Deno.writeTextFile(`${dir}/${file}`, text);
      const r = await data("prepare", file);
      assertEquals(r.code, code, `${file}: ${r.err}`);
      assertStringIncludes(r.err, message);
    }
    assertEquals(
      [...Deno.readDirSync(`${dir}/cache`)].length,
      0,
      "no set, no temporary folder left",
    );
    const usage: [string[], number, string][] = [
      [["prepare", "absent.yaml"], 4, "absent.yaml"],
      [["prepare", "bad.yaml", "--workers", "0"], 2, "--workers"],
      [["build", "bad.yaml"], 2, 'unknown command "build"'],
      [["prepare"], 2, "expected `prepare CONFIG`"],
      [["inspect", "nowhere"], 4, "nowhere"],
      [["prepare", "x", "--bogus"], 2, "command line"],
    ];
    for (const [args, code, message] of usage) {
      const r = await data(...args);
      assertEquals(r.code, code, `${args.join(" ")}: ${r.err}`);
      assertStringIncludes(r.err, message);
    }
    const help = await data("prepare", "c.yaml", "--help");
    assertEquals(help.code, 0);
    assertStringIncludes(help.out, "Usage: deno task data prepare CONFIG");
  });
});
