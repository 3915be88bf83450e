import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import { BUILTIN_TASKS } from "./builtin_tasks.ts";
import { fill, taskItems, templateProblem, wikitextDetokenize } from "./task_items.ts";
import { joinLabels, parseRecords, type TaskRecord, wikitextArticles } from "./task_records.ts";
import { decodeTaskDef } from "./task_file.ts";
import type { TaskDef } from "./task_def.ts";

function records(text: string, def: TaskDef, labels?: string): TaskRecord[] {
  const r = parseRecords(text, "f", def.reader.format ?? "jsonl", def.reader.fields);
  assert(E.isRight(r), E.isLeft(r) ? r.left.message : "");
  if (labels === undefined) return r.right;
  const j = joinLabels(r.right, labels, "labels");
  assert(E.isRight(j));
  return j.right;
}

function items(def: TaskDef, recs: TaskRecord[]) {
  const r = taskItems(def, recs);
  assert(E.isRight(r), E.isLeft(r) ? r.left.message : "");
  return r.right;
}

Deno.test("PIQA: the harness's prompt, two solutions after a space, gold from the labels file", () => {
  const def = BUILTIN_TASKS.piqa!;
  const got = items(
    def,
    records('{"goal": "Open a jar", "sol1": "twist", "sol2": "kick"}\n', def, "1\n"),
  );
  assert(got.kind === "choice");
  const it = got.items[0]!;
  assertEquals(it.options, [
    { context: "Question: Open a jar\nAnswer:", continuation: " twist" },
    { context: "Question: Open a jar\nAnswer:", continuation: " kick" },
  ]);
  assertEquals(it.lengths, [5, 4]);
  assertEquals(it.gold, 1);
});

Deno.test("HellaSwag's text layout: 6 lines per item; a cut-short file names its last line", () => {
  const def = BUILTIN_TASKS.hellaswag!;
  const text = "Act: a man. he\n2\nA\nB\nC\nD\n";
  const got = items(def, records(text, def));
  assert(got.kind === "choice");
  assertEquals(got.items[0]!.options.map((o) => o.continuation), [" A", " B", " C", " D"]);
  assertEquals(got.items[0]!.gold, 2);
  const bad = parseRecords(text + "Act2: x\n3\n", "h.txt", "lines", def.reader.fields);
  assert(E.isLeft(bad) && bad.left.path === "h.txt:8", E.isLeft(bad) ? bad.left.path : "");
});

Deno.test("generic {query, choices, gold} JSONL (ARC); a gold outside the choices names the line", () => {
  const def = BUILTIN_TASKS.arc_easy!;
  const line = (g: number) =>
    JSON.stringify({ query: "Question: Why?", choices: ["a", "bb", "c"], gold: g });
  const got = items(def, records(`${line(2)}\n`, def));
  assert(got.kind === "choice" && got.items[0]!.gold === 2);
  assertEquals(got.items[0]!.options[1], {
    context: "Question: Why?\nAnswer:",
    continuation: " bb",
  });
  const bad = taskItems(def, records(`${line(0)}\n\n${line(3)}\n`, def));
  assert(
    E.isLeft(bad) && bad.left.where === "f:3" && bad.left.message.includes("gold"),
    JSON.stringify(bad),
  );
});

Deno.test("WinoGrande: the option fills the blank, the shared rest of the sentence is scored", () => {
  const def = BUILTIN_TASKS.winogrande!;
  const rec = {
    sentence: "Sam gave Pat a gift because _ was kind.",
    option1: "Sam",
    option2: "Pat",
    answer: "2",
  };
  const got = items(def, records(JSON.stringify(rec) + "\n", def));
  assert(got.kind === "choice");
  assertEquals(got.items[0]!.options, [
    { context: "Sam gave Pat a gift because Sam", continuation: " was kind." },
    { context: "Sam gave Pat a gift because Pat", continuation: " was kind." },
  ]);
  assertEquals(got.items[0]!.gold, 1);
  const noBlank = taskItems(
    def,
    records(JSON.stringify({ ...rec, sentence: "no blank" }) + "\n", def),
  );
  assert(E.isLeft(noBlank) && noBlank.left.message.includes("blank"));
});

