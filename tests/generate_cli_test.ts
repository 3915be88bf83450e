/**
 * `deno task generate`, `chat` and `mtbench` end to end on a random-weight checkpoint written
 * the way a run writes `final/`: the cached and uncached paths print the same text, bad flags
 * are named errors, chat works with piped input, and the MT-Bench file is FastChat's records.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main as generateMain } from "../cli/generate.ts";
import { main as mtbenchMain } from "../cli/mtbench.ts";
import { fitPrompt } from "../cli/chat.ts";
import { runDirStore } from "../effects/run_dir.ts";
import { BYTES_FILES } from "./tiny_model.ts";
import { loadModel } from "../effects/load_model.ts";
import { ALPACA_STOP_TEXTS, generateText } from "../effects/generate_text.ts";
import { initBackend } from "../kernels/mod.ts";
import { createRng } from "../base/prng.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { paramShapes } from "../base/param_names.ts";
import { exists } from "../checkpoint/mod.ts";
import { byteTokenizer, conversationPrompt, parseModelAnswers } from "../data/mod.ts";

const SHAPE: LlamaShape = {
  hidden: 32,
  intermediate: 48,
  heads: 4,
  kvHeads: 2,
  layers: 2,
  vocab: 257,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 48,
};

/** Random weights large enough that greedy text is not one repeated byte. */
async function writeModel(dir: string, shape: LlamaShape = SHAPE): Promise<string> {
  const rng = createRng(4);
  const params = paramShapes(shape, shape.layers).map(([name, dims]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * 0.4);
    if (dims.length === 1) data.forEach((x, i) => (data[i] = 1 + x / 2));
    return { name, shape: dims, data };
  });
  const meta = { trainable: [], loraScale: 1, adamStep: 0 };
  const r = await runDirStore(dir, BYTES_FILES).saveFinal({ params, moments: [], meta }, shape)();
  assert(E.isRight(r));
  return `${dir}/final`;
}

interface Ran {
  readonly code: number;
  readonly text: string;
  readonly lines: string[];
  readonly notes: string[];
}

async function run(
  main: (argv: readonly string[], io: never) => Promise<number>,
  argv: readonly string[],
): Promise<Ran> {
  let text = "";
  const lines: string[] = [];
  const notes: string[] = [];
  const io = {
    write: (t: string) => (text += t),
    line: (l: string) => lines.push(l),
    note: (l: string) => notes.push(l),
  };
  const code = await main(argv, io as never);
  return { code, text, lines, notes };
}

