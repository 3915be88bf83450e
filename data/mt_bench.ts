/**
 * MT-Bench's files in FastChat's formats: the questions (`question.jsonl`, one
 * `{question_id, category, turns}` per line) and the answers a model writes for the judge
 * (`model_answer/<model>.jsonl`, one `{question_id, answer_id, model_id, choices, tstamp}` per
 * line, as FastChat's `gen_model_answer.py` writes them), so the output goes straight into
 * FastChat's `llm_judge`.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import {
  type ContentInvalid,
  contentInvalid,
  decodeWith,
  type ext,
  type FileError,
} from "../base/mod.ts";
import { jsonLines } from "./jsonl.ts";
import { readUtf8File } from "./text_file.ts";

const QuestionId = t.union([t.number, t.string]);

/** The fields every MT-Bench question has. */
export const MT_BENCH_QUESTION_REQUIRED = {
  /** FastChat's id, a number in `question.jsonl` (a string is accepted too). */
  question_id: QuestionId,
  /** MT-Bench's category, e.g. `writing`, `math`, `coding`. */
  category: t.string,
  /** The user's messages, asked one after the other in one conversation. */
  turns: t.array(t.string),
};
/** The field some MT-Bench questions have. */
export const MT_BENCH_QUESTION_OPTIONAL = {
  /** Reference answers the judge sees for math, reasoning and coding questions. */
  reference: t.array(t.string),
};
/** One MT-Bench question: FastChat's record (unknown fields such as `reference` are kept out). */
export const MtBenchQuestion: ext.IntersectionC<[
  ext.TypeC<typeof MT_BENCH_QUESTION_REQUIRED>,
  ext.PartialC<typeof MT_BENCH_QUESTION_OPTIONAL>,
]> = t.intersection([
  t.type(MT_BENCH_QUESTION_REQUIRED),
  t.partial(MT_BENCH_QUESTION_OPTIONAL),
]);
/** A question and its turns (MT-Bench: two), asked one after the other in one conversation. */
export type MtBenchQuestion = ext.TypeOf<typeof MtBenchQuestion>;

/** The fields of a {@link ModelAnswer}, as FastChat's `gen_model_answer.py` writes them. */
export const MODEL_ANSWER_FIELDS = {
  /** The question answered. */
  question_id: QuestionId,
  /** A fresh id of this answer. */
  answer_id: t.string,
  /** Name of the model that answered, the judge's name for it. */
  model_id: t.string,
  /** The answers; FastChat writes one choice, index 0, with one reply per turn. */
  choices: t.array(t.type({ index: t.number, turns: t.array(t.string) })),
  /** When the answer was written, in seconds since the epoch. */
  tstamp: t.number,
};
/** One answer record of FastChat's `model_answer` JSONL. */
export const ModelAnswer: ext.TypeC<typeof MODEL_ANSWER_FIELDS> = t.type(MODEL_ANSWER_FIELDS);
/** A model's answers to every turn of one question. */
export type ModelAnswer = ext.TypeOf<typeof ModelAnswer>;

/** One JSON value per non-blank line, decoded; errors name the file and the line. */
function parseJsonl<A>(
  text: string,
  file: string,
  decode: (u: unknown) => ext.Either<string[], A>,
): ext.Either<ContentInvalid, { readonly line: number; readonly value: A }[]> {
  const parsed = jsonLines(text);
  if (E.isLeft(parsed)) {
    const { line, why } = parsed.left;
    return E.left(contentInvalid(file, `line ${line}: not valid JSON (${why})`));
  }
  const out: { line: number; value: A }[] = [];
  for (const { line, value } of parsed.right) {
    const d = decode(value);
    if (E.isLeft(d)) return E.left(contentInvalid(file, `line ${line}: ${d.left.join("; ")}`));
    out.push({ line, value: d.right });
  }
  return E.right(out);
}

/**
 * The questions of a FastChat `question.jsonl`, in file order. Every question needs at least
 * one turn, ids must not repeat, and a file with no questions (empty, or blank lines only) is
 * an error: answering nothing would only write an empty answer file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseQuestions } from "./mt_bench.ts";
 * const text = '{"question_id": 81, "category": "writing", "turns": ["Hi?", "Again?"]}\n';
 * const q = parseQuestions(text, "question.jsonl");
 * assert(q._tag === "Right" && q.right[0]!.turns.length === 2);
 * ```
 */
