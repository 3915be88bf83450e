import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { modelAnswer, modelAnswersJsonl, parseModelAnswers, parseQuestions } from "./mt_bench.ts";

const QUESTIONS = [
  '{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]}',
  "",
  '{"question_id": 101, "category": "reasoning", "turns": ["Why?", "How?"], "reference": ["x"]}',
].join("\n");

function left<A>(r: E.Either<{ message: string; path: string }, A>): string {
  assert(E.isLeft(r), "expected an error");
  return `${r.left.path}: ${r.left.message}`;
}

Deno.test("parseQuestions() reads FastChat's question records in order, blank lines skipped", () => {
  const q = parseQuestions(QUESTIONS, "q.jsonl");
  assert(E.isRight(q));
  assertEquals(q.right, [
    { question_id: 81, category: "writing", turns: ["Write a poem.", "Shorter."] },
    { question_id: 101, category: "reasoning", turns: ["Why?", "How?"], reference: ["x"] },
  ]);
});

Deno.test("parseQuestions() names the file and line of bad JSON and missing fields, and no questions", () => {
  const bad = '{"question_id": 1, "category": "a", "turns": ["x"]}\n{not json';
  const e1 = left(parseQuestions(bad, "q.jsonl"));
  assertStringIncludes(e1, "q.jsonl: line 2: not valid JSON");
  const e2 = left(parseQuestions('{"question_id": 1, "turns": ["x"]}', "q.jsonl"));
  assertStringIncludes(e2, "line 1: category");
  const e3 = left(parseQuestions('{"question_id": 1, "category": "a", "turns": "x"}', "q.jsonl"));
  assertStringIncludes(e3, "line 1: turns");
  const e4 = left(parseQuestions('{"question_id": 1, "category": "a", "turns": []}', "q.jsonl"));
  assertStringIncludes(e4, "at least one turn");
  for (const empty of ["", "\n \r\n\n"]) {
    assertEquals(
      left(parseQuestions(empty, "q.jsonl")),
      "q.jsonl: holds no questions (no non-blank line)",
    );
  }
  const twice = '{"question_id": 7, "category": "a", "turns": ["x"]}\n'.repeat(2);
  assertStringIncludes(
    left(parseQuestions(twice, "q.jsonl")),
    "line 2: question_id 7 repeats line 1",
  );
});

Deno.test("modelAnswer() and parseModelAnswers() round-trip FastChat's answer record", () => {
  const q = parseQuestions(QUESTIONS, "q.jsonl");
  assert(E.isRight(q));
  const records = q.right.map((question, i) =>
    modelAnswer(question, [`first ${i}`, `second ${i}`], {
      modelId: "tiny",
      answerId: `id${i}`,
      tstamp: 1700000000.5 + i,
    })
  );
  const text = modelAnswersJsonl(records);
  assertEquals(text.split("\n").length, 3); // two lines and the final newline
  const first = JSON.parse(text.split("\n")[0]!);
  assertEquals(Object.keys(first), ["question_id", "answer_id", "model_id", "choices", "tstamp"]);
  assertEquals(first, {
    question_id: 81,
    answer_id: "id0",
    model_id: "tiny",
    choices: [{ index: 0, turns: ["first 0", "second 0"] }],
    tstamp: 1700000000.5,
  });
  const back = parseModelAnswers(text, "a.jsonl");
  assert(E.isRight(back));
  assertEquals(back.right, records);
  assertStringIncludes(left(parseModelAnswers('{"question_id": 1}', "a.jsonl")), "a.jsonl: line 1");
  let threw = false;
  try {
    modelAnswer(q.right[0]!, ["only one"], { modelId: "m", answerId: "a", tstamp: 0 });
  } catch {
    threw = true;
  }
  assert(threw, "a missing turn answer is a caller bug");
});

Deno.test("parseQuestions() reads the shared MT-Bench set: 80 questions of two turns", async () => {
  const path = new URL("../../shared/data/mt-bench/question.jsonl", import.meta.url);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    console.log("  skipping: ../shared/data/mt-bench/question.jsonl is not here");
    return;
  }
  const q = parseQuestions(text, path.pathname);
  assert(E.isRight(q));
  assertEquals(q.right.length, 80);
  assert(q.right.every((x) => x.turns.length === 2));
  assertEquals(new Set(q.right.map((x) => x.category)).size, 8);
});
