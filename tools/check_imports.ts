/**
 * `deno task imports`: the import-direction rule (STYLE b3, c7). Pure folders
 * never import tensors: nothing under solvers/, pipeline/, charts/, data/,
 * store/ or checkpoint/ may import kernels/ or TensorFlow.js; and local imports
 * have no cycles.
 *
 * @module
 */

const PURE = ["solvers/", "pipeline/", "charts/", "data/", "store/", "checkpoint/"];
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
      const pure = PURE.some((p) => file.startsWith(p)) && !file.endsWith("_test.ts");
      if (spec.startsWith(".")) {
        const target = resolve(file, spec);
        local.push(target);
        if (pure && target.startsWith("kernels/")) {
          problems.push(`${file}: imports ${spec} (tensor code)`);
        }
      } else if (pure && spec.includes("@tensorflow/")) {
        problems.push(`${file}: imports ${spec} (tfjs outside kernels/)`);
      }
    }
    graph.set(file, local);
  }
  const state = new Map<string, "visiting" | "done">();
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "visiting") {
      problems.push(`import cycle: ${[...path.slice(path.indexOf(f)), f].join(" → ")}`);
      return;
    }
    state.set(f, "visiting");
    for (const g of graph.get(f) ?? []) visit(g, [...path, f]);
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f, []);
  return problems;
}

if (import.meta.main) {
  const problems = await checkImports();
  for (const p of problems) console.error(p);
  if (problems.length > 0) Deno.exit(1);
  console.log("imports: pure folders are tensor-free and there are no cycles");
}
