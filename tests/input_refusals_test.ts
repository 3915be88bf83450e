/**
 * Inputs refused the way training refuses them (issue #20): `eval`, `mtbench`, `chat` and the
 * torch settings met with a file that is not UTF-8, a template that does not parse, a
 * WinoGrande sentence that cannot be scored, a FIFO or a device, a file with no records, a turn
 * longer than the context, and more threads than the machine has cores. Each refusal names what
 * is wrong and where, exits non-zero and writes nothing.
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { COLORS_TASK, pathExists, TINY_SHAPE, withTempDir, writeTinyModel } from "./tiny_model.ts";
import { main as evalMain } from "../cli/eval.ts";
import { main as mtbenchMain } from "../cli/mtbench.ts";
import { fitPrompt, main as chatMain, templateOverflow } from "../cli/chat.ts";
import { alpacaPrompt, byteTokenizer, conversationPrompt, gpt2Tokenizer } from "../data/mod.ts";
import { main as planMain } from "../cli/plan.ts";
import { main as runMain } from "../cli/run.ts";
import type { LlamaShape } from "../base/llama_shape.ts";

const OPTS = { sanitizeOps: false, sanitizeResources: false } as const;
const ROOT = new URL("../", import.meta.url).pathname;

/** Its context holds the chat template (140 bytes) with a little room. */
const SHAPE: LlamaShape = { ...TINY_SHAPE, maxSeqLen: 160 };

/** A run directory's final/ with random weights and the byte tokenizer recorded. */
function randomModel(dir: string, shape: LlamaShape = SHAPE): Promise<string> {
  return writeTinyModel(`${dir}/run`, { shape });
}

function evalRun(...args: string[]): Promise<Captured> {
  return capture(evalMain, args);
}

const MC_LINE = JSON.stringify({ query: "sky", choices: ["red", "blue"], gold: 1 });

Deno.test({
  ...OPTS,
  name: "eval --data that is not UTF-8 is refused naming the file, the byte and the line",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const model = await randomModel(dir);
      await Deno.writeTextFile(`${dir}/colors.yaml`, COLORS_TASK);
      const enc = new TextEncoder();
      const head = enc.encode(`${MC_LINE}\n${MC_LINE}\n{"query": "caf`);
      const bytes = new Uint8Array([
        ...head,
        0xe9,
        ...enc.encode(`", "choices": ["a", "b"], "gold": 0}\n`),
      ]);
      await Deno.writeFile(`${dir}/colors.jsonl`, bytes);
      const out = `${dir}/result.json`;
      const r = await evalRun(model, "--task-file", `${dir}/colors.yaml`, "--out", out);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, `${dir}/colors.jsonl`);
      assertStringIncludes(r.err, "not valid UTF-8");
      assertStringIncludes(r.err, `byte 0xE9 at offset ${head.length}`);
      assertStringIncludes(r.err, "line 3");
      assert(!r.err.includes("Model:"), "refused before the model is loaded");
      assert(!(await pathExists(out)), "nothing written");
    }),
});

Deno.test({
  ...OPTS,
  name: "eval refuses an unclosed or stray brace in a template, naming the definition and field",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const model = await randomModel(dir);
      await Deno.writeTextFile(`${dir}/colors.jsonl`, `${MC_LINE}\n`);
      const cases: [string, string, string][] = [
        ['prompt: "{query"', "prompt", '"{"'],
        ['prompt: "Q: query}"', "prompt", '"}"'],
        ['prompt: "Q: {}"', "prompt", "{}"],
      ];
      for (const [line, field, what] of cases) {
        await Deno.writeTextFile(`${dir}/bad.yaml`, COLORS_TASK.replace(/^prompt: .*$/m, line));
        const r = await evalRun(model, "--task-file", `${dir}/bad.yaml`);
        assertEquals(r.code, 2, `${line}: ${r.err}`);
        assertStringIncludes(r.err, `${dir}/bad.yaml`);
        assertStringIncludes(r.err, field);
        assertStringIncludes(r.err, what);
      }
      await Deno.writeTextFile(
        `${dir}/bad.yaml`,
        COLORS_TASK.replace('choices: "{choices}"', 'choices: ["{choices}", "{x"]'),
      );
      const list = await evalRun(model, "--task-file", `${dir}/bad.yaml`);
      assertEquals(list.code, 2, list.err);
      assertStringIncludes(list.err, "choices[1]");
      // Doubled braces are literal braces: a template may still show one.
      await Deno.writeTextFile(
        `${dir}/ok.yaml`,
        COLORS_TASK.replace(/^prompt: .*$/m, 'prompt: "{{set}} {query}:"'),
      );
      const ok = await evalRun(model, "--task-file", `${dir}/ok.yaml`, "--backend", "cpu");
      assertEquals(ok.code, 0, ok.err);
    }),
});

