/**
 * The documentation's commands are true: every `deno task …` line of the README and of `docs/`
 * names a task of deno.json that accepts the flags written, and the cheap ones run and exit as the
 * page says. The pages' links lead somewhere.
 *
 * Which lines: each line of a fenced block marked `sh`, `bash`, `shell`, `console` or nothing (a
 * line ending in `\` or followed by indented lines continues), and each inline code span, that
 * runs `deno task NAME …` or `npx -y deno@X task NAME …`. A `#` outside quotes starts a comment.
 *
 * "Parses" means: NAME is a task of deno.json, and when the task runs a `cli/*.ts` module, that
 * module's `main` given the line's arguments plus `--help` exits 0. Each command parses its flags
 * strictly (node's `parseArgs`) before it looks at `--help`, so an unknown flag, a flag missing its
 * value and a value given to a switch all fail; values themselves are checked only by the lines
 * that run. `bench` is parsed the same way in its own process (its `--only` set to nothing, so it
 * runs no benchmark); the other tasks (`test`, `ok`, `static`, …) take no flags and are only
 * checked to exist.
 *
 * Placeholders: an argument holding a word of two or more capitals (`CONFIG.yaml`, `CHECKPOINT`,
 * `runs/NAME/final`), `…`, `<…>` or another non-ASCII character (`n₂`) is a placeholder, and its
 * line is only parsed. A usage synopsis (an argument with `[` or `]`) is parsed as the arguments it
 * shows: brackets dropped, `a|b` read as its first choice.
 *
 * Which lines run: a fenced line without placeholders, not fed by a pipe, that runs `plan`, `ckpt`
 * or `generate`, or carries `--dry-run` or `--help`, or ends in `# exit N`. It runs as the task
 * does (the task's own `deno run` permissions), in a folder of its own per page where
 * `examples/` is a copy, the repository's other folders are links, and `runs/tiny-step/final`
 * holds a tiny random model standing for the main job's; a page's lines run in page order (one may
 * read what an earlier one wrote) and must exit 0, or N when the line ends in `# exit N`.
 *
 * @module
 */
import { assert, assertEquals } from "./assert.ts";
import { writeTinyModel } from "./tiny_model.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SHELL_FENCES = new Set(["", "sh", "bash", "shell", "console"]);
/** Tasks cheap enough to run on the tiny fixture or the example configs. */
const RUN_TASKS = new Set(["plan", "ckpt", "generate"]);
/** Root entries a sandbox does not link: its own copy, and the folders commands write. */
const NOT_LINKED = new Set(["examples", "runs", "out"]);

/** One markdown file, named relative to the repository root. */
interface Page {
  readonly name: string;
  readonly text: string;
}

/** A `deno task` command found in a page. */
interface DocCommand {
  /** `page:line`. */
  readonly where: string;
  readonly text: string;
  readonly task: string;
  /** The arguments after the task name, as the shell passes them (a synopsis: as it shows them). */
  readonly args: readonly string[];
  readonly fenced: boolean;
  readonly placeholder: boolean;
  readonly synopsis: boolean;
  /** Fed by a pipe: it reads what another program writes. */
  readonly piped: boolean;
  /** The exit code a `# exit N` comment promises. */
  readonly exit?: number;
}

interface Word {
  readonly value: string;
  readonly quoted: boolean;
}

