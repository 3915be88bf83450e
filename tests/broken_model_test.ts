/**
 * A broken model is never a result (issue #20): a checkpoint with a NaN weight is refused when
 * `eval`, `generate`, `mtbench` or `finetune` opens it, naming the tensor; a model whose weights
 * are finite but whose forward pass overflows float32 makes those commands fail instead of
 * printing a number or a text; fine-tuning that diverges says which checkpoint is kept, and
 * suggests a lower learning rate only where one can help.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main as evalMain } from "../cli/eval.ts";
import { main as generateMain } from "../cli/generate.ts";
import { main as mtbenchMain } from "../cli/mtbench.ts";
import { main as chatMain } from "../cli/chat.ts";
import { main as ckptMain } from "../cli/ckpt.ts";
import { main as finetuneMain } from "../cli/finetune.ts";
import { FINAL_NORM, LM_HEAD } from "../base/mod.ts";
import { exists } from "../checkpoint/mod.ts";
import { readSafetensors, tensorToFloat32 } from "../store/mod.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { COLORS_TASK, colorsData, withTempDir, writeTinyModel } from "./tiny_model.ts";

type Edit = (name: string, data: Float32Array) => void;

/** Every element of the LM head is NaN. */
const nanHead: Edit = (name, data) => {
  if (name === LM_HEAD) data.fill(NaN);
};

/**
 * Finite weights whose logits overflow float32: the final norm and the LM head scaled by 1e30,
 * so each product in the head's dot products is ~1e58 (above float32's 3.4e38).
 */
const overflowingHead: Edit = (name, data) => {
  if (name === LM_HEAD || name === FINAL_NORM) data.forEach((x, i) => (data[i] = x * 1e30));
};

async function allFinite(file: string): Promise<boolean> {
  const read = await readSafetensors(file)();
  assert(E.isRight(read), JSON.stringify(read));
  for (const [name, raw] of read.right.tensors) {
    const values = tensorToFloat32(raw, name);
    assert(E.isRight(values));
    if (!values.right.every(Number.isFinite)) return false;
  }
  return true;
}

function brokenTest(name: string, edit: Edit, fn: (model: string, dir: string) => Promise<void>) {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await withTempDir("broken-model-", async (dir) => {
        await fn(await writeTinyModel(`${dir}/run`, { seed: 3, edit }), dir);
      });
    },
  });
}

/** A multiple-choice task and a perplexity task in `dir`; the arguments that run each. */
async function writeTasks(dir: string): Promise<{ choice: string[]; text: string[] }> {
  await Deno.writeTextFile(`${dir}/colors.yaml`, COLORS_TASK);
  await Deno.writeTextFile(`${dir}/colors.jsonl`, colorsData(6, ["red", "green", "blue"]));
  await Deno.writeTextFile(
    `${dir}/story.yaml`,
    "name: story\nkind: perplexity\nreader: { data: story.txt, format: text }\n",
  );
  await Deno.writeTextFile(`${dir}/story.txt`, "Once upon a time there was a tiny model. ");
  return {
    choice: ["--task-file", `${dir}/colors.yaml`],
    text: ["--task-file", `${dir}/story.yaml`, "--window", "16"],
  };
}

function evalRun(...args: string[]): Promise<Captured> {
  return capture(evalMain, [...args, "--backend", "cpu"]);
}

interface Generated {
  readonly code: number;
  readonly text: string;
  readonly lines: string[];
  readonly notes: string;
}

/** Runs generate, mtbench or chat (`input`: the lines piped to it) with its output captured. */
async function generationRun(
  main: (argv: readonly string[], io: never) => Promise<number>,
  argv: readonly string[],
  input?: string,
): Promise<Generated> {
  let text = "";
  const lines: string[] = [];
  const notes: string[] = [];
  const io = {
    write: (t: string) => (text += t),
    line: (l: string) => lines.push(l),
    note: (l: string) => notes.push(l),
    ...(input === undefined ? {} : {
      input: ReadableStream.from([new TextEncoder().encode(input)]),
      interactive: false,
    }),
  };
  const code = await main([...argv, "--backend", "cpu"], io as never);
  return { code, text, lines, notes: notes.join("\n") };
}

async function writeQuestions(dir: string): Promise<string> {
  const file = `${dir}/question.jsonl`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({ question_id: 1, category: "writing", turns: ["Hello?", "Again?"] }) + "\n",
  );
  return file;
}

brokenTest(
  "eval refuses a checkpoint whose lm_head.weight is NaN, naming it, and writes no result",
  nanHead,
  async (model, dir) => {
    const tasks = await writeTasks(dir);
    for (const task of [tasks.choice, tasks.text]) {
      const out = `${dir}/result.json`;
      const r = await evalRun(model, ...task, "--json", "--out", out);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, `Invalid content in "${model}"`);
      assertStringIncludes(r.err, `tensor "${LM_HEAD}" holds NaN at element 0`);
      assertEquals(r.out, "", "no table or JSON is printed");
      assert(!(await exists(out)), "no result file is written");
    }
  },
);

