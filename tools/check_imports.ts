/**
 * `deno task imports`: the import rules of ARCHITECTURE.md, checked file by
 * file and printed.
 *
 * 1. Folders form one order; each imports only folders below it (same-tier
 *    folders do not import each other).
 * 2. From outside a folder, code imports its `mod.ts` (or a sub-folder's
 *    `mod.ts`), never an inner file.
 * 3. Tensor-free folders never load TensorFlow.js or `kernels/`.
 * 4. No cycles between files.
 *
 * Test code (`*_test.ts`, `_test_util.ts`, `tests/`) sits above everything:
 * it may import any file of any folder, except `bench/`.
 *
 * @module
 */

/** Tiers, bottom first: a folder may import folders of lower tiers only. */
export const ORDER: readonly (readonly string[])[] = [
  ["base"],
  ["store", "solvers", "charts"],
  ["data"],
  ["checkpoint", "evals"],
  ["pipeline"],
  ["report", "kernels"],
  ["effects"],
  ["cli", "mod.ts"],
  ["examples"],
  ["bench", "tools"],
];

/** Folders that never touch tensors (they may do I/O). */
export const TENSOR_FREE: readonly string[] = [
  "base",
  "store",
  "solvers",
  "charts",
  "data",
  "checkpoint",
  "evals",
  "pipeline",
  "report",
];

const IMPORT =
  /(?:import|export)\s[^"']*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = dir === "." ? e.name : `${dir}/${e.name}`;
    if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") yield* tsFiles(path);
    else if (e.isFile && e.name.endsWith(".ts")) yield path;
  }
}

function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const seg of spec.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== ".") parts.push(seg);
  }
  return parts.join("/");
}

/** The folder a file belongs to (`mod.ts` for the root module). */
export function folderOf(file: string): string {
  const i = file.indexOf("/");
  return i < 0 ? file : file.slice(0, i);
}

/** Whether a file is test code. */
export function isTest(file: string): boolean {
  const name = file.slice(file.lastIndexOf("/") + 1);
  return file.startsWith("tests/") || name.endsWith("_test.ts") || name === "_test_util.ts";
}

function tierOf(folder: string): number | undefined {
  const t = ORDER.findIndex((tier) => tier.includes(folder));
  return t < 0 ? undefined : t;
}

function isModEntry(target: string): boolean {
  const parts = target.split("/");
  return parts[parts.length - 1] === "mod.ts" && parts.length <= 3;
}

/** The problems of one import of `file`, resolved to `target` (a local path) or a package. */
function importProblems(file: string, spec: string, target: string | undefined): string[] {
  const from = folderOf(file);
  const test = isTest(file);
  const problems: string[] = [];
  if (target === undefined) {
    if (!test && TENSOR_FREE.includes(from) && spec.includes("@tensorflow/")) {
      problems.push(`${file}: imports ${spec} (TensorFlow.js in a tensor-free folder)`);
    }
    return problems;
  }
  const to = folderOf(target);
  if (to === from) return problems;
  if (to === "bench" && from !== "bench") {
    problems.push(`${file}: imports ${spec} (nothing imports bench/)`);
  }
  if (test) return problems;
  const [a, b] = [tierOf(from), tierOf(to)];
  if (a === undefined) problems.push(`${file}: folder "${from}" has no place in ORDER`);
  else if (b === undefined) {
    problems.push(`${file}: imports ${spec} ("${to}" has no place in ORDER)`);
  } else if (b >= a) {
    problems.push(`${file}: imports ${spec} ("${to}" is not below "${from}" in the order)`);
  }
  if (to !== "mod.ts" && !isModEntry(target)) {
    problems.push(`${file}: imports ${spec} (import ${to}/ through its mod.ts)`);
  }
  if (!test && TENSOR_FREE.includes(from) && to === "kernels") {
    problems.push(`${file}: imports ${spec} (tensor code in a tensor-free folder)`);
  }
  return problems;
}

/** Returns the violations found under `root` (empty when clean). */
export async function checkImports(root = "."): Promise<string[]> {
  const graph = new Map<string, string[]>();
  const problems: string[] = [];
  for await (const file of tsFiles(root)) {
    // Doc comments hold example imports; only real import statements count.
    const text = (await Deno.readTextFile(file)).replace(/\/\*[\s\S]*?\*\//g, "").replace(
      /^\s*\/\/.*$/gm,
      "",
    );
    const local: string[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? "";
      const target = spec.startsWith(".") ? resolve(file, spec) : undefined;
      if (target !== undefined) local.push(target);
      problems.push(...importProblems(file, spec, target));
    }
    graph.set(file, local);
  }
  problems.push(...cycles(graph));
  return problems;
}

function cycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const found: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "visiting") {
      found.push(`import cycle: ${[...path.slice(path.indexOf(f)), f].join(" → ")}`);
      return;
    }
    state.set(f, "visiting");
    for (const g of graph.get(f) ?? []) visit(g, [...path, f]);
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f, []);
  return found;
}

/** The enforced order as text, top tier first. */
export function orderText(): string {
  const lines = ORDER.map((tier, i) =>
    `  ${String(i + 1).padStart(2)}  ${
      tier.map((f) =>
        `${f === "mod.ts" ? f : `${f}/`}${TENSOR_FREE.includes(f) ? " [no tensors]" : ""}`
      )
        .join(" · ")
    }`
  ).reverse();
  return [
    "Folder order (each imports only the tiers below it, through their mod.ts):",
    ...lines,
    "  test code (*_test.ts, _test_util.ts, tests/) may import any folder but bench/",
  ].join("\n");
}

if (import.meta.main) {
  console.log(orderText());
  const problems = await checkImports();
  for (const p of problems) console.error(p);
  if (problems.length > 0) Deno.exit(1);
  console.log("imports: every arrow points down the order, through mod.ts; no cycles");
}
