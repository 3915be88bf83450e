/**
 * The exit-code table of `docs/errors.md` is true: every code it documents for a command is
 * produced by that command, run as a user runs it (its own `deno run` process, the status the shell
 * sees). The table is read from that page itself, so a row added there without a case here, or a
 * case here that the page does not document, fails.
 */
import YAML from "yaml";
import { assert, assertEquals } from "./assert.ts";
import { LM_HEAD } from "../base/mod.ts";
import { withTempDir, writeTinyModel } from "./tiny_model.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const TABLE_PAGE = "docs/errors.md";

const COMMANDS = [
  "plan",
  "run",
  "compare",
  "ckpt",
  "eval",
  "generate",
  "chat",
  "finetune",
  "mtbench",
] as const;
type Command = typeof COMMANDS[number];

/** `(command, code)` pairs the table of {@link TABLE_PAGE} documents. */
async function documented(): Promise<Set<string>> {
  const text = await Deno.readTextFile(`${ROOT}${TABLE_PAGE}`);
  const start = text.indexOf("| Exit |");
  assert(start >= 0, `${TABLE_PAGE} has an exit-code table headed \`| Exit |\``);
  const lines = text.slice(start).split("\n");
  const end = lines.findIndex((l) => !l.startsWith("|"));
  const rows = lines.slice(2, end);
  const pairs = new Set<string>();
  for (const row of rows) {
    const [code, , commands] = row.split("|").slice(1, -1).map((c) => c.trim());
    const names = commands === "all"
      ? [...COMMANDS]
      : commands!.split(",").map((c) => c.trim().replaceAll("`", ""));
    for (const n of names) {
      assert(
        (COMMANDS as readonly string[]).includes(n),
        `unknown command "${n}" in ${TABLE_PAGE}`,
      );
      pairs.add(`${n} ${Number(code)}`);
    }
  }
  return pairs;
}

function config(training: Record<string, unknown> = {}, modelOverride = {}): string {
  return YAML.stringify({
    name: "codes",
    model: {
      hidden: 16,
      intermediate: 32,
      heads: 2,
      layers: 2,
      vocab: 257,
      maxSeqLen: 32,
      ...modelOverride,
    },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 2,
      batchTokens: 32,
      lr: 0.01,
      warmup: 1,
      steps: 3,
      evalEvery: 3,
      evalBatches: 1,
      checkpointEvery: 3,
      logEvery: 3,
      seed: 1,
      ...training,
    },
    data: { source: "builtin", builtinBytes: 20000, cacheDir: `${ROOT}.cache/tokens` },
    compare: { methods: ["standard"], seeds: 1, eval: false },
  });
}

interface Fixture {
  readonly dir: string;
  readonly config: string;
  readonly diverging: string;
  readonly huge: string;
  readonly model: string;
  readonly nan: string;
  readonly task: string;
  readonly alpaca: string;
  readonly questions: string;
  readonly file: string;
}

async function fixture(dir: string): Promise<Fixture> {
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };
  await write(
    "colors.jsonl",
    [0, 1, 2].map((i) => JSON.stringify({ q: `item ${i}`, c: ["red", "green"], g: i % 2 }))
      .join("\n") + "\n",
  );
  return {
    dir,
    config: await write("c.yaml", config()),
    // A learning rate beyond float32 (Infinity): every update overflows, and three skipped steps
    // in a row stop the run.
    diverging: await write("diverging.yaml", config({ lr: 1e39, warmup: 1, steps: 6 })),
    // Model state far beyond this machine's memory (refused before anything is allocated).
    huge: await write(
      "huge.yaml",
      config({}, { hidden: 8192, intermediate: 28672, heads: 64, layers: 4096 }),
    ),
    model: await writeTinyModel(`${dir}/good`),
    nan: await writeTinyModel(`${dir}/nan`, {
      edit: (name, data) => name === LM_HEAD && data.fill(NaN),
    }),
    task: await write(
      "colors.yaml",
      'name: colors\nkind: multiple_choice\nreader: { data: colors.jsonl }\nprompt: "Q: {q}\\nA:"\nchoices: "{c}"\ngold: "{g}"\n',
    ),
    alpaca: await write(
      "alpaca.json",
      JSON.stringify(
        Array.from({ length: 6 }, (_, i) => ({ instruction: `Say ${i}.`, output: `${i}` })),
      ),
    ),
    questions: await write(
      "questions.jsonl",
      JSON.stringify({ question_id: 1, category: "writing", turns: ["Hi.", "Again."] }) + "\n",
    ),
    file: await write("plain.txt", "not a folder\n"),
  };
}

