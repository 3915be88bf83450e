/**
 * The output rule (`checkpoint/output_path.ts`) through every command that writes: an output is
 * never an input, never inside or above one it would replace, never a checkpoint, run or other
 * used folder without `--force`, and `--force` never replaces a folder that holds an input or
 * that a live process holds. Each refusal exits non-zero and leaves every byte where it was; an
 * output that cannot be written is exit 4, found before the work starts. Ends with a property
 * test: generated output spellings around a checkpoint, given to `ckpt export`.
 */
import fc from "fast-check";
import { relative } from "node:path";
import YAML from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { COLORS_TASK, colorsData, pathExists, withTempDir, writeTinyModel } from "./tiny_model.ts";
import { main as ckptMain } from "../cli/ckpt.ts";
import { main as compareMain } from "../cli/compare.ts";
import { main as evalMain } from "../cli/eval.ts";
import { main as finetuneMain } from "../cli/finetune.ts";
import { main as mtbenchMain } from "../cli/mtbench.ts";
import { main as planMain } from "../cli/plan.ts";
import { main as runMain } from "../cli/run.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OPTS = { sanitizeOps: false, sanitizeResources: false } as const;

/** A run folder `dir/name` holding a random-weight `final/` (byte tokenizer); its final/. */
function tinyRun(dir: string, name: string): Promise<string> {
  return writeTinyModel(`${dir}/${name}`, { seed: 5 });
}

/** What a pre-training run leaves beside its final/: metrics, graph, charts, a checkpoint. */
async function pretrainingFiles(run: string): Promise<void> {
  await Deno.writeTextFile(`${run}/metrics.jsonl`, '{"type":"train","step":1,"loss":5}\n');
  await Deno.writeTextFile(`${run}/pipeline.yaml`, "version: 1\n");
  await Deno.writeTextFile(`${run}/loss.svg`, "<svg/>");
  await Deno.mkdir(`${run}/checkpoint`);
  await Deno.writeTextFile(`${run}/checkpoint/state.json`, "{}");
}

/** Every entry under `path` (links not followed) with its bytes or target, by relative name. */
async function tree(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (p: string): Promise<void> => {
    const info = await Deno.lstat(p);
    const name = relative(path, p) || ".";
    if (info.isSymlink) out[name] = `link ${await Deno.readLink(p)}`;
    else if (info.isFile) {
      const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(p));
      out[name] = `file ${Array.from(new Uint8Array(digest), (b) => b.toString(16)).join("")}`;
    } else {
      out[name] = "dir";
      for await (const e of Deno.readDir(p)) await walk(`${p}/${e.name}`);
    }
  };
  await walk(path);
  return out;
}