const WINO_DEF = `name: wino
kind: fill_blank
reader: { data: wino.jsonl }
sentence: "{sentence}"
options: ["{option1}", "{option2}"]
gold: "{answer}"
goldBase: 1
`;

function wino(sentence: string): string {
  return JSON.stringify({ sentence, option1: "Ann", option2: "Bob", answer: "1" });
}

Deno.test({
  ...OPTS,
  name: "eval fill_blank: two blanks, or a blank with nothing after it, name the record and field",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const model = await randomModel(dir);
      await Deno.writeTextFile(`${dir}/wino.yaml`, WINO_DEF);
      const good = wino("_ thanked Carl because he had helped.");
      await Deno.writeTextFile(`${dir}/wino.jsonl`, `${good}\n${wino("_ asked _ for help.")}\n`);
      const out = `${dir}/result.json`;
      const two = await evalRun(model, "--task-file", `${dir}/wino.yaml`, "--out", out);
      assertEquals(two.code, 2, two.err);
      assertStringIncludes(two.err, `${dir}/wino.jsonl:2`);
      assertStringIncludes(two.err, "sentence");
      assertStringIncludes(two.err, "2 blanks");
      await Deno.writeTextFile(`${dir}/wino.jsonl`, `${good}\n\n${wino("Carl thanked _")}\n`);
      const end = await evalRun(model, "--task-file", `${dir}/wino.yaml`, "--out", out);
      assertEquals(end.code, 2, end.err);
      assertStringIncludes(end.err, `${dir}/wino.jsonl:3`);
      assertStringIncludes(end.err, "nothing after the blank");
      assert(!(await pathExists(out)), "nothing written");
      await Deno.writeTextFile(`${dir}/wino.jsonl`, `${good}\n${wino("Carl thanked _.")}\n`);
      const scored = await evalRun(model, "--task-file", `${dir}/wino.yaml`, "--backend", "cpu");
      assertEquals(scored.code, 0, scored.err);
    }),
});