brokenTest(
  "generate, chat and mtbench refuse a checkpoint whose lm_head.weight is NaN, naming it",
  nanHead,
  async (model, dir) => {
    for (const sampling of [["--temperature", "0"], ["--temperature", "1"]]) {
      const g = await generationRun(
        generateMain,
        [model, "--prompt", "Hi", "--max-tokens", "4", ...sampling],
      );
      assertEquals(g.code, 2, g.notes);
      assertStringIncludes(g.notes, `tensor "${LM_HEAD}" holds NaN at element 0`);
      assertEquals(g.text, "", "no text is printed");
    }
    const c = await generationRun(chatMain, [model, "--max-tokens", "4"], "Hello\n");
    assertEquals(c.code, 2, c.notes);
    assertStringIncludes(c.notes, `tensor "${LM_HEAD}" holds NaN at element 0`);
    assertEquals(c.text, "");
    const out = `${dir}/answers.jsonl`;
    const m = await generationRun(mtbenchMain, [
      model,
      "--questions",
      await writeQuestions(dir),
      "--out",
      out,
      "--max-tokens",
      "4",
    ]);
    assertEquals(m.code, 2, m.notes);
    assertStringIncludes(m.notes, `tensor "${LM_HEAD}" holds NaN at element 0`);
    assert(!(await exists(out)), "no answer file is written");
  },
);

brokenTest(
  "eval fails on finite weights whose logits overflow: an error, never a number in the table",
  overflowingHead,
  async (model, dir) => {
    assert(await allFinite(`${model}/model.safetensors`), "the weights themselves are finite");
    const tasks = await writeTasks(dir);
    for (const task of [tasks.choice, tasks.text]) {
      const out = `${dir}/result.json`;
      const r = await evalRun(model, ...task, "--out", out);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, `Invalid content in "${model}"`);
      assertStringIncludes(r.err, "the forward pass overflowed float32");
      assertEquals(r.out, "", "no table is printed");
      assert(!(await exists(out)), "no result file is written");
    }
  },
);

brokenTest(
  "generate, chat and mtbench fail on finite weights whose logits overflow, not emit token 0",
  overflowingHead,
  async (model, dir) => {
    for (const flags of [["--temperature", "0"], ["--temperature", "1"], ["--no-cache"]]) {
      const g = await generationRun(
        generateMain,
        [model, "--prompt", "Hi", "--max-tokens", "4", ...flags],
      );
      assertEquals(g.code, 2, g.notes);
      assertStringIncludes(g.notes, `Invalid content in "${model}"`);
      assertStringIncludes(g.notes, "logits for new token 1 are not finite");
      assertEquals(g.text, "", "no text is printed");
    }
    const c = await generationRun(chatMain, [model, "--max-tokens", "4"], "Hello\n");
    assertEquals(c.code, 2, c.notes);
    assertStringIncludes(c.notes, "logits for new token 1 are not finite");
    assertEquals(c.text.trim(), "", "no answer is printed");
    const out = `${dir}/answers.jsonl`;
    const m = await generationRun(mtbenchMain, [
      model,
      "--questions",
      await writeQuestions(dir),
      "--out",
      out,
      "--max-tokens",
      "4",
    ]);
    assertEquals(m.code, 2, m.notes);
    assertStringIncludes(m.notes, "logits for new token 1 are not finite");
    assert(!(await exists(out)), "no answer file is written");
  },
);

brokenTest(
  "ckpt export, grow and logits refuse a NaN model by tensor; --allow-non-finite converts it",
  nanHead,
  async (model, dir) => {
    const commands = [["export", model, `${dir}/hf`], [
      "grow",
      model,
      `${dir}/grown`,
      "--add",
      "1",
    ]];
    for (const args of commands) {
      const r = await capture(ckptMain, args);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, `tensor "${LM_HEAD}" holds NaN at element 0`);
      assertStringIncludes(r.err, "--allow-non-finite");
      assert(!(await exists(args[2]!)), `${args[0]} wrote nothing`);
      const allowed = await capture(ckptMain, [...args, "--allow-non-finite"]);
      assertEquals(allowed.code, 0, allowed.err);
    }
    const out = `${dir}/logits.json`;
    const l = await capture(ckptMain, ["logits", model, "--tokens", "1,2", "--out", out]);
    assertEquals(l.code, 2, l.err);
    assertStringIncludes(l.err, `tensor "${LM_HEAD}" holds NaN at element 0`);
    assert(!(await exists(out)));
  },
);