export function parseQuestions(
  text: string,
  file: string,
): ext.Either<ContentInvalid, MtBenchQuestion[]> {
  const parsed = parseJsonl(text, file, (u) => decodeWith(MtBenchQuestion, u));
  if (E.isLeft(parsed)) return parsed;
  const seen = new Map<string, number>();
  const out: MtBenchQuestion[] = [];
  for (const { line, value } of parsed.right) {
    if (value.turns.length === 0) {
      return E.left(contentInvalid(file, `line ${line}: turns: expected at least one turn`));
    }
    const key = JSON.stringify(value.question_id);
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      return E.left(
        contentInvalid(file, `line ${line}: question_id ${key} repeats line ${earlier}`),
      );
    }
    seen.set(key, line);
    const { question_id, category, turns, reference } = value;
    out.push({ question_id, category, turns, ...(reference === undefined ? {} : { reference }) });
  }
  if (out.length === 0) {
    return E.left(contentInvalid(file, "holds no questions (no non-blank line)"));
  }
  return E.right(out);
}

/**
 * Reads a FastChat `question.jsonl` ({@link parseQuestions}) the way every input file is read
 * ({@link readUtf8File}: a FIFO or a device refused by name, bytes that are not UTF-8 named).
 *
 * @example
 * ```ts
 * import { readQuestions } from "./mt_bench.ts";
 * const r = await readQuestions("/no/such/question.jsonl")();
 * console.assert(r._tag === "Left" && r.left._tag === "IoFailed");
 * ```
 */
export function readQuestions(path: string): ext.TaskEither<FileError, MtBenchQuestion[]> {
  return async () => {
    const text = await readUtf8File(path)();
    return E.isLeft(text) ? text : parseQuestions(text.right, path);
  };
}

/** What identifies an answer besides its question and text. */
export interface AnswerStamp {
  /** Name of the model that answered, written as FastChat's `model_id`. */
  readonly modelId: string;
  /** A unique id (FastChat uses a short uuid). */
  readonly answerId: string;
  /** Seconds since the epoch. */
  readonly tstamp: number;
}

/**
 * FastChat's answer record: one choice (index 0) holding the answer of every turn.
 *
 * @throws {Error} when the number of answers differs from the question's turns (a caller bug).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelAnswer } from "./mt_bench.ts";
 * const q = { question_id: 81, category: "writing", turns: ["A?", "B?"] };
 * const a = modelAnswer(q, ["a", "b"], { modelId: "m", answerId: "x", tstamp: 1 });
 * assert(a.choices[0]!.turns[1] === "b");
 * ```
 */
export function modelAnswer(
  question: MtBenchQuestion,
  answers: readonly string[],
  stamp: AnswerStamp,
): ModelAnswer {
  if (answers.length !== question.turns.length) {
    throw new Error(
      `Question ${question.question_id} has ${question.turns.length} turns, got ${answers.length} answers`,
    );
  }
  return {
    question_id: question.question_id,
    answer_id: stamp.answerId,
    model_id: stamp.modelId,
    choices: [{ index: 0, turns: [...answers] }],
    tstamp: stamp.tstamp,
  };
}

/** The JSONL text of answer records, one per line, in FastChat's field order. */
export function modelAnswersJsonl(answers: readonly ModelAnswer[]): string {
  return answers.map((a) => JSON.stringify(a)).join("\n") + (answers.length > 0 ? "\n" : "");
}

/**
 * Answer records read back from a `model_answer` JSONL (errors name the file and line).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelAnswer, modelAnswersJsonl, parseModelAnswers } from "./mt_bench.ts";
 * const q = { question_id: 1, category: "math", turns: ["1+1?"] };
 * const text = modelAnswersJsonl([modelAnswer(q, ["2"], { modelId: "m", answerId: "a", tstamp: 0 })]);
 * const back = parseModelAnswers(text, "answers.jsonl");
 * assert(back._tag === "Right" && back.right[0]!.choices[0]!.turns[0] === "2");
 * ```
 */
export function parseModelAnswers(
  text: string,
  file: string,
): ext.Either<ContentInvalid, ModelAnswer[]> {
  return E.map((rows: { value: ModelAnswer }[]) => rows.map((r) => r.value))(
    parseJsonl(text, file, (u) => decodeWith(ModelAnswer, u)),
  );
}