/** Runs a CLI in a child process that is killed after `seconds`: a hang fails, never blocks. */
async function runWithin(
  seconds: number,
  script: string,
  args: readonly string[],
): Promise<{ code: number; killed: boolean; err: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${ROOT}cli/${script}`, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(seconds * 1000),
  }).spawn();
  const out = await child.output();
  return {
    code: out.code,
    killed: out.signal !== null,
    err: new TextDecoder().decode(out.stderr),
  };
}

Deno.test({
  ...OPTS,
  name: "eval and mtbench refuse a FIFO and a device by name instead of hanging",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const made = new Deno.Command("mkfifo", { args: [`${dir}/pipe.jsonl`] }).outputSync();
      if (!made.success) {
        console.warn("mkfifo is not available: the FIFO cases are skipped");
        return;
      }
      const model = await randomModel(dir);
      await Deno.writeTextFile(`${dir}/colors.yaml`, COLORS_TASK);
      for (const data of [`${dir}/pipe.jsonl`, "/dev/zero"]) {
        const r = await runWithin(60, "eval.ts", [
          model,
          "--task-file",
          `${dir}/colors.yaml`,
          "--data",
          data,
          "--backend",
          "cpu",
          "--out",
          `${dir}/never.json`,
        ]);
        assert(!r.killed, `eval --data ${data} hung`);
        assertEquals(r.code, 4, r.err);
        assertStringIncludes(r.err, data);
        assertStringIncludes(r.err, "not a regular file");
      }
      const q = await runWithin(60, "mtbench.ts", [
        model,
        "--questions",
        `${dir}/pipe.jsonl`,
        "--out",
        `${dir}/answers/never.jsonl`,
      ]);
      assert(!q.killed, "mtbench --questions FIFO hung");
      assertEquals(q.code, 4, q.err);
      assertStringIncludes(q.err, `${dir}/pipe.jsonl`);
      assertStringIncludes(q.err, "not a regular file");
      assert(!(await pathExists(`${dir}/never.json`)) && !(await pathExists(`${dir}/answers`)));
    }),
});

Deno.test({
  ...OPTS,
  name: "plan, run and compare refuse a config that is a FIFO or a device instead of hanging",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const made = new Deno.Command("mkfifo", { args: [`${dir}/c.yaml`] }).outputSync();
      if (!made.success) {
        console.warn("mkfifo is not available: the FIFO cases are skipped");
        return;
      }
      for (const script of ["plan.ts", "run.ts", "compare.ts"]) {
        for (const config of [`${dir}/c.yaml`, "/dev/zero"]) {
          const out = script === "plan.ts" ? ["--emit", `${dir}/out`] : ["--out", `${dir}/out`];
          const r = await runWithin(60, script, [config, ...out]);
          assert(!r.killed, `${script} ${config} hung`);
          assertEquals(r.code, 4, r.err);
          assertStringIncludes(r.err, config);
          assertStringIncludes(r.err, "not a regular file");
        }
      }
      assert(!(await pathExists(`${dir}/out`)), "nothing written");
    }),
});

interface Talked {
  readonly code: number;
  readonly text: string;
  readonly notes: string[];
}

async function mtbench(argv: readonly string[]): Promise<Talked> {
  let text = "";
  const notes: string[] = [];
  const io = {
    write: (t: string) => (text += t),
    line: () => {},
    note: (l: string) => notes.push(l),
  };
  return { code: await mtbenchMain(argv, io), text, notes };
}

Deno.test({
  ...OPTS,
  name: "mtbench on a question file with no records exits 2 naming the file and writes nothing",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const model = await randomModel(dir);
      for (const text of ["", "\n  \n\n"]) {
        await Deno.writeTextFile(`${dir}/question.jsonl`, text);
        const r = await mtbench([
          model,
          "--questions",
          `${dir}/question.jsonl`,
          "--out",
          `${dir}/answers/tiny.jsonl`,
          "--backend",
          "cpu",
        ]);
        assertEquals(r.code, 2, r.notes.join("\n"));
        assertStringIncludes(r.notes.join("\n"), `${dir}/question.jsonl`);
        assertStringIncludes(r.notes.join("\n"), "no questions");
        assert(!(await pathExists(`${dir}/answers`)), "nothing written");
      }
    }),
});

async function chat(argv: readonly string[], input: string): Promise<Talked> {
  let text = "";
  const notes: string[] = [];
  const io = {
    write: (t: string) => (text += t),
    line: (l: string) => (text += l + "\n"),
    note: (l: string) => notes.push(l),
    input: ReadableStream.from([new TextEncoder().encode(input)]),
    interactive: false,
  };
  return { code: await chatMain(argv, io), text, notes };
}

Deno.test({
  ...OPTS,
  name: "chat keeps the template when a turn outgrows the context and says so once",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const model = await randomModel(dir);
      const long = "Tell me everything about the weather in the mountains today.";
      const r = await chat(
        [model, "--backend", "cpu", "--temperature", "0", "--max-tokens", "4"],
        `${long}\n${long} Again.\nok\n`,
      );
      assertEquals(r.code, 0, r.notes.join("\n"));
      const notices = r.notes.filter((n) => n.startsWith("("));
      assertEquals(notices.length, 1, r.notes.join("\n"));
      assertStringIncludes(notices[0]!, "160 tokens");
      assertStringIncludes(notices[0]!, "template");

      // A context that cannot hold the template itself: refused before any turn is read.
      const tiny = await randomModel(`${dir}/tiny`, { ...SHAPE, maxSeqLen: 32 });
      const t = await chat([tiny, "--backend", "cpu"], "hello\n");
      assertEquals(t.code, 2, t.notes.join("\n"));
      assertStringIncludes(t.notes.join("\n"), "32 tokens");
      assertStringIncludes(t.notes.join("\n"), "template");
      assertEquals(t.text, "");
    }),
});

Deno.test("fitPrompt() keeps the template whole and cuts the turn's beginning, in 32 GPT-2 tokens", async () => {
  const gpt2 = await gpt2Tokenizer()();
  assert(E.isRight(gpt2));
  const context = { tokenizer: gpt2.right, maxSeqLen: 32 };
  const template = gpt2.right.encode(alpacaPrompt({ instruction: "" })).length;
  assert(templateOverflow(context) === undefined && template < 32, `template ${template}`);
  const turn =
    "Please describe, in as much detail as you can manage, the colour of the sky at dawn";
  const f = fitPrompt([{ instruction: turn }], context);
  assert(gpt2.right.encode(f.prompt).length <= 32);
  assert(f.prompt.startsWith("Below is an instruction that describes a task."), f.prompt);
  assert(f.prompt.endsWith(" at dawn\n\n### Response:\n"), f.prompt);
  assert(f.cut > 0 && f.dropped === 0);
  assertEquals(f.prompt, alpacaPrompt({ instruction: turn.slice(f.cut) }));
  // The longest tail that fits: one more character would not.
  const longer = alpacaPrompt({ instruction: turn.slice(f.cut - 1) });
  assert(gpt2.right.encode(longer).length > 32);
});

Deno.test("fitPrompt() drops the oldest turns before cutting, and never splits a character", () => {
  const tokenizer = byteTokenizer();
  const context = { tokenizer, maxSeqLen: 160 };
  const history = [
    { instruction: "first", response: "one" },
    { instruction: "second", response: "two" },
  ];
  const f = fitPrompt([...history, { instruction: "ééééééééééééééé fin" }], context);
  assertEquals(f.dropped, 2);
  assert(tokenizer.encode(f.prompt).length <= 160);
  // 140 template bytes leave 20: " fin" (4) and 8 two-byte "é", never half of one.
  assertEquals(f.turns, [{ instruction: "éééééééé fin" }]);
  assertEquals(f.cut, 7);
  assertEquals(f.prompt, conversationPrompt(f.turns));
  const fits = fitPrompt([...history, { instruction: "hi" }], { tokenizer, maxSeqLen: 600 });
  assertEquals([fits.dropped, fits.cut, fits.turns.length], [0, 0, 3]);
  assertEquals(templateOverflow({ tokenizer, maxSeqLen: 32 }), 140);
});

function torchConfig(threads: number): Record<string, unknown> {
  return {
    name: "threads",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 2, vocab: 257, maxSeqLen: 32 },
    plan: { stages: 2 },
    training: {
      engine: "torch",
      torch: { threads },
      seqLen: 16,
      microBatch: 4,
      batchTokens: 64,
      steps: 4,
    },
    data: { source: "builtin", builtinBytes: 20000 },
  };
}

Deno.test({
  ...OPTS,
  name: "training.torch.threads above the machine's cores is refused where the ranks start",
  fn: () =>
    withTempDir("input-refusals-", async (dir) => {
      const cores = navigator.hardwareConcurrency;
      const file = `${dir}/c.yaml`;
      await Deno.writeTextFile(file, YAML.stringify(torchConfig(100000)));
      const r = await capture(runMain, [file, "--out", `${dir}/out`]);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, "training.torch.threads");
      assertStringIncludes(r.err, "100000");
      assertStringIncludes(r.err, `${cores} cores`);
      assert(!(await pathExists(`${dir}/out`)), "nothing written");
      // Planning judges the model, not this machine: a config for a larger node plans here.
      const planned = await capture(planMain, [file]);
      assertEquals(planned.code, 0, planned.err);
    }),
});