brokenTest(
  "eval fails on a perplexity that overflows float64 from finite log-likelihoods, never Infinity",
  // Logits in the thousands: finite in float32, but a log-likelihood per token far below −709.
  (name, data) => {
    if (name === LM_HEAD) data.forEach((x, i) => (data[i] = x * 1e5));
  },
  async (model, dir) => {
    const tasks = await writeTasks(dir);
    const r = await evalRun(model, ...tasks.text, "--json");
    assertEquals(r.code, 2, r.err);
    assertStringIncludes(r.err, 'task "story": token_perplexity came out Infinity');
    assertStringIncludes(r.err, "from finite log-likelihoods");
    assertEquals(r.out, "", "no JSON with null is printed");
  },
);

const COLOURS: readonly [string, string][] = [
  ["grass", "Green."],
  ["the sky", "Blue."],
  ["snow", "White."],
  ["coal", "Black."],
];

async function writeAlpaca(dir: string, n: number): Promise<string> {
  const file = `${dir}/alpaca.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify(Array.from({ length: n }, (_, i) => {
      const [thing, colour] = COLOURS[i % COLOURS.length]!;
      return { instruction: "Name the colour of the object.", input: thing, output: colour };
    })),
  );
  return file;
}

function finetuneRun(...args: string[]): Promise<Captured> {
  return capture((a) => finetuneMain(a, console.log), [...args, "--backend", "cpu"]);
}

brokenTest(
  "finetune refuses a NaN base at load, naming the tensor, before any run directory exists",
  nanHead,
  async (model, dir) => {
    const out = `${dir}/sft`;
    const r = await finetuneRun(model, "--data", await writeAlpaca(dir, 8), "--out", out);
    assertEquals(r.code, 2, r.err);
    assertStringIncludes(r.err, `tensor "${LM_HEAD}" holds NaN at element 0`);
    assert(!r.err.includes("--lr"), `no learning rate can help a NaN base: ${r.err}`);
    assert(!(await exists(out)), "nothing is written");
  },
);

brokenTest(
  "finetune from finite weights whose loss overflows: refused as a broken base, not 'lower --lr'",
  overflowingHead,
  async (model, dir) => {
    const data = await writeAlpaca(dir, 8);
    // With held-out examples the loss before fine-tuning shows it; without, the steps do: three
    // skipped in a row (batch 1, 16 steps), or all of a run shorter than that (2 steps).
    const cases = [["--eval-examples", "2"], ["--eval-examples", "0", "--batch", "1"], [
      "--eval-examples",
      "0",
    ]];
    for (const [i, flags] of cases.entries()) {
      const out = `${dir}/sft-${i}`;
      const r = await finetuneRun(model, "--data", data, "--out", out, ...flags);
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, `Invalid content in "${await Deno.realPath(model)}"`);
      assertStringIncludes(r.err, "no learning rate can help");
      assert(!r.err.includes("lower --lr"), r.err);
      assert(!(await exists(out)), "a refused run leaves nothing behind");
    }
  },
);

brokenTest(
  "finetune --lr 1e39 that overflows the first update: exit 6, no checkpoint was written yet",
  () => {},
  async (model, dir) => {
    const data = await writeAlpaca(dir, 8);
    for (const every of ["1", "100"]) {
      const out = `${dir}/sft-${every}`;
      const r = await finetuneRun(
        model,
        "--data",
        data,
        "--out",
        out,
        "--lr",
        "1e39",
        "--warmup",
        "0",
        "--batch",
        "1",
        "--eval-examples",
        "0",
        "--checkpoint-every",
        every,
      );
      assertEquals(r.code, 6, r.err);
      assertStringIncludes(r.err, "no checkpoint was written yet");
      assertStringIncludes(r.err, "lower --lr");
      assert(!r.err.includes("the last checkpoint is kept"), r.err);
      assert(!(await exists(`${out}/checkpoint`)), "no checkpoint was written");
      assert(!(await exists(`${out}/final`)));
    }
  },
);

brokenTest(
  "finetune --lr 1e39 after a finite checkpoint: exit 6 naming the global step of the kept one",
  () => {},
  async (model, dir) => {
    const out = `${dir}/sft`;
    // Warmup 100 makes the first step's rate 1e37: the weights stay finite (~1e37) and are
    // checkpointed, and the next steps' gradients are not finite.
    const r = await finetuneRun(
      model,
      "--data",
      await writeAlpaca(dir, 16),
      "--out",
      out,
      "--lr",
      "1e39",
      "--warmup",
      "100",
      "--epochs",
      "7",
      "--batch",
      "1",
      "--eval-examples",
      "0",
      "--checkpoint-every",
      "1",
    );
    assertEquals(r.code, 6, r.err);
    const state = JSON.parse(await Deno.readTextFile(`${out}/checkpoint/state.json`));
    const kept = state.progress.globalStep as number;
    assert(kept >= 1, `a checkpoint of step ${kept}`);
    assertStringIncludes(r.err, `the checkpoint of global step ${kept} is kept`);
    assertStringIncludes(r.err, "lower --lr");
    assert(await allFinite(`${out}/checkpoint/model.safetensors`), "the kept one is finite");
    assert(!(await exists(`${out}/final`)));
  },
);
