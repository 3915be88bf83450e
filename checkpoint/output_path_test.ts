/**
 * The output rule on real folders: generated input/output pairs (the same path, a parent, a
 * child, a sibling, through a symbolic or hard link, spelled with `.`, `..`, doubled and
 * trailing slashes, relative or absolute) are refused exactly when the write would replace,
 * clear or change an input; a refusal leaves every byte in place, and an accepted write, carried
 * out, leaves every input's bytes unchanged.
 */
import fc from "fast-check";
import * as E from "fp-ts/lib/Either.js";
import { relative } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { lockDir, writeDirAtomic, writeFileAtomic } from "../store/mod.ts";
import {
  canonicalPath,
  checkOutput,
  inputConflict,
  type InputPath,
  type IntoMode,
  type OutputPath,
} from "./output_path.ts";

/** The fixture's links: name → what it points at (relative to the root). */
const SYMLINKS: Readonly<Record<string, string>> = {
  "lnk-in": "in",
  "lnk-sub": "in/sub",
  "lnk-f": "f.bin",
};
/** A second name of `f.bin`. */
const HARD = "hard-f";

const FILES: Readonly<Record<string, string>> = {
  "in/a.bin": "alpha",
  "in/sub/b.bin": "beta",
  "f.bin": "file input",
  "sib/x.bin": "sibling",
};

/** A fresh root: `in/` (a.bin, sub/b.bin), `f.bin`, `sib/x.bin`, the links to them. */
async function fixture(): Promise<string> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "output-path-" }));
  await Deno.mkdir(`${root}/in/sub`, { recursive: true });
  await Deno.mkdir(`${root}/sib`);
  for (const [name, text] of Object.entries(FILES)) {
    await Deno.writeTextFile(`${root}/${name}`, text);
  }
  for (const [name, target] of Object.entries(SYMLINKS)) {
    await Deno.symlink(`${root}/${target}`, `${root}/${name}`);
  }
  await Deno.link(`${root}/f.bin`, `${root}/${HARD}`);
  return root;
}

/** Every entry under `path` (links not followed): its kind and bytes or target. */
async function snapshot(
  path: string,
  into = new Map<string, string>(),
): Promise<Map<string, string>> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    into.set(path, "absent");
    return into;
  }
  if (info.isSymlink) into.set(path, `link ${await Deno.readLink(path)}`);
  else if (info.isFile) into.set(path, `file ${await Deno.readTextFile(path)}`);
  else {
    into.set(path, "dir");
    for await (const e of Deno.readDir(path)) await snapshot(`${path}/${e.name}`, into);
  }
  return into;
}

/**
 * Where a spelling (names under the root) lands, resolved the way the OS does, by hand: `.`
 * and empty names skipped, `..` one up, a link replaced by its target; the hard link is f.bin.
 */
function landing(names: readonly string[]): string {
  let at: string[] = [];
  for (const n of names) {
    if (n === "" || n === ".") continue;
    if (n === "..") at.pop();
    else {
      at.push(n);
      const target = SYMLINKS[at.join("/")];
      if (target !== undefined) at = target.split("/");
    }
  }
  const joined = at.join("/");
  return joined === HARD ? "f.bin" : joined;
}

function under(child: string, parent: string): boolean {
  return parent === "" ? child !== "" : child.startsWith(`${parent}/`);
}

/** The kinds of output, the folder ones with their modes and the names they write. */
type Kind =
  | { readonly kind: "file" }
  | { readonly kind: "folder"; readonly replace: boolean }
  | { readonly kind: "into"; readonly mode: IntoMode; readonly names: readonly string[] };

/** Whether writing at `out` destroys `input` (both landings): the model the rule must match. */
function destroys(kind: Kind, out: string, input: string): boolean {
  if (out === input || under(out, input)) return true;
  if (!under(input, out)) return false;
  if (kind.kind !== "into" || kind.mode === "replace") return true;
  const held = (out === "" ? input : input.slice(out.length + 1)).split("/")[0]!;
  return kind.names.includes(held);
}

const TARGETS = [
  ".",
  "in",
  "in/a.bin",
  "in/sub",
  "in/sub/b.bin",
  "in/new",
  "in/sub/new",
  "f.bin",
  "sib",
  "sib/x.bin",
  "sib/new",
  "new",
  "new/deeper",
  "lnk-in",
  "lnk-in/a.bin",
  "lnk-in/new",
  "lnk-sub/..",
  "lnk-sub/../a.bin",
  "lnk-f",
  HARD,
];
const INPUTS = ["in", "in/a.bin", "in/sub", "f.bin", "lnk-in", "lnk-f", HARD, "lnk-sub/../a.bin"];