Deno.test("LAMBADA: the last space-separated word is the target, or context/target fields", () => {
  const def = BUILTIN_TASKS.lambada!;
  const got = items(def, records(JSON.stringify({ text: "he said hello world." }) + "\n", def));
  assert(got.kind === "target");
  assertEquals(got.items[0], { where: "f:1", context: "he said hello", continuation: " world." });
  const split = decodeTaskDef(
    {
      name: "l",
      kind: "last_word",
      reader: { data: "x.jsonl" },
      context: "{context}",
      target: "{continuation}",
    },
    "l.yaml",
  );
  assert(E.isRight(split));
  const g2 = items(
    split.right,
    records(JSON.stringify({ context: "a b", continuation: "c" }) + "\n", split.right),
  );
  assert(
    g2.kind === "target" && g2.items[0]!.continuation === " c" && g2.items[0]!.context === "a b",
  );
});

Deno.test("WikiText: one document per top-level title, detokenised", () => {
  const text = " \n = A = \n \n x @-@ y , z . \n = = Sub = = \n w \n = B = \n v \n";
  const docs = wikitextArticles(text, "w.txt");
  assertEquals(docs.length, 2);
  assert(String(docs[0]!.fields.text).includes(" = = Sub = = "), "sections stay in their article");
  assertEquals(docs[1]!.where, "w.txt:7");
  assertEquals(wikitextDetokenize(" x @-@ y , z . "), " x-y, z. ");
  const def = BUILTIN_TASKS.wikitext!;
  const got = items(def, docs);
  assert(got.kind === "documents" && got.items[0]!.text.includes("x-y, z."));
});

Deno.test("malformed data and definitions name the file, line and field", () => {
  const j = parseRecords('{"a": 1}\n{"a": \n', "d.jsonl", "jsonl");
  assert(E.isLeft(j) && j.left.path === "d.jsonl:2", JSON.stringify(j));
  const arr = parseRecords('[{"a": 1}, 3]', "d.json", "json");
  assert(E.isLeft(arr) && arr.left.path === "d.json: record 1");
  const labels = joinLabels([{ fields: {}, where: "x" }], "1\n0\n", "l.lst");
  assert(E.isLeft(labels) && labels.left.message.includes("2 labels for 1 records"));
  const missing = taskItems(BUILTIN_TASKS.piqa!, [{
    fields: { goal: "g", sol1: "a" },
    where: "p.jsonl:4",
  }]);
  assert(
    E.isLeft(missing) && missing.left.where === "p.jsonl:4" &&
      missing.left.message.includes('"sol2"'),
  );
  const typo = decodeTaskDef(
    {
      name: "t",
      kind: "multiple_choice",
      reader: { data: "x" },
      prompt: "",
      choices: "{c}",
      gold: "{g}",
      promt: "",
    },
    "t.yaml",
  );
  assert(
    E.isLeft(typo) && typo.left.where === "t.yaml" &&
      typo.left.message.includes('unknown field "promt"'),
  );
  const kind = decodeTaskDef({ name: "t", kind: "essay" }, "t.yaml");
  assert(E.isLeft(kind) && kind.left.where === "t.yaml: kind");
});