Deno.test({
  ...OPTS,
  name: "eval --out refuses the checkpoint's own files and its --data file, changing nothing",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const ck = await tinyRun(dir, "run");
      await Deno.writeTextFile(`${dir}/mc.yaml`, COLORS_TASK);
      await Deno.writeTextFile(`${dir}/colors.jsonl`, colorsData(4));
      await Deno.writeTextFile(`${dir}/mc2.jsonl`, colorsData(3));
      await Deno.symlink(`${dir}/mc2.jsonl`, `${dir}/results.json`);
      const before = await tree(dir);
      const evalOut = (out: string, ...extra: string[]): Promise<Captured> =>
        capture(evalMain, [ck, "--task-file", `${dir}/mc.yaml`, ...extra, "--out", out]);
      const weights = await evalOut(`${ck}/model.safetensors`, "--backend", "cpu");
      assertEquals(weights.code, 2, weights.err);
      assertStringIncludes(weights.err, `--out ${ck}/model.safetensors: is inside the checkpoint`);
      const data = await evalOut(`${dir}/mc2.jsonl`, "--data", `${dir}/mc2.jsonl`);
      assertEquals(data.code, 2, data.err);
      assertStringIncludes(data.err, `is the --data file "${dir}/mc2.jsonl"`);
      const viaLink = await evalOut(`${dir}/results.json`, "--data", `${dir}/mc2.jsonl`);
      assertEquals(viaLink.code, 2, viaLink.err);
      const spelled = await evalOut(`${dir}/run/x/../final/./config.json`);
      assertEquals(spelled.code, 2, spelled.err);
      assertEquals(await tree(dir), before);
      // Beside the checkpoint, in its run folder, is where results go.
      const beside = await evalOut(`${dir}/run/eval.json`, "--backend", "cpu", "--json");
      assertEquals(beside.code, 0, beside.err);
      assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/run/eval.json`)).tasks.colors.n, 4);
    }),
});

Deno.test({
  ...OPTS,
  name: "eval --out into a missing or unwritable folder is exit 4, before the model is loaded",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const ck = await tinyRun(dir, "run");
      await Deno.writeTextFile(`${dir}/mc.yaml`, COLORS_TASK);
      await Deno.writeTextFile(`${dir}/colors.jsonl`, colorsData(4));
      await Deno.writeTextFile(`${dir}/plain.txt`, "not a folder");
      const before = await tree(dir);
      for (
        const [out, why] of [[`${dir}/missing/r.json`, "does not exist"], [
          `${dir}/plain.txt/r.json`,
          "is not a folder",
        ]] as const
      ) {
        const r = await capture(evalMain, [ck, "--task-file", `${dir}/mc.yaml`, "--out", out]);
        assertEquals(r.code, 4, r.err);
        assertStringIncludes(r.err, `Cannot use "${out}"`);
        assertStringIncludes(r.err, why);
        assert(!r.err.includes("Model:"), "the model was loaded before the output was checked");
      }
      assertEquals(await tree(dir), before);
    }),
});

Deno.test({
  ...OPTS,
  name: "mtbench --out refuses the checkpoint's files and the --questions file, changing nothing",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const ck = await tinyRun(dir, "run");
      await Deno.writeTextFile(
        `${dir}/q.jsonl`,
        '{"question_id": 1, "category": "writing", "turns": ["Hi?", "Again?"]}\n',
      );
      await Deno.writeTextFile(`${dir}/plain.txt`, "not a folder");
      const before = await tree(dir);
      const notes: string[] = [];
      const io = { write: () => {}, line: () => {}, note: (l: string) => notes.push(l) };
      const mtbench = (out: string) =>
        mtbenchMain([
          ck,
          "--questions",
          `${dir}/q.jsonl`,
          "--out",
          out,
          "--max-tokens",
          "2",
          "--backend",
          "cpu",
        ], io);
      assertEquals(await mtbench(`${ck}/model.safetensors`), 2);
      assertStringIncludes(notes.join("\n"), "is inside the checkpoint");
      assertEquals(await mtbench(`${dir}/q.jsonl`), 2);
      assertStringIncludes(notes.join("\n"), `is the --questions file "${dir}/q.jsonl"`);
      // The folders it would make are made only once the answers exist: not inside an input.
      assertEquals(await mtbench(`${ck}/answers/a.jsonl`), 2);
      assertEquals(await mtbench(`${dir}/plain.txt/a.jsonl`), 4);
      assertStringIncludes(notes.join("\n"), "is not a folder");
      assertEquals(await tree(dir), before);
      assertEquals(await mtbench(`${dir}/answers/new/a.jsonl`), 0, notes.join("\n"));
      assert(await pathExists(`${dir}/answers/new/a.jsonl`));
    }),
});

/** Alpaca records, short enough for SHAPE's context. */
function alpaca(n: number): string {
  return JSON.stringify(
    Array.from({ length: n }, (_, i) => ({ instruction: `Say ${i}.`, output: `${i}.` })),
  );
}

const FINETUNE_FAST = ["--epochs", "1", "--batch", "2", "--eval-examples", "0", "--backend", "cpu"];

Deno.test({
  ...OPTS,
  name: "finetune --force refuses the run folder that holds its base, keeping every file of it",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const base = await tinyRun(dir, "run");
      await pretrainingFiles(`${dir}/run`);
      await Deno.writeTextFile(`${dir}/a.json`, alpaca(4));
      const before = await tree(dir);
      const r = await capture(
        (a) => finetuneMain(a, () => {}),
        [base, "--data", `${dir}/a.json`, "--out", `${dir}/run`, "--force", ...FINETUNE_FAST],
      );
      assertEquals(r.code, 2, r.err);
      assertStringIncludes(r.err, `--out ${dir}/run: holds the base checkpoint "${base}"`);
      assertEquals(await tree(dir), before);
    }),
});

Deno.test({
  ...OPTS,
  name: "finetune refuses a checkpoint's folder and any used folder that is not a run",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const base = await tinyRun(dir, "run");
      const other = await tinyRun(dir, "other");
      await Deno.writeTextFile(`${dir}/a.json`, alpaca(4));
      await Deno.mkdir(`${dir}/notes`);
      await Deno.writeTextFile(`${dir}/notes/todo.txt`, "keep me");
      await Deno.copyFile(`${dir}/a.json`, `${dir}/notes/a.json`);
      const before = await tree(dir);
      const finetune = (out: string, ...extra: string[]) =>
        capture(
          (a) => finetuneMain(a, () => {}),
          [base, "--data", `${dir}/a.json`, "--out", out, ...FINETUNE_FAST, ...extra],
        );
      for (const force of [[], ["--force"]]) {
        const own = await finetune(base, ...force);
        assertEquals(own.code, 2, own.err);
        assertStringIncludes(own.err, `is the base checkpoint "${base}"`);
      }
      const checkpoint = await finetune(other);
      assertEquals(checkpoint.code, 2, checkpoint.err);
      assertStringIncludes(checkpoint.err, "(it is a checkpoint); pass --force");
      const notes = await finetune(`${dir}/notes`);
      assertEquals(notes.code, 2, notes.err);
      assertStringIncludes(notes.err, "holds a.json, todo.txt, which no fine-tuning run wrote");
      const data = await capture(
        (a) => finetuneMain(a, () => {}),
        [
          base,
          "--data",
          `${dir}/notes/a.json`,
          "--out",
          `${dir}/notes`,
          "--force",
          ...FINETUNE_FAST,
        ],
      );
      assertEquals(data.code, 2, data.err);
      assertStringIncludes(data.err, `holds the --data file "${dir}/notes/a.json"`);
      assertEquals(await tree(dir), before);
      // --force says so: the run goes into the folder, beside what was there.
      const forced = await finetune(`${dir}/notes`, "--force");
      assertEquals(forced.code, 0, forced.err);
      assertEquals(await Deno.readTextFile(`${dir}/notes/todo.txt`), "keep me");
      assert(await pathExists(`${dir}/notes/final/model.safetensors`));
    }),
});

/** A script that holds `Deno.args[0]`'s lock (as a running `deno task run` does) until killed. */
const HOLDER = `
import { lockDir } from "${new URL("../store/dir_lock.ts", import.meta.url).href}";
const held = await lockDir(Deno.args[0], "run");
if (held._tag === "Left") Deno.exit(1);
console.log("held");
setInterval(() => {}, 1000);
`;

/** Runs `f` while another process holds `dir`'s lock; the holder's pid is passed to `f`. */
async function whileHeld(dir: string, f: (pid: number) => Promise<void>): Promise<void> {
  const script = `${dir}/../holder.ts`;
  await Deno.writeTextFile(script, HOLDER);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", `${ROOT}deno.json`, script, dir],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const first = await reader.read();
    assertEquals(first.value?.trim(), "held");
    await f(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    await Deno.remove(script);
  }
}

Deno.test({
  ...OPTS,
  name: "ckpt export --force onto a run folder another process holds is exit 4 and keeps it whole",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const ck = await tinyRun(dir, "base");
      await tinyRun(dir, "run");
      await pretrainingFiles(`${dir}/run`);
      await whileHeld(`${dir}/run`, async (pid) => {
        const before = await tree(`${dir}/run`);
        const r = await capture(ckptMain, ["export", ck, `${dir}/run`, "--force"]);
        assertEquals(r.code, 4, r.err);
        assertStringIncludes(r.err, `Cannot use "${dir}/run": a live process (pid ${pid})`);
        assertEquals(await tree(`${dir}/run`), before);
      });
      // Once nobody writes it, --force replaces it as asked.
      const r = await capture(ckptMain, ["export", ck, `${dir}/run`, "--force"]);
      assertEquals(r.code, 0, r.err);
      assert(
        await pathExists(`${dir}/run/config.json`) &&
          !(await pathExists(`${dir}/run/metrics.jsonl`)),
      );
    }),
});

Deno.test({
  ...OPTS,
  name: "ckpt refuses an output inside its input, and logits refuses the weights as --out",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const ck = await tinyRun(dir, "run");
      const before = await tree(dir);
      const cases: [string[], string][] = [
        [["export", ck, `${ck}/hf`], `${ck}/hf: is inside the input "${ck}"`],
        [["import", ck, `${ck}/../final/step`], "is inside the input"],
        [["grow", ck, `${ck}/grown`, "--add", "1"], "is inside the input"],
        [["logits", ck, "--tokens", "1,2", "--out", `${ck}/model.safetensors`], "--out"],
        [["export", `${ck}/model.safetensors`, `${ck}`, "--force"], `is the input`],
      ];
      for (const [args, fragment] of cases) {
        const r = await capture(ckptMain, args);
        assertEquals(r.code, 2, `${args.join(" ")}: ${r.err}`);
        assertStringIncludes(r.err, fragment);
      }
      const missing = await capture(ckptMain, [
        "logits",
        ck,
        "--tokens",
        "1,2",
        "--out",
        `${dir}/missing/l.json`,
      ]);
      assertEquals(missing.code, 4, missing.err);
      assertStringIncludes(missing.err, `${dir}/missing/l.json`);
      assertEquals(await tree(dir), before);
    }),
});

function runConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "paths",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 1, vocab: 257, maxSeqLen: 16 },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 2,
      batchTokens: 32,
      steps: 2,
      evalEvery: 2,
      evalBatches: 1,
      checkpointEvery: 1,
      logEvery: 1,
    },
    data: { source: "builtin", builtinBytes: 4000, cacheDir: `${ROOT}.cache/tokens` },
    ...extra,
  };
}

Deno.test({
  ...OPTS,
  name: "run --force refuses a folder that holds its config or its data, and a checkpoint without",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      await Deno.mkdir(`${dir}/exp`);
      await Deno.writeTextFile(`${dir}/exp/c.yaml`, YAML.stringify(runConfig()));
      await Deno.mkdir(`${dir}/corpus`);
      await Deno.writeTextFile(`${dir}/corpus/a.txt`, "Some words of text.\n".repeat(200));
      await Deno.writeTextFile(
        `${dir}/d.yaml`,
        YAML.stringify(runConfig({ data: { source: `${dir}/corpus/*.txt`, valFraction: 0.1 } })),
      );
      const ck = await tinyRun(dir, "model");
      const before = await tree(dir);
      const run = (...args: string[]) => capture((a) => runMain(a, () => {}), args);
      const config = await run(`${dir}/exp/c.yaml`, "--out", `${dir}/exp`, "--force");
      assertEquals(config.code, 2, config.err);
      assertStringIncludes(config.err, `holds the PIPELINE file "${dir}/exp/c.yaml"`);
      const data = await run(`${dir}/d.yaml`, "--out", `${dir}/corpus/../corpus`, "--force");
      assertEquals(data.code, 2, data.err);
      assertStringIncludes(data.err, `is a data source "${dir}/corpus"`);
      const checkpoint = await run(`${dir}/exp/c.yaml`, "--out", ck);
      assertEquals(checkpoint.code, 2, checkpoint.err);
      assertStringIncludes(checkpoint.err, "(it is a checkpoint); pass --force");
      assertEquals(await tree(dir), before);
    }),
});

Deno.test({
  ...OPTS,
  name: "run RUN/pipeline.yaml --out RUN: --resume continues the run, --force is refused",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      await Deno.writeTextFile(`${dir}/c.yaml`, YAML.stringify(runConfig()));
      const run = (...args: string[]) => capture((a) => runMain(a, () => {}), args);
      const first = await run(`${dir}/c.yaml`, "--out", `${dir}/run`);
      assertEquals(first.code, 0, first.err);
      const before = await tree(`${dir}/run`);
      const graph = await Deno.readTextFile(`${dir}/run/pipeline.yaml`);
      const forced = await run(`${dir}/run/pipeline.yaml`, "--out", `${dir}/run`, "--force");
      assertEquals(forced.code, 2, forced.err);
      assertStringIncludes(forced.err, "--force would clear the folder that holds the input");
      assertEquals(await tree(`${dir}/run`), before);
      const resumed = await run(`${dir}/run/pipeline.yaml`, "--out", `${dir}/run`, "--resume");
      assertEquals(resumed.code, 0, resumed.err);
      // It rewrites the graph it read with the graph that ran: the same text.
      assertEquals(await Deno.readTextFile(`${dir}/run/pipeline.yaml`), graph);
    }),
});

Deno.test({
  ...OPTS,
  name: "plan --emit onto its config and compare --out onto its config are refused",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      await Deno.copyFile(`${ROOT}examples/configs/paper-368m.yaml`, `${dir}/c.yaml`);
      await Deno.copyFile(`${ROOT}examples/configs/compare-smoke.yaml`, `${dir}/s.yaml`);
      const before = await tree(dir);
      const emit = await capture(planMain, [`${dir}/c.yaml`, "--emit", `${dir}/./c.yaml`]);
      assertEquals(emit.code, 2, emit.err);
      assertStringIncludes(emit.err, `--emit ${dir}/./c.yaml: is the CONFIG file`);
      const svg = await capture(planMain, [`${dir}/c.yaml`, "--svg", `${dir}/no/p.svg`]);
      assertEquals(svg.code, 4, svg.err);
      assertStringIncludes(svg.err, "does not exist");
      const compare = await capture(compareMain, [`${dir}/s.yaml`, "--out", `${dir}/s.yaml`]);
      assertEquals(compare.code, 2, compare.err);
      assertStringIncludes(compare.err, `is the CONFIG file "${dir}/s.yaml"`);
      assertEquals(await tree(dir), before);
    }),
});

/** Where a spelling of names under the root lands: `.` skipped, `..` up, `lnk` is `ck`. */
function landing(names: readonly string[]): string {
  const at: string[] = [];
  for (const n of names) {
    if (n === "" || n === ".") continue;
    if (n === "..") at.pop();
    else if (at.length === 0 && n === "lnk") at.push("ck");
    else at.push(n);
  }
  return at.join("/");
}

const OUT_TARGETS = [
  ".",
  "ck",
  "ck/hf",
  "ck/model.safetensors",
  "ck/..",
  "sib",
  "sib/hf",
  "new",
  "new/deeper",
  "lnk",
  "lnk/hf",
  "lnk/../new",
];

const outSpelling = fc.record({
  target: fc.constantFrom(...OUT_TARGETS),
  dots: fc.nat({ max: 2 }),
  detour: fc.constantFrom("none", "none", "existing", "missing"),
  trailing: fc.boolean(),
  relative: fc.boolean(),
  force: fc.boolean(),
}).map((c) => {
  const names = c.target.split("/");
  // `.` after a name, a detour into a folder and back: the same place, spelled otherwise.
  const detour = { none: [], existing: ["sib", ".."], missing: ["zz", ".."] }[c.detour];
  const spelled = [
    ...detour,
    ...names.flatMap((n, i) => (i < Math.min(c.dots, names.length - 1) ? [n, "."] : [n])),
    ...(c.trailing ? [""] : []),
  ];
  return { ...c, names: spelled };
});

Deno.test({
  ...OPTS,
  name:
    "ckpt export, given generated output spellings around its input, refuses exactly the destructive ones and keeps every byte",
  fn: () =>
    withTempDir("output-paths-", async (dir) => {
      const template = await tinyRun(dir, "template");
      await fc.assert(
        fc.asyncProperty(outSpelling, async (c) => {
          const root = `${dir}/case`;
          await Deno.mkdir(`${root}/ck`, { recursive: true });
          for await (const e of Deno.readDir(template)) {
            await Deno.copyFile(`${template}/${e.name}`, `${root}/ck/${e.name}`);
          }
          await Deno.mkdir(`${root}/sib`);
          await Deno.writeTextFile(`${root}/sib/x.txt`, "sibling");
          await Deno.symlink(`${root}/ck`, `${root}/lnk`);
          try {
            const base = c.relative ? relative(Deno.cwd(), root) : root;
            const out = `${base}/${c.names.join("/")}`;
            const before = await tree(root);
            const input = await tree(`${root}/ck`);
            const r = await capture(ckptMain, [
              "export",
              `${root}/ck`,
              out,
              ...(c.force ? ["--force"] : []),
            ]);
            const lands = landing(c.names);
            const destructive = lands === "" || lands === "ck" || lands.startsWith("ck/");
            const used = lands === "sib";
            if (destructive) {
              assertEquals(r.code, 2, `${out}: ${r.err}`);
              assertStringIncludes(r.err, `the input "${root}/ck"`);
            } else if (used && !c.force) {
              assertEquals(r.code, 2, `${out}: ${r.err}`);
              assertStringIncludes(r.err, "already exists");
            } else assertEquals(r.code, 0, `${out}: ${r.err}`);
            if (r.code === 0) assertEquals(await tree(`${root}/ck`), input, out);
            else assertEquals(await tree(root), before, out);
          } finally {
            await Deno.remove(root, { recursive: true });
          }
        }),
        { numRuns: 60 },
      );
    }),
});
