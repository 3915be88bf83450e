import { assertEquals } from "../tests/assert.ts";
import { checkImports, type ImportRules } from "./check_imports.ts";

/** Two folders, `low` below `high`; inside `high`, sub-folder `sub` below `high`'s own files. */
const RULES: ImportRules = {
  order: [["low"], ["high"]],
  tensorFree: ["low"],
  subOrder: { high: [["sub"], ["."]] },
};

/** The problems of a tree of files written to a temporary folder (removed after). */
async function problemsOf(
  files: Readonly<Record<string, string>>,
  rules = RULES,
): Promise<string[]> {
  const root = await Deno.makeTempDir({ prefix: "check_imports_" });
  try {
    for (const [path, text] of Object.entries(files)) {
      const dir = path.slice(0, path.lastIndexOf("/"));
      if (dir !== "") await Deno.mkdir(`${root}/${dir}`, { recursive: true });
      await Deno.writeTextFile(`${root}/${path}`, text);
    }
    return (await checkImports(root, rules)).sort();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** A tree every rule accepts; each test below breaks it in one place. */
const CLEAN: Readonly<Record<string, string>> = {
  "low/mod.ts": `export { a } from "./_a.ts";`,
  "low/_a.ts": `export const a = 1;`,
  "high/mod.ts": `export { b } from "./b.ts";`,
  "high/b.ts": `import { a } from "../low/mod.ts";\nimport { c } from "./sub/c.ts";\n` +
    `export const b = a + c;`,
  "high/sub/c.ts": `import { d } from "./_d.ts";\nexport const c = d;`,
  "high/sub/_d.ts": `export const d = 2;`,
};

Deno.test("checkImports() finds nothing in a tree that keeps every rule", async () => {
  assertEquals(await problemsOf(CLEAN), []);
});

Deno.test("checkImports() refuses an arrow up the folder order and past a mod.ts", async () => {
  assertEquals(
    await problemsOf({
      ...CLEAN,
      "low/_a.ts": `import { b } from "../high/b.ts";\nexport const a = b;`,
    }),
    [
      "import cycle: high/b.ts → low/mod.ts → low/_a.ts → high/b.ts",
      "low/_a.ts: imports ../high/b.ts (import high/ through its mod.ts)",
      'low/_a.ts: imports ../high/b.ts ("high" is not below "low" in the order)',
    ].sort(),
  );
});

Deno.test("checkImports() refuses an arrow up the sub-folder order and names the cycle", async () => {
  const problems = await problemsOf({
    ...CLEAN,
    "high/sub/c.ts": `import { d } from "./_d.ts";\nimport { e } from "../e.ts";\n` +
      `export const c = d + e;`,
    "high/e.ts": `import { d } from "./sub/c.ts";\nexport const e = 3;`,
  });
  assertEquals(
    problems,
    [
      'high/sub/c.ts: imports ../e.ts ("high/" is not below "high/sub/")',
      "import cycle: high/sub/c.ts → high/e.ts → high/sub/c.ts",
      "sub-folder import cycle: high/ → high/sub/ → high/",
    ].sort(),
  );
});

Deno.test("checkImports() keeps a _ file private to its folder, except from test code", async () => {
  assertEquals(
    await problemsOf({
      ...CLEAN,
      "high/b.ts": `import { a } from "../low/mod.ts";\nimport { d } from "./sub/_d.ts";\n` +
        `export const b = a + d;`,
      "high/b_test.ts": `import { d } from "./sub/_d.ts";\nimport { a } from "../low/_a.ts";\n` +
        `console.log(a + d);`,
    }),
    ['high/b.ts: imports ./sub/_d.ts (a "_" file is private to high/sub/)'],
  );
});

Deno.test("checkImports() asks a folder with sub-folders for their order", async () => {
  const rules = { ...RULES, subOrder: {} };
  assertEquals(await problemsOf(CLEAN, rules), [
    'high/b.ts: imports ./sub/c.ts ("high" has sub-folders but no SUB_ORDER)',
  ]);
  assertEquals(await problemsOf(CLEAN, { ...RULES, subOrder: { high: [["."]] } }), [
    'high/b.ts: imports ./sub/c.ts ("high/sub/" has no place in SUB_ORDER)',
  ]);
});

Deno.test("checkImports() ignores imports written in comments and keeps tensor-free folders so", async () => {
  assertEquals(
    await problemsOf({
      ...CLEAN,
      "low/_a.ts": `/** \`import { b } from "../high/b.ts";\` */\n// import "../high/b.ts";\n` +
        `export const a = 1;`,
    }),
    [],
  );
  assertEquals(
    await problemsOf({
      ...CLEAN,
      "low/_a.ts": `import * as tf from "@tensorflow/tfjs-core";\nexport const a = tf;`,
    }),
    ["low/_a.ts: imports @tensorflow/tfjs-core (TensorFlow.js in a tensor-free folder)"],
  );
});

Deno.test("checkImports() finds nothing in this project", async () => {
  assertEquals(await checkImports(), []);
});
