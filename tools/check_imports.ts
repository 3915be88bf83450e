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
 * 5. Inside a folder, its sub-folders and its own files (`.`) form one order
 *    the same way ({@link SUB_ORDER}); a folder with sub-folders must have one.
 *    A cycle between them is named as such, since no order can fix it.
 * 6. A file whose name starts with `_` is private to its folder: only files
 *    beside it import it (a folder re-exports it through a module of its own).
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
  ["effects", "serve"],
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
  "serve",
];

/**
 * Per folder with sub-folders, their tiers bottom first; `.` stands for the folder's own files.
 * In `kernels/`: OpenBLAS; the ops with the fused-kernel contracts they dispatch to; the two
 * registries implementing those contracts; the model, training step and backend selection.
 */
export const SUB_ORDER: Readonly<Record<string, readonly (readonly string[])[]>> = {
  kernels: [["blas"], ["ops"], ["fused", "webgpu"], ["."]],
};

/** What {@link checkImports} enforces; the project's are {@link RULES}, tests pass small ones. */
export interface ImportRules {
  readonly order: readonly (readonly string[])[];
  readonly tensorFree: readonly string[];
  readonly subOrder: Readonly<Record<string, readonly (readonly string[])[]>>;
}

/** The project's rules. */
export const RULES: ImportRules = { order: ORDER, tensorFree: TENSOR_FREE, subOrder: SUB_ORDER };

const IMPORT =
  /(?:import|export)\s[^"']*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** The `.ts` files under `root`, as paths relative to it. */
async function* tsFiles(root: string, dir = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir === "" ? root : `${root}/${dir}`)) {
    const path = dir === "" ? e.name : `${dir}/${e.name}`;
    if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") {
      yield* tsFiles(root, path);
    } else if (e.isFile && e.name.endsWith(".ts")) yield path;
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

/** The sub-folder of its folder a file lies in; `.` for the folder's own files. */
export function subFolderOf(file: string): string {
  const parts = file.split("/");
  return parts.length > 2 ? parts[1]! : ".";
}

function dirOf(file: string): string {
  return file.slice(0, Math.max(0, file.lastIndexOf("/")));
}

function baseName(file: string): string {
  return file.slice(file.lastIndexOf("/") + 1);
}

/** Whether a file is test code. */
export function isTest(file: string): boolean {
  const name = baseName(file);
  return file.startsWith("tests/") || name.endsWith("_test.ts") || name === "_test_util.ts";
}

function tierIn(order: readonly (readonly string[])[], name: string): number | undefined {
  const t = order.findIndex((tier) => tier.includes(name));
  return t < 0 ? undefined : t;
}

function isModEntry(target: string): boolean {
  const parts = target.split("/");
  return parts[parts.length - 1] === "mod.ts" && parts.length <= 3;
}

/** The problems of an import between two parts of one folder (rule 5). */
function subFolderProblems(
  file: string,
  spec: string,
  target: string,
  rules: ImportRules,
): string[] {
  const [from, to] = [subFolderOf(file), subFolderOf(target)];
  if (from === to) return [];
  const folder = folderOf(file);
  const order = rules.subOrder[folder];
  const name = (part: string): string =>
    partOf(part === "." ? `${folder}/x` : `${folder}/${part}/x`);
  if (order === undefined) {
    return [`${file}: imports ${spec} ("${folder}" has sub-folders but no SUB_ORDER)`];
  }
  const [a, b] = [tierIn(order, from), tierIn(order, to)];
  if (a === undefined) return [`${file}: "${name(from)}" has no place in SUB_ORDER`];
  if (b === undefined) {
    return [`${file}: imports ${spec} ("${name(to)}" has no place in SUB_ORDER)`];
  }
  return b >= a ? [`${file}: imports ${spec} ("${name(to)}" is not below "${name(from)}")`] : [];
}