/** Shell words of `line` and the comment after them (quotes, backslashes, `#`, operators). */
function shellWords(line: string): { words: Word[]; comment: string } {
  const words: Word[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length) break;
    if (line[i] === "#") return { words, comment: line.slice(i + 1).trim() };
    let value = "";
    let quoted = false;
    while (i < line.length && !/\s/.test(line[i]!)) {
      const c = line[i]!;
      if (c === "'" || c === '"') {
        quoted = true;
        const end = line.indexOf(c, i + 1);
        const inner = line.slice(i + 1, end < 0 ? line.length : end);
        value += c === '"' ? inner.replace(/\\(["\\$`])/g, "$1") : inner;
        i = end < 0 ? line.length : end + 1;
      } else if (c === "\\" && i + 1 < line.length) {
        value += line[i + 1];
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    words.push({ value, quoted });
  }
  return { words, comment: "" };
}

const OPERATORS = new Set(["|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1"]);

function isPlaceholder(w: Word): boolean {
  if (w.quoted) return false;
  return /(^|[^A-Za-z0-9])[A-Z][A-Z0-9_]*[A-Z0-9_](?![a-z])/.test(
    w.value.replace(/^--?[\w-]+=/, ""),
  ) ||
    /[^\x20-\x7e]/.test(w.value) || /<[^>]*>/.test(w.value);
}

/** The `deno task` command of one logical line, if it runs one. */
function parseCommandLine(
  line: string,
  where: string,
  place: "fenced" | "inline",
): DocCommand | undefined {
  const { words, comment } = shellWords(line);
  const values = words.map((w) => w.value);
  let start = -1;
  for (let i = 0; i < values.length && start < 0; i++) {
    if (values[i] === "deno" && values[i + 1] === "task") start = i + 2;
    if (values[i] === "npx" && values[i + 1] === "-y" && /^deno@/.test(values[i + 2] ?? "")) {
      if (values[i + 3] === "task") start = i + 4;
    }
  }
  // `deno task …` in prose names no task.
  if (start < 0 || !/^[a-z][\w-]*$/.test(values[start] ?? "")) return undefined;
  const piped = values.slice(0, start).some((v) => v === "|");
  const rest = words.slice(start + 1);
  // In a synopsis, ` | ` separates choices; elsewhere it ends the command.
  const synopsis = rest.some((w) => !w.quoted && /[[\]]/.test(w.value));
  const end = synopsis ? -1 : rest.findIndex((w) => !w.quoted && OPERATORS.has(w.value));
  const own = end < 0 ? rest : rest.slice(0, end);
  const args = synopsis
    ? own.map((w) => w.value.replace(/[[\]]/g, "")).filter((v) => v !== "" && v !== "|")
      .map((v) => v.startsWith("-") ? v : v.split("|")[0]!)
    : own.map((w) => w.value);
  const exit = /^exit (\d+)\b/.exec(comment);
  return {
    where,
    text: line.trim(),
    task: values[start]!,
    args,
    fenced: place === "fenced",
    placeholder: own.some(isPlaceholder),
    synopsis,
    piped,
    ...(exit === null ? {} : { exit: Number(exit[1]) }),
  };
}

/** The text outside fenced blocks (fences blanked, so line numbers stay), and the shell lines. */
function splitFences(text: string): {
  prose: string;
  shell: { line: number; text: string }[];
} {
  const lines = text.split("\n");
  const prose: string[] = [];
  const shell: { line: number; text: string }[] = [];
  let fence: { marker: string; indent: number; shell: boolean } | undefined;
  let continues = false;
  lines.forEach((l, i) => {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(l);
    if (fence === undefined) {
      if (open !== null) {
        fence = {
          marker: open[2]!,
          indent: open[1]!.length,
          shell: SHELL_FENCES.has(open[3]!),
        };
        continues = false;
        prose.push("");
      } else prose.push(l);
      return;
    }
    prose.push("");
    if (l.trim().startsWith(fence.marker) && l.trim().replace(/[`~]/g, "") === "") {
      fence = undefined;
      return;
    }
    if (!fence.shell || l.trim() === "") {
      continues = false;
      return;
    }
    const body = l.slice(Math.min(fence.indent, l.length - l.trimStart().length));
    const last = shell[shell.length - 1];
    if (last !== undefined && (continues || /^\s/.test(body))) {
      last.text = `${last.text.replace(/\\$/, "")} ${body.trim()}`;
    } else shell.push({ line: i + 1, text: body });
    continues = /\\$/.test(body.trimEnd());
  });
  return { prose: prose.join("\n"), shell };
}

/** Every `deno task` command of a page, fenced lines first. */
function commandsOf(page: Page): DocCommand[] {
  const { prose, shell } = splitFences(page.text);
  const found: DocCommand[] = [];
  for (const s of shell) {
    const c = parseCommandLine(s.text, `${page.name}:${s.line}`, "fenced");
    if (c !== undefined) found.push(c);
  }
  for (const m of prose.matchAll(/`([^`]+)`/g)) {
    const span = m[1]!.replace(/\s+/g, " ").replaceAll("\\|", "|").trim();
    if (!/^(npx -y deno@\S+ )?deno task \S/.test(span)) continue;
    const line = prose.slice(0, m.index).split("\n").length;
    const c = parseCommandLine(span, `${page.name}:${line}`, "inline");
    if (c !== undefined) found.push(c);
  }
  return found;
}

/** The README and every page under docs/. */
async function pages(): Promise<Page[]> {
  const names = ["README.md"];
  const walk = async (dir: string): Promise<void> => {
    for await (const e of Deno.readDir(`${ROOT}${dir}`)) {
      if (e.isDirectory) await walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".md")) names.push(`${dir}/${e.name}`);
    }
  };
  await walk("docs");
  names.sort();
  return await Promise.all(
    names.map(async (name) => ({ name, text: await Deno.readTextFile(`${ROOT}${name}`) })),
  );
}

const TASKS = (JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)) as {
  tasks: Record<string, string>;
}).tasks;

/** The task's command as words: `deno run FLAGS… MODULE.ts`, or something else. */
function taskWords(task: string): string[] | undefined {
  return TASKS[task]?.split(/\s+/);
}

/** The module a task runs, when it is `deno run … X.ts`. */
function taskModule(task: string): string | undefined {
  const words = taskWords(task);
  return words?.[1] === "run" ? words.findLast((w) => w.endsWith(".ts")) : undefined;
}

type Main = (argv: readonly string[], io?: unknown) => Promise<number>;

/** Runs `main(argv)` in-process with everything it prints kept (console and its io argument). */
async function callMain(
  main: Main,
  argv: readonly string[],
): Promise<{ code: number; said: string }> {
  const said: string[] = [];
  const keep = (...a: unknown[]): void => void said.push(a.join(" "));
  // run and finetune take a print function, generate, chat and mtbench an io record: one value
  // serves both, and nothing reaches the test's output.
  const io = Object.assign((line: string) => keep(line), {
    write: keep,
    line: keep,
    note: keep,
    input: new ReadableStream<Uint8Array>({ start: (c) => c.close() }),
    interactive: false,
  });
  const [log, error] = [console.log, console.error];
  console.log = keep;
  console.error = keep;
  try {
    return { code: await main(argv, io), said: said.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** A child `deno` process in `cwd`; its exit code and the end of what it printed. */
async function spawn(args: string[], cwd: string): Promise<{ code: number; said: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, said: text.slice(-800) };
}

/** `deno run FLAGS… --config ROOT/deno.json ROOT/MODULE ARGS…`: the task, run from elsewhere. */
function taskArgs(task: string, args: readonly string[]): string[] {
  const words = taskWords(task)!;
  const module = taskModule(task)!;
  const flags = words.slice(2, words.indexOf(module));
  return ["run", ...flags, "--config", `${ROOT}deno.json`, `${ROOT}${module}`, ...args];
}

/** Why `c` does not parse, or undefined when it does. */
async function parseProblem(c: DocCommand): Promise<string | undefined> {
  if (TASKS[c.task] === undefined) return `no task "${c.task}" in deno.json`;
  const module = taskModule(c.task);
  if (module === undefined) return undefined;
  if (module.startsWith("cli/")) {
    const { main } = await import(new URL(`../${module}`, import.meta.url).href) as { main: Main };
    const r = await callMain(main, [...c.args, "--help"]);
    return r.code === 0 ? undefined : `${module} refuses its flags (exit ${r.code}): ${r.said}`;
  }
  if (module === "bench/main.ts") {
    const r = await spawn(taskArgs(c.task, [...c.args, "--only", "none", "--json"]), ROOT);
    return r.code === 0 ? undefined : `bench refuses its flags (exit ${r.code}): ${r.said}`;
  }
  return undefined;
}

/** Whether the test runs `c` (see the module comment). */
function runs(c: DocCommand): boolean {
  return c.fenced && !c.placeholder && !c.synopsis && !c.piped &&
    (RUN_TASKS.has(c.task) || c.args.includes("--dry-run") || c.args.includes("--help") ||
      c.exit !== undefined);
}

/** A folder where a page's commands run without touching the repository. */
async function sandbox(): Promise<string> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "docs-" }));
  for await (const e of Deno.readDir(ROOT)) {
    if (e.name.startsWith(".") || NOT_LINKED.has(e.name)) continue;
    await Deno.symlink(`${ROOT}${e.name}`, `${dir}/${e.name}`);
  }
  await copyTree(`${ROOT}examples`, `${dir}/examples`);
  await writeTinyModel(`${dir}/runs/tiny-step`);
  return dir;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
    else await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

/** Why `c` did not exit as its page says, or undefined when it did. */
async function runProblem(c: DocCommand, dir: string): Promise<string | undefined> {
  if (c.args.some((a) => a.startsWith("/") || a.split("/").includes(".."))) {
    return "a line the test runs names a path outside its folder: write it as a placeholder";
  }
  const expected = c.exit ?? 0;
  const r = await spawn(taskArgs(c.task, c.args), dir);
  return r.code === expected ? undefined : `exited ${r.code}, not ${expected}:\n${r.said}`;
}

/** GitHub's anchor of a heading. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of splitFences(text).prose.matchAll(/^#{1,6} (.+)$/gm)) {
    const s = slug(m[1]!);
    const n = seen.get(s) ?? 0;
    out.add(n === 0 ? s : `${s}-${n}`);
    seen.set(s, n + 1);
  }
  return out;
}

/** Links of `page` that lead to no file, or to no heading of it. */
async function linkProblems(page: Page): Promise<string[]> {
  const problems: string[] = [];
  const prose = splitFences(page.text).prose.replace(/`[^`]*`/g, "");
  const dir = page.name.includes("/") ? page.name.replace(/\/[^/]*$/, "/") : "";
  for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^[a-z]+:/.test(target)) continue;
    const [file, anchor] = target.split("#") as [string, string | undefined];
    const path = file === "" ? page.name : new URL(file, `file:///${dir}`).pathname.slice(1);
    const text = await Deno.readTextFile(`${ROOT}${path}`).catch(() => undefined);
    if (text === undefined) problems.push(`${page.name}: link to ${target}: no file ${path}`);
    else if (anchor !== undefined && path.endsWith(".md") && !anchors(text).has(anchor)) {
      problems.push(`${page.name}: link to ${target}: no heading #${anchor} in ${path}`);
    }
  }
  return problems;
}

/** Every problem of `ps`: commands that do not parse or run as written, and broken links. */
async function problemsOf(ps: readonly Page[]): Promise<string[]> {
  const problems: string[] = [];
  for (const p of ps) {
    problems.push(...await linkProblems(p));
    const parsed: DocCommand[] = [];
    for (const c of commandsOf(p)) {
      const why = await parseProblem(c);
      if (why === undefined) parsed.push(c);
      else problems.push(`${c.where}: ${c.text}\n  ${why}`);
    }
    const toRun = parsed.filter(runs);
    if (toRun.length === 0) continue;
    const dir = await sandbox();
    try {
      for (const c of toRun) {
        const why = await runProblem(c, dir);
        if (why !== undefined) problems.push(`${c.where}: ${c.text}\n  ${why}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  return problems;
}

Deno.test({
  name:
    "docs: every `deno task` line parses, the cheap ones run as written, every link leads somewhere",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const problems = await problemsOf(await pages());
    assertEquals(problems, [], problems.join("\n\n"));
  },
});

Deno.test("docs: every page of docs/ shows commands the test checks, and some run", async () => {
  for (const p of (await pages()).filter((p) => /^docs\/[^/]+\.md$/.test(p.name))) {
    const fenced = commandsOf(p).filter((c) => c.fenced);
    assert(fenced.length > 0, `${p.name} has no fenced \`deno task\` line`);
  }
  const all = (await pages()).flatMap(commandsOf);
  assert(all.filter(runs).length >= 10, `only ${all.filter(runs).length} lines run`);
});

Deno.test("docs: the README opens with the two commands of a fresh machine, which CI runs", async () => {
  const readme = (await pages()).find((p) => p.name === "README.md")!;
  const first = commandsOf(readme).filter((c) => c.fenced).slice(0, 2).map((c) => c.text);
  assertEquals(first, [
    "npx -y deno@2.9.6 task run examples/pipeline.ts   # plan and train a tiny two-stage STEP model",
    "npx -y deno@2.9.6 task test                        # run the tests",
  ]);
  const ci = await Deno.readTextFile(`${ROOT}.ci/run`);
  assert(ci.includes("\nnpx -y deno@2.9.6 task test\n"), ".ci/run runs the README's test command");
});

Deno.test("docs: commands are read as the shell reads them, placeholders and synopses apart", () => {
  const page = {
    name: "p.md",
    text: [
      "Run `deno task plan CONFIG.yaml --json` or:",
      "",
      "```sh",
      "npx -y deno@2.9.6 task run examples/pipeline.ts --dry-run   # the graph",
      "printf 'hi\\n' | deno task chat runs/x/final",
      "deno task eval CHECKPOINT [--tasks a,b] [--backend wasm|cpu]",
      "                          [--json]",
      'deno task generate runs/tiny-step/final --prompt "A B" \\',
      "  --max-tokens 3",
      "deno task plan examples/configs/tiny-step.yaml --emit g.yaml   # exit 2",
      "```",
      "",
      "```yaml",
      "deno task not-a-command",
      "```",
    ].join("\n"),
  };
  const got = commandsOf(page).map((c) => ({
    task: c.task,
    args: c.args,
    fenced: c.fenced,
    placeholder: c.placeholder,
    synopsis: c.synopsis,
    piped: c.piped,
    runs: runs(c),
    exit: c.exit,
  }));
  const base = { fenced: true, placeholder: false, synopsis: false, piped: false, exit: undefined };
  assertEquals(got, [
    { ...base, task: "run", args: ["examples/pipeline.ts", "--dry-run"], runs: true },
    { ...base, task: "chat", args: ["runs/x/final"], piped: true, runs: false },
    {
      ...base,
      task: "eval",
      args: ["CHECKPOINT", "--tasks", "a,b", "--backend", "wasm", "--json"],
      placeholder: true,
      synopsis: true,
      runs: false,
    },
    {
      ...base,
      task: "generate",
      args: ["runs/tiny-step/final", "--prompt", "A B", "--max-tokens", "3"],
      runs: true,
    },
    {
      ...base,
      task: "plan",
      args: ["examples/configs/tiny-step.yaml", "--emit", "g.yaml"],
      runs: true,
      exit: 2,
    },
    {
      ...base,
      task: "plan",
      args: ["CONFIG.yaml", "--json"],
      fenced: false,
      placeholder: true,
      runs: false,
    },
  ]);
});

Deno.test({
  name: "docs: a misspelt flag, a removed task, a failing line and a dead link are each caught",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const page = (line: string): Page => ({
      name: "docs/x.md",
      text: `\`\`\`sh\n${line}\n\`\`\`\n`,
    });
    const cases: [Page, RegExp][] = [
      [page("deno task plan CONFIG.yaml --stagess 2"), /cli\/plan\.ts refuses its flags/],
      [page("deno task eval CHECKPOINT --limit"), /cli\/eval\.ts refuses its flags/],
      [page("deno task run examples/pipeline.ts --dry-run=yes"), /cli\/run\.ts refuses its flags/],
      [page("deno task bench --onyl memory"), /bench refuses its flags/],
      [page("deno task plann examples/configs/tiny-step.yaml"), /no task "plann"/],
      [page("deno task plan examples/configs/no-such.yaml"), /exited 4, not 0/],
      [page("deno task plan examples/configs/tiny-step.yaml   # exit 2"), /exited 0, not 2/],
      [{ name: "docs/x.md", text: "[a](training.md#no-such-heading)\n" }, /no heading/],
      [{ name: "docs/x.md", text: "[a](no-such-page.md)\n" }, /no file docs\/no-such-page\.md/],
    ];
    for (const [p, expected] of cases) {
      const problems = await problemsOf([p]);
      assert(
        problems.length === 1 && expected.test(problems[0]!),
        `${p.text.trim()}: ${problems.join("\n")}`,
      );
    }
  },
});
