/**
 * `deno task mtbench CHECKPOINT --questions question.jsonl --out answers.jsonl
 * [--model-id NAME] [--limit N] [--max-tokens N] [--temperature T|category] [--top-k K]
 * [--top-p P] [--seed S] [--tokenizer …] [--backend …] [--no-cache]`
 *
 * Answers MT-Bench's questions (both turns, the second asked after the model's first answer)
 * and writes FastChat's `model_answer` JSONL, ready for FastChat's `llm_judge` (put it at
 * `data/mt_bench/model_answer/<model-id>.jsonl` there). No judge model is reachable from here:
 * this command only produces the answers. The file appears whole or not at all.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { basename, dirname } from "node:path";
import { configInvalid, describeUnknown, ioFailed, type PipelineError } from "../base/mod.ts";
import { checkOutput, exists } from "../checkpoint/mod.ts";
import { modelAnswersJsonl, readQuestions } from "../data/mod.ts";
import { answerMtBench } from "../effects/mod.ts";
import { writeFileAtomic } from "../store/mod.ts";
import { booleanFlag, field, intFlag, parseCommand, stringFlag } from "./_args.ts";
import {
  describeLoaded,
  GENERATION_FLAGS,
  type GenerationArgs,
  generationArgs,
  type GenerationDefaults,
  generationUsage,
  openForGeneration,
} from "./_generation.ts";
import { fail, type GenerateIo, STD_IO } from "./generate.ts";

/** Where the shared data puts MT-Bench's questions, relative to the project. */
export const DEFAULT_QUESTIONS = "../shared/data/mt-bench/question.jsonl";

// FastChat's gen_model_answer defaults: 1024 new tokens; greedy here unless asked otherwise.
const DEFAULTS: GenerationDefaults = {
  maxTokens: 1024,
  temperature: 0,
  categoryTemperature: true,
  perTurn: true,
};

const USAGE = `Usage: deno task mtbench CHECKPOINT --out answers.jsonl [options]

Answers MT-Bench's two-turn questions and writes FastChat's model_answer JSONL for llm_judge.

Options:
  --questions FILE   FastChat question.jsonl (default ${DEFAULT_QUESTIONS} when it exists)
  --out FILE         the answer file to write (atomically)
  --model-id NAME    model_id of the records (default: the checkpoint's directory name)
  --limit N          answer the first N questions only
${generationUsage(DEFAULTS)}`;

interface Args extends GenerationArgs {
  readonly questions: string;
  readonly out: string;
  readonly modelId: string;
  readonly limit?: number;
}

async function parseCli(argv: readonly string[]): Promise<E.Either<PipelineError, Args | "help">> {
  const parsed = parseCommand(argv, {
    ...GENERATION_FLAGS,
    questions: { type: "string" },
    out: { type: "string" },
    "model-id": { type: "string" },
    limit: { type: "string" },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  if (booleanFlag(cmd, "help")) return E.right("help");
  const args = generationArgs(cmd, DEFAULTS, USAGE);
  if (E.isLeft(args)) return args;
  const out = stringFlag(cmd, "out");
  if (out === undefined || out.trim() === "") {
    return E.left(configInvalid("--out", "is missing: name the answer file to write"));
  }
  const given = stringFlag(cmd, "questions");
  if (given === undefined && !(await exists(DEFAULT_QUESTIONS))) {
    return E.left(configInvalid(
      "--questions",
      `is missing and ${DEFAULT_QUESTIONS} does not exist: give FastChat's question.jsonl`,
    ));
  }
  const limit = intFlag(cmd, "limit", 1);
  if (E.isLeft(limit)) return limit;
  const checkpoint = args.right.checkpoint.replace(/\/+$/, "");
  const leaf = basename(checkpoint);
  // A run's final/ or checkpoint/ is named by its run directory.
  const modelId = stringFlag(cmd, "model-id") ??
    (leaf === "final" || leaf === "checkpoint" ? basename(dirname(checkpoint)) : leaf);
  return E.right({
    ...args.right,
    questions: given ?? DEFAULT_QUESTIONS,
    out,
    modelId,
    ...field("limit", limit.right),
  });
}

/** Runs the mtbench command; resolves to the process exit code. */
export async function main(argv: readonly string[], io: GenerateIo = STD_IO): Promise<number> {
  const cli = await parseCli(argv);
  if (E.isLeft(cli)) return fail(cli.left, io);
  if (cli.right === "help") {
    io.line(USAGE);
    return 0;
  }
  const args = cli.right;
  const questions = await readQuestions(args.questions)();
  if (E.isLeft(questions)) return fail(questions.left, io);
  const chosen = questions.right.slice(0, args.limit ?? questions.right.length);
  // Before any answer is generated: an output that cannot be written fails now, not after hours.
  const writable = await checkOutput(
    { kind: "file", flag: "--out", path: args.out, makeParent: true },
    [
      { what: "the checkpoint", path: args.checkpoint, checkpoint: true },
      { what: "the --questions file", path: args.questions },
      ...(args.shape === undefined ? [] : [{ what: "the --shape file", path: args.shape }]),
    ],
  );
  if (E.isLeft(writable)) return fail(writable.left, io);
  const opened = await openForGeneration(args);
  if (E.isLeft(opened)) return fail(opened.left, io);
  const { loaded, backend } = opened.right;
  try {
    io.note(describeLoaded(loaded, backend));
    io.note(
      `Answering ${chosen.length} questions from ${args.questions} as "${args.modelId}" (${
        args.perCategory
          ? "FastChat's per-category temperatures"
          : args.temperature === 0
          ? "greedy"
          : `temperature ${args.temperature}`
      }, at most ${args.maxTokens} tokens per turn)`,
    );
    const answers = await answerMtBench(loaded, chosen, {
      modelId: args.modelId,
      maxNewTokens: args.maxTokens,
      temperature: args.perCategory ? "category" : args.temperature,
      seed: args.seed,
      cache: args.cache,
      ...field("topK", args.topK),
      ...field("topP", args.topP),
      onQuestion: (d) =>
        io.note(
          `[${
            d.index + 1
          }/${d.total}] question ${d.question.question_id} (${d.question.category}): ${d.question.turns.length} turns, ${d.tokens} tokens, ${
            d.seconds.toFixed(1)
          } s`,
        ),
    })();
    if (E.isLeft(answers)) return fail(answers.left, io);
    const out = writable.right;
    try {
      await Deno.mkdir(dirname(out), { recursive: true });
    } catch (e) {
      return fail(ioFailed(dirname(out), describeUnknown(e)), io);
    }
    const written = await writeFileAtomic(out, modelAnswersJsonl(answers.right))();
    if (E.isLeft(written)) return fail(written.left, io);
    io.note(`Wrote ${answers.right.length} answers to ${out}`);
    return 0;
  } finally {
    loaded.dispose();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