/** The problems of one import of `file`, resolved to `target` (a local path) or a package. */
function importProblems(
  file: string,
  spec: string,
  target: string | undefined,
  rules: ImportRules,
): string[] {
  const from = folderOf(file);
  const test = isTest(file);
  const problems: string[] = [];
  if (target === undefined) {
    if (!test && rules.tensorFree.includes(from) && spec.includes("@tensorflow/")) {
      problems.push(`${file}: imports ${spec} (TensorFlow.js in a tensor-free folder)`);
    }
    return problems;
  }
  const to = folderOf(target);
  if (to === "bench" && from !== "bench") {
    problems.push(`${file}: imports ${spec} (nothing imports bench/)`);
  }
  if (test) return problems;
  if (baseName(target).startsWith("_") && dirOf(target) !== dirOf(file)) {
    problems.push(`${file}: imports ${spec} (a "_" file is private to ${dirOf(target) || "."}/)`);
  }
  if (to === from) return [...problems, ...subFolderProblems(file, spec, target, rules)];
  const [a, b] = [tierIn(rules.order, from), tierIn(rules.order, to)];
  if (a === undefined) problems.push(`${file}: folder "${from}" has no place in ORDER`);
  else if (b === undefined) {
    problems.push(`${file}: imports ${spec} ("${to}" has no place in ORDER)`);
  } else if (b >= a) {
    problems.push(`${file}: imports ${spec} ("${to}" is not below "${from}" in the order)`);
  }
  if (to !== "mod.ts" && !isModEntry(target)) {
    problems.push(`${file}: imports ${spec} (import ${to}/ through its mod.ts)`);
  }
  if (rules.tensorFree.includes(from) && to === "kernels") {
    problems.push(`${file}: imports ${spec} (tensor code in a tensor-free folder)`);
  }
  return problems;
}

/** Returns the violations found under `root` (empty when clean); paths are relative to it. */
export async function checkImports(root = ".", rules: ImportRules = RULES): Promise<string[]> {
  const graph = new Map<string, string[]>();
  const parts = new Map<string, Set<string>>();
  const problems: string[] = [];
  // Sorted, so that a cycle is always named from the same file.
  for (const file of (await Array.fromAsync(tsFiles(root))).sort()) {
    // Doc comments hold example imports; only real import statements count.
    const text = (await Deno.readTextFile(`${root}/${file}`)).replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/^\s*\/\/.*$/gm, "");
    const local: string[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? "";
      const target = spec.startsWith(".") ? resolve(file, spec) : undefined;
      if (target !== undefined) {
        local.push(target);
        const [a, b] = [partOf(file), partOf(target)];
        if (!isTest(file) && folderOf(file) === folderOf(target) && a !== b) {
          parts.set(a, (parts.get(a) ?? new Set()).add(b));
        }
      }
      problems.push(...importProblems(file, spec, target, rules));
    }
    graph.set(file, local);
  }
  problems.push(...cycles(graph));
  const partGraph = new Map([...parts].map(([p, to]) => [p, [...to]]));
  problems.push(...cycles(partGraph).map((c) => `sub-folder ${c}`));
  return problems;
}

/** A file's part of its folder, as a name: `kernels/ops/` or `kernels/` for its own files. */
function partOf(file: string): string {
  const sub = subFolderOf(file);
  return sub === "." ? `${folderOf(file)}/` : `${folderOf(file)}/${sub}/`;
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
export function orderText(rules: ImportRules = RULES): string {
  const lines = rules.order.map((tier, i) =>
    `  ${String(i + 1).padStart(2)}  ${
      tier.map((f) =>
        `${f === "mod.ts" ? f : `${f}/`}${rules.tensorFree.includes(f) ? " [no tensors]" : ""}`
      )
        .join(" · ")
    }`
  ).reverse();
  const inside = Object.entries(rules.subOrder).map(([folder, order]) =>
    `  inside ${folder}/: ${
      order.map((tier) => tier.map((p) => p === "." ? `${folder}/*.ts` : `${p}/`).join(" · "))
        .join(" < ")
    }`
  );
  return [
    "Folder order (each imports only the tiers below it, through their mod.ts):",
    ...lines,
    "Sub-folder order (bottom first; a file named _*.ts is imported only beside it):",
    ...inside,
    "  test code (*_test.ts, _test_util.ts, tests/) may import any folder but bench/",
  ].join("\n");
}

if (import.meta.main) {
  console.log(orderText());
  const problems = await checkImports();
  for (const p of problems) console.error(p);
  if (problems.length > 0) Deno.exit(1);
  console.log(
    "imports: every arrow points down the order, through mod.ts; no cycles; _ files stay private",
  );
}