/** One rewrite of a spelling that keeps (or, for a link, follows) where it points. */
const respell: fc.Arbitrary<(names: string[]) => string[]> = fc.oneof(
  fc.nat().map((k) => (ns: string[]) => ns.toSpliced(k % (ns.length + 1), 0, ".")),
  fc.nat().map((k) => (ns: string[]) => ns.toSpliced(k % (ns.length + 1), 0, "zz", "..")),
  fc.nat().map((k) => (ns: string[]) => ns.toSpliced(k % (ns.length + 1), 0, "sib", "..")),
  fc.nat().map((k) => (ns: string[]) => ns.toSpliced(1 + (k % (ns.length + 1)), 0, "")),
  fc.constant((ns: string[]) => [...ns, ""]),
  fc.constant((ns: string[]) => ["lnk-sub", "..", "..", ...ns]),
);

interface Spelled {
  readonly names: readonly string[];
  readonly relative: boolean;
}

const spelled = (targets: readonly string[]): fc.Arbitrary<Spelled> =>
  fc.record({
    target: fc.constantFrom(...targets),
    rewrites: fc.array(respell, { maxLength: 3 }),
    relative: fc.boolean(),
  }).map(({ target, rewrites, relative }) => ({
    names: rewrites.reduce((ns, f) => f(ns), target.split("/")),
    relative,
  }));

/** The path a spelling gives on the command line: absolute, or relative to the working folder. */
function render(root: string, s: Spelled): string {
  const base = s.relative ? relative(Deno.cwd(), root) || "." : root;
  return `${base}/${s.names.join("/")}`;
}

const kindArb: fc.Arbitrary<Kind> = fc.oneof(
  fc.constant({ kind: "file" } as const),
  fc.boolean().map((replace) => ({ kind: "folder", replace }) as const),
  fc.record({
    kind: fc.constant("into" as const),
    mode: fc.constantFrom<IntoMode>("fresh", "resume", "replace"),
    names: fc.subarray(["a.bin", "sub", "x.bin", "final"]),
  }),
);

const caseArb = fc.record({
  kind: kindArb,
  out: spelled(TARGETS),
  inputs: fc.array(spelled(INPUTS), { minLength: 1, maxLength: 3 }),
});

type Case = typeof caseArb extends fc.Arbitrary<infer C> ? C : never;

function outputOf(root: string, c: Case): OutputPath {
  const path = render(root, c.out);
  const k = c.kind;
  return k.kind === "file"
    ? { kind: "file", flag: "--out", path }
    : k.kind === "folder"
    ? { kind: "folder", flag: "--out", path, replace: k.replace }
    : { kind: "into", flag: "--out", path, what: "run", names: k.names, mode: k.mode };
}

function inputsOf(root: string, c: Case): InputPath[] {
  return c.inputs.map((s, i) => ({ what: `input ${i}`, path: render(root, s) }));
}

function destructive(c: Case): boolean {
  const out = landing(c.out.names);
  return c.inputs.some((s) => destroys(c.kind, out, landing(s.names)));
}