/** Each case: the command's arguments (and stdin) that give the code. */
function cases(f: Fixture): Record<string, { args: string[]; stdin?: string }> {
  const d = f.dir;
  const under = `${f.file}/inside`; // a path under a regular file: nothing can be written there
  const gen = ["--max-tokens", "2"];
  return {
    "plan 0": { args: [f.config] },
    "plan 2": { args: [f.config, "--stages", "two"] },
    "plan 3": { args: [f.config, "--budget", "1KB"] },
    "plan 4": { args: [`${d}/missing.yaml`] },

    "run 0": { args: [f.config, "--out", `${d}/run0`] },
    "run 2": { args: [f.config, "--no-such-flag"] },
    "run 3": { args: [f.huge, "--out", `${d}/run3`] },
    "run 4": { args: [f.config, "--out", under] },
    "run 5": { args: [f.config, "--out", `${d}/run5`, "--backend", "tensorflow"] },
    "run 6": { args: [f.diverging, "--out", `${d}/run6`] },

    "compare 0": { args: [f.config, "--out", `${d}/cmp0`] },
    "compare 2": { args: [f.config, "--methods", "nonsense"] },
    "compare 3": { args: [f.huge, "--out", `${d}/cmp3`] },
    "compare 4": { args: [f.config, "--out", under] },
    "compare 5": { args: [f.config, "--out", `${d}/cmp5`, "--backend", "tensorflow"] },
    "compare 6": { args: [f.diverging, "--out", `${d}/cmp6`] },

    "ckpt 0": { args: ["export", f.model, `${d}/hf0`] },
    "ckpt 2": { args: ["export", f.nan, `${d}/hf2`] },
    "ckpt 4": { args: ["export", `${d}/missing`, `${d}/hf4`] },

    "eval 0": { args: [f.model, "--task-file", f.task, "--backend", "cpu"] },
    "eval 2": { args: [f.nan, "--task-file", f.task, "--backend", "cpu"] },
    "eval 4": { args: [f.model, "--task-file", `${d}/missing.yaml`] },
    "eval 5": { args: [f.model, "--task-file", f.task, "--backend", "tensorflow"] },

    "generate 0": { args: [f.model, "--prompt", "Hi", ...gen, "--backend", "cpu"] },
    "generate 2": { args: [f.nan, "--prompt", "Hi", ...gen, "--backend", "cpu"] },
    "generate 4": { args: [`${d}/missing`, "--prompt", "Hi"] },
    "generate 5": { args: [f.model, "--prompt", "Hi", "--backend", "tensorflow"] },

    "chat 0": { args: [f.model, ...gen, "--backend", "cpu"], stdin: "Hello\n" },
    "chat 2": { args: [f.nan, ...gen, "--backend", "cpu"], stdin: "Hello\n" },
    "chat 4": { args: [`${d}/missing`], stdin: "Hello\n" },
    "chat 5": { args: [f.model, "--backend", "tensorflow"], stdin: "Hello\n" },

    "finetune 0": {
      args: [f.model, "--data", f.alpaca, "--out", `${d}/ft0`, "--batch", "2", "--epochs", "1"],
    },
    "finetune 2": { args: [f.nan, "--data", f.alpaca, "--out", `${d}/ft2`] },
    "finetune 4": { args: [f.model, "--data", `${d}/missing.json`, "--out", `${d}/ft4`] },
    "finetune 5": {
      args: [f.model, "--data", f.alpaca, "--out", `${d}/ft5`, "--backend", "tensorflow"],
    },
    "finetune 6": {
      args: [
        ...[f.model, "--data", f.alpaca, "--out", `${d}/ft6`, "--batch", "2"],
        ...["--lr", "1e39", "--warmup", "0", "--eval-examples", "0"],
      ],
    },

    "mtbench 0": {
      args: [f.model, "--questions", f.questions, "--out", `${d}/a0.jsonl`, ...gen],
    },
    "mtbench 2": { args: [f.nan, "--questions", f.questions, "--out", `${d}/a2.jsonl`] },
    "mtbench 4": {
      args: [f.model, "--questions", `${d}/missing.jsonl`, "--out", `${d}/a4.jsonl`],
    },
    "mtbench 5": {
      args: [
        ...[f.model, "--questions", f.questions, "--out", `${d}/a5.jsonl`],
        ...["--backend", "tensorflow"],
      ],
    },
  };
}

async function exitOf(
  command: Command,
  args: readonly string[],
  stdin: string | undefined,
): Promise<{ code: number; err: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--unstable-webgpu", `${ROOT}cli/${command}.ts`, ...args],
    cwd: ROOT,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, err: new TextDecoder().decode(out.stderr).slice(-600) };
}

Deno.test({
  name: "every exit code docs/errors.md documents for a command, that command produces",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withTempDir("exit-codes-", async (dir) => {
      const table = cases(await fixture(dir));
      assertEquals(
        Object.keys(table).sort(),
        [...(await documented())].sort(),
        `the cases here are ${TABLE_PAGE}'s table, row for row`,
      );
      const wrong: string[] = [];
      for (const [key, c] of Object.entries(table)) {
        const [command, code] = key.split(" ") as [Command, string];
        const got = await exitOf(command, c.args, c.stdin);
        if (got.code !== Number(code)) {
          wrong.push(`${key}: exited ${got.code}\n${got.err}`);
        }
      }
      assertEquals(wrong, [], wrong.join("\n\n"));
    });
  },
});