Deno.test("WinoGrande: two blanks, or none or nothing after it, name the record and the field", () => {
  const def = BUILTIN_TASKS.winogrande!;
  const sentences: [string, string][] = [
    ["_ asked _ for help.", '"{sentence}" has 2 blanks "_"'],
    ["Carl thanked _", '"{sentence}" has nothing after the blank "_" to score'],
    ["Carl thanked _   ", "nothing after the blank"],
    ["Carl thanked Dan.", '"{sentence}" has no blank "_"'],
  ];
  for (const [sentence, why] of sentences) {
    const good = { sentence: "A met _ at noon.", option1: "B", option2: "C", answer: "1" };
    const rec = JSON.stringify({ sentence, option1: "A", option2: "B", answer: "1" });
    const r = taskItems(def, records(`${JSON.stringify(good)}\n${rec}\n`, def));

    assert(E.isLeft(r) && r.left.where === "f:2", `${sentence}: ${JSON.stringify(r)}`);
    assert(r.left.message.startsWith("sentence") && r.left.message.includes(why), r.left.message);
  }
  // Punctuation after the blank is something to score, as the harness scores it.
  const dot = JSON.stringify({
    sentence: "Carl thanked _.",
    option1: "A",
    option2: "B",
    answer: "1",
  });
  const got = items(def, records(dot, def));
  assert(got.kind === "choice" && got.items[0]!.options[0]!.continuation === " .");
});

Deno.test("templateProblem(): unclosed, stray and empty braces; doubled braces are literal", () => {
  for (const ok of ["", "plain", "Q: {query}\nA:", "{a}{b}", "{{x}} {y}", "{{{z}}}", "}}{{"]) {
    assertEquals(templateProblem(ok), undefined, ok);
  }
  const bad: [string, string][] = [
    ["{query", 'unclosed "{" at character 1'],
    ["Q: {a {b}", 'unclosed "{" at character 4'],
    ["a}", 'stray "}" at character 2'],
    ["{a}}", 'stray "}" at character 4'],
    ["x {}", 'empty hole "{}" at character 3'],
  ];
  for (const [t, why] of bad) {
    assert(templateProblem(t)?.startsWith(why), `${t}: ${templateProblem(t)}`);
  }
  const filled = fill("{{{name}}} {{name}}", { fields: { name: "v" }, where: "f:1" }, "prompt");
  assert(E.isRight(filled) && filled.right === "{v} {name}");
});

Deno.test("decodeTaskDef() refuses a template with a brace out of place, naming file and field", () => {
  const mc = {
    name: "t",
    kind: "multiple_choice",
    reader: { data: "x.jsonl" },
    prompt: "{query}",
    choices: ["{a}", "{b}"],
    gold: "{g}",
  };
  const cases: [Record<string, unknown>, string][] = [
    [{ ...mc, prompt: "{query" }, "t.yaml: prompt"],
    [{ ...mc, choices: ["{a}", "b}"] }, "t.yaml: choices[1]"],
    [{ ...mc, choices: "{choices" }, "t.yaml: choices"],
    [{ ...mc, gold: "{g" }, "t.yaml: gold"],
    [{ ...BUILTIN_TASKS.winogrande!, options: ["{option1", "{option2}"] }, "t.yaml: options[0]"],
    [{ ...BUILTIN_TASKS.winogrande!, sentence: "{sentence" }, "t.yaml: sentence"],
    [{ ...BUILTIN_TASKS.winogrande!, blank: "" }, "t.yaml: blank"],
    [{ ...BUILTIN_TASKS.lambada!, text: "{text" }, "t.yaml: text"],
    [
      { name: "l", kind: "last_word", reader: { data: "x" }, context: "{c}", target: "}" },
      "t.yaml: target",
    ],
    [{ name: "p", kind: "perplexity", reader: { data: "x" }, text: "{" }, "t.yaml: text"],
  ];
  for (const [def, where] of cases) {
    const r = decodeTaskDef(def, "t.yaml");
    assert(E.isLeft(r) && r.left.where === where, `${where}: ${JSON.stringify(r)}`);
  }
  for (const [name, def] of Object.entries(BUILTIN_TASKS)) {
    assert(E.isRight(decodeTaskDef(def, name)), `built-in ${name} passes the checks it imposes`);
  }
});