function cliTest(name: string, fn: (ckpt: string, dir: string) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "step-generate-" });
      try {
        await fn(await writeModel(`${dir}/run`), dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

const COMMON = ["--backend", "cpu", "--max-tokens", "70"];

cliTest(
  "generate prints the same text with the key/value cache and with --no-cache",
  async (ckpt) => {
    for (
      const sampling of [["--temperature", "0"], [
        "--temperature",
        "1",
        "--top-k",
        "20",
        "--seed",
        "3",
      ]]
    ) {
      const args = [ckpt, "--prompt", "Once upon a time", ...COMMON, ...sampling, "--no-eot-stop"];
      const cached = await run(generateMain, args);
      const full = await run(generateMain, [...args, "--no-cache"]);
      assertEquals(cached.code, 0, cached.notes.join("\n"));
      assertEquals(full.code, 0, full.notes.join("\n"));
      // 70 new tokens after 16 in a context of 48: the window slides on both paths.
      assert(cached.text.length > 10, cached.text);
      assertEquals(cached.text, full.text);
      const json = await run(generateMain, [...args, "--json"]);
      assertEquals(json.code, 0);
      const out = JSON.parse(json.lines[0]!);
      assertEquals(out.text + "\n", cached.text);
      assertEquals(out.ids.length, 70);
      assertEquals(out.newTokens, 70);
      assertEquals(out.promptTokens, 16);
      assertEquals(out.stop, "length");
      assertEquals(json.text, "");
      const rate = cached.notes.at(-1)!;
      assertStringIncludes(rate, "70 tokens in");
      assertStringIncludes(rate, "tokens/s");
    }
  },
);

cliTest("generate, chat and mtbench name bad flags and exit non-zero", async (ckpt, dir) => {
  const cases: [string[], string][] = [
    [[ckpt, "--prompt", "x", "--top-p", "1.5"], "--top-p"],
    [[ckpt, "--prompt", "x", "--temperature", "-1"], "--temperature"],
    [[ckpt, "--prompt", "x", "--temperature", "category"], "--temperature"],
    [[ckpt, "--prompt", "x", "--top-k", "2.5"], "--top-k"],
    [[ckpt, "--prompt", "x", "--max-tokens", "0"], "--max-tokens"],
    [[ckpt, "--prompt", "x", "--seed", "one"], "--seed"],
    [[ckpt, "--prompt", "x", "--tokenizer", "utf8"], "--tokenizer"],
    [[ckpt, "--prompt", "x", "--backend", "tpu"], "--backend"],
    [[ckpt, "--prompt", "x", "--frobnicate"], "frobnicate"],
    [[ckpt], "--prompt"],
    [["--prompt", "x"], "expected one CHECKPOINT"],
  ];
  for (const [args, named] of cases) {
    const r = await run(generateMain, args);
    assertEquals(r.code, 2, args.join(" "));
    assertStringIncludes(r.notes.join("\n"), named);
  }
  const missing = await run(generateMain, [`${dir}/nothing`, "--prompt", "x", "--backend", "cpu"]);
  assert(missing.code !== 0);
  assertStringIncludes(missing.notes.join("\n"), `${dir}/nothing`);
  const noOut = await run(mtbenchMain, [ckpt, "--questions", "q.jsonl"]);
  assertEquals(noOut.code, 2);
  assertStringIncludes(noOut.notes.join("\n"), "--out");
  // --questions given, so the check does not depend on ../shared being there.
  const limit = await run(mtbenchMain, [
    ckpt,
    "--questions",
    "q.jsonl",
    "--out",
    `${dir}/a.jsonl`,
    "--limit",
    "0",
  ]);
  assertEquals(limit.code, 2);
  assertStringIncludes(limit.notes.join("\n"), "--limit");
});

const QUESTIONS = [
  { question_id: 81, category: "writing", turns: ["Write a haiku.", "Now a shorter one."] },
  { question_id: 111, category: "math", turns: ["What is 2+2?", "And 3+3?"] },
];

cliTest(
  "mtbench writes FastChat's model_answer JSONL: two questions, two turns each",
  async (ckpt, dir) => {
    const qFile = `${dir}/question.jsonl`;
    await Deno.writeTextFile(qFile, QUESTIONS.map((q) => JSON.stringify(q)).join("\n") + "\n");
    const out = `${dir}/answers/tiny.jsonl`;
    const t0 = Date.now() / 1000;
    const r = await run(mtbenchMain, [
      ckpt,
      "--questions",
      qFile,
      "--out",
      out,
      "--model-id",
      "tiny-test",
      "--max-tokens",
      "24",
      "--backend",
      "cpu",
    ]);
    const t1 = Date.now() / 1000;
    assertEquals(r.code, 0, r.notes.join("\n"));
    assertEquals(r.notes.filter((l) => /^\[\d\/2\] question/.test(l)).length, 2);
    const text = await Deno.readTextFile(out);
    assertEquals(text.trimEnd().split("\n").length, 2);
    const back = parseModelAnswers(text, out);
    assert(E.isRight(back));
    for (const [i, a] of back.right.entries()) {
      const raw = JSON.parse(text.split("\n")[i]!);
      assertEquals(Object.keys(raw), ["question_id", "answer_id", "model_id", "choices", "tstamp"]);
      assertEquals(a.question_id, QUESTIONS[i]!.question_id);
      assertEquals(a.model_id, "tiny-test");
      assert(/^[0-9a-f]{32}$/.test(a.answer_id), a.answer_id);
      assertEquals(a.choices.length, 1);
      assertEquals(a.choices[0]!.index, 0);
      assertEquals(a.choices[0]!.turns.length, 2);
      assert(a.choices[0]!.turns.every((t) => typeof t === "string" && t === t.trim()));
      assert(a.tstamp >= t0 - 1 && a.tstamp <= t1 + 1, `${a.tstamp}`);
    }
    assert(back.right[0]!.answer_id !== back.right[1]!.answer_id);

    // Greedy answers, recomputed independently: turn 2 is asked after turn 1's answer.
    assert(E.isRight(await initBackend("cpu")));
    const loaded = await loadModel(ckpt)();
    assert(E.isRight(loaded));
    try {
      const q = QUESTIONS[1]!;
      const [a1, a2] = back.right[1]!.choices[0]!.turns as [string, string];
      const answer = async (prompt: string) => {
        const g = await generateText(loaded.right, prompt, {
          maxNewTokens: 24,
          temperature: 0,
          stopTexts: ALPACA_STOP_TEXTS,
        })();
        assert(E.isRight(g));
        return g.right.text.trim();
      };
      assertEquals(await answer(conversationPrompt([{ instruction: q.turns[0]! }])), a1);
      const second = conversationPrompt([
        { instruction: q.turns[0]!, response: a1 },
        { instruction: q.turns[1]! },
      ]);
      assertEquals(await answer(second), a2);
    } finally {
      loaded.right.dispose();
    }

    // A malformed question file: a named error, and no answer file.
    await Deno.writeTextFile(qFile, '{"question_id": 1, "category": "x", "turns": ["a"]}\n{oops\n');
    const bad = await run(mtbenchMain, [ckpt, "--questions", qFile, "--out", `${dir}/bad.jsonl`]);
    assertEquals(bad.code, 2);
    assertStringIncludes(bad.notes.join("\n"), `${qFile}": line 2`);
    assert(!(await exists(`${dir}/bad.jsonl`)), "no answer file after a failure");
  },
);

cliTest(
  "chat answers piped lines, keeps /reset and /quit, and stops at end of input",
  async (_, dir) => {
    // Chat refuses a context that cannot hold its template (140 bytes) and a turn.
    const ckpt = await writeModel(`${dir}/chat`, { ...SHAPE, maxSeqLen: 192 });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("../cli/chat.ts", import.meta.url).pathname,
        ckpt,
        "--backend",
        "cpu",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("Say hi.\n\n/reset\nSay hi.\n/quit\nnever read\n"));
    await writer.close();
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    const parts = stdout.split("(conversation cleared)\n");
    assertEquals(parts.length, 2, stdout);
    // The same greedy answer before and after /reset; nothing answered after /quit.
    assertEquals(parts[0], parts[1]);
    assert(parts[0]!.length > 3 && parts[0]!.endsWith("\n"), JSON.stringify(stdout));
    assert(!stdout.includes("> "), "no prompt marker when stdin is not a terminal");
    assertStringIncludes(stderr, "/reset starts over");
  },
);

Deno.test("fitPrompt() drops the oldest turns until the prompt fits the context", () => {
  const tokenizer = byteTokenizer();
  const turns = [
    { instruction: "first question", response: "first answer" },
    { instruction: "second question", response: "second answer" },
    { instruction: "third" },
  ];
  const all = tokenizer.encode(conversationPrompt(turns)).length;
  const fit = (maxSeqLen: number) => fitPrompt(turns, { tokenizer, maxSeqLen });
  assertEquals(fit(all).turns, turns);
  assertEquals(fit(all).dropped, 0);
  assertEquals(fit(all - 1).turns, turns.slice(1));
  assertEquals(fit(all - 1).dropped, 1);
  assertEquals(fit(150).turns, turns.slice(2));
  assertEquals(fit(150).cut, 0);
});