Deno.test("canonicalPath follows links on the existing part and applies `..` after them", async () => {
  const root = await fixture();
  try {
    for (const target of TARGETS) {
      // A hard link keeps its own name: the rule compares the file's identity, not its path.
      const lands = target === HARD ? HARD : landing(target.split("/"));
      assertEquals(
        await canonicalPath(`${root}/${target}`),
        lands === "" ? root : `${root}/${lands}`,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("inputConflict refuses exactly the pairs whose write replaces, clears or changes an input", async () => {
  const root = await fixture();
  try {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const refused = await inputConflict(outputOf(root, c), inputsOf(root, c));
        assertEquals(refused !== undefined, destructive(c), JSON.stringify(c));
        if (refused !== undefined) assertStringIncludes(refused.message, "input ");
      }),
      { numRuns: 400 },
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** What a command accepted by the rule then does where the rule says (an OS refusal is fine). */
async function write(out: OutputPath, at: string): Promise<void> {
  await writeUnchecked({ ...out, path: at }).catch(() => {});
}

async function writeUnchecked(out: OutputPath): Promise<void> {
  if (out.kind === "file") await writeFileAtomic(out.path, "written")();
  else if (out.kind === "folder") {
    await writeDirAtomic(out.path, (tmp) => writeFileAtomic(`${tmp}/w.bin`, "written"))();
  } else {
    await Deno.mkdir(out.path, { recursive: true });
    for (const name of out.names) {
      await Deno.remove(`${out.path}/${name}`, { recursive: true }).catch(() => {});
      await writeFileAtomic(`${out.path}/${name}`, "written")();
    }
  }
}

Deno.test({
  name: "checkOutput: a refusal changes nothing; an accepted write leaves every input's bytes",
  fn: async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const root = await fixture();
        try {
          const out = outputOf(root, c);
          const before = await snapshot(root);
          const checked = await checkOutput(out, inputsOf(root, c));
          if (destructive(c)) {
            assert(E.isLeft(checked) && checked.left._tag === "ConfigInvalid", JSON.stringify(c));
          }
          if (E.isLeft(checked)) {
            assertEquals([...await snapshot(root)], [...before], JSON.stringify(c));
            return;
          }
          const inputs = c.inputs.map((s) => `${root}/${landing(s.names)}`);
          const kept = await Promise.all(inputs.map((p) => snapshot(p)));
          await write(out, checked.right);
          for (const [i, p] of inputs.entries()) {
            assertEquals([...await snapshot(p)], [...kept[i]!], `${JSON.stringify(c)}: ${p}`);
          }
        } finally {
          await Deno.remove(root, { recursive: true });
        }
      }),
      { numRuns: 150 },
    );
  },
});

Deno.test("checkOutput: a checkpoint given as its model file stands for its folder", async () => {
  const root = await fixture();
  try {
    const ck: InputPath = { what: "the checkpoint", path: `${root}/in/a.bin`, checkpoint: true };
    const beside = await checkOutput({ kind: "file", path: `${root}/in/eval.json` }, [ck]);
    assert(E.isLeft(beside) && beside.left._tag === "ConfigInvalid");
    assertStringIncludes(beside.left.message, `is inside the checkpoint "${root}/in/a.bin"`);
    const plain = await checkOutput({ kind: "file", path: `${root}/in/eval.json` }, [
      { ...ck, checkpoint: false },
    ]);
    assert(E.isRight(plain));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("checkOutput: unwritable places are IoFailed naming the output, and leave nothing", async () => {
  const root = await fixture();
  try {
    const before = await snapshot(root);
    const cases: [OutputPath, string][] = [
      [{ kind: "file", flag: "--out", path: `${root}/missing/r.json` }, "does not exist"],
      [{ kind: "file", flag: "--out", path: `${root}/f.bin/r.json` }, "is not a folder"],
      [{ kind: "file", flag: "--out", path: `${root}/sib` }, "is a folder"],
      [{ kind: "folder", path: `${root}/f.bin/out`, replace: false }, "is not a folder"],
      [{ kind: "folder", path: `${root}/f.bin`, replace: true }, "is a file"],
      [
        { kind: "into", path: `${root}/f.bin`, what: "run", names: [], mode: "fresh" },
        "is a file",
      ],
    ];
    for (const [out, why] of cases) {
      const r = await checkOutput(out, []);
      assert(E.isLeft(r) && r.left._tag === "IoFailed", `${out.path}: ${JSON.stringify(r)}`);
      assertEquals(r.left.path, out.path);
      assertStringIncludes(r.left.message, why);
    }
    // A file output whose command makes its folders: the nearest existing folder must take files.
    const deep = await checkOutput(
      { kind: "file", path: `${root}/new/deeper/r.json`, makeParent: true },
      [],
    );
    assert(E.isRight(deep));
    assertEquals([...await snapshot(root)], [...before]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("checkOutput: used folders need --force; a folder a live process holds never", async () => {
  const root = await fixture();
  try {
    const keep: OutputPath = { kind: "folder", path: `${root}/sib`, replace: false };
    const force: OutputPath = { ...keep, replace: true };
    const used = await checkOutput(keep, []);
    assert(E.isLeft(used) && used.left._tag === "ConfigInvalid");
    assertStringIncludes(used.left.message, "pass --force");
    assert(E.isRight(await checkOutput(force, [])));
    const into = (mode: IntoMode): OutputPath => ({
      kind: "into",
      flag: "--out",
      path: `${root}/sib`,
      what: "run",
      names: ["final"],
      mode,
    });
    const foreign = await checkOutput(into("fresh"), []);
    assert(E.isLeft(foreign) && foreign.left._tag === "ConfigInvalid");
    assertStringIncludes(foreign.left.message, "holds x.bin, which no run wrote");
    assert(E.isRight(await checkOutput(into("replace"), [])));
    assert(E.isRight(await checkOutput(into("resume"), [])));
    const held = await lockDir(`${root}/sib`, "run");
    assert(E.isRight(held));
    try {
      const live = await checkOutput(force, []);
      assert(E.isLeft(live) && live.left._tag === "IoFailed");
      assertStringIncludes(live.left.message, `pid ${Deno.pid}`);
    } finally {
      held.right.release();
    }
    assert(E.isRight(await checkOutput(force, [])));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
