/**
 * MT-Bench answering: every question's turns asked in one conversation (the second turn's
 * prompt holds the first turn and the model's own answer, in the Alpaca template instruction
 * tuning trains on), each answer cut at end-of-text or at the next template header, written as
 * FastChat `model_answer` records.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import { type ContentInvalid, deriveSeed, hashString, type KernelFailed } from "../base/mod.ts";
import {
  conversationPrompt,
  type ModelAnswer,
  modelAnswer,
  type MtBenchQuestion,
  type Turn,
} from "../data/mod.ts";
import { ALPACA_STOP_TEXTS, generateText, type TextModel } from "./generate_text.ts";

/**
 * FastChat's sampling temperature per MT-Bench category (`llm_judge/common.py`,
 * `temperature_config`); categories not listed get 0.7 there, as here.
 */
export const FASTCHAT_TEMPERATURES: Readonly<Record<string, number>> = {
  writing: 0.7,
  roleplay: 0.7,
  extraction: 0,
  math: 0,
  coding: 0,
  reasoning: 0,
  stem: 0.1,
  humanities: 0.1,
};

/** How one question went, for a progress line. */
export interface QuestionDone {
  readonly index: number;
  readonly total: number;
  readonly question: MtBenchQuestion;
  /** Tokens generated over the question's turns. */
  readonly tokens: number;
  readonly seconds: number;
}

/** Options of {@link answerMtBench}. */
export interface MtBenchOptions {
  /** `model_id` of the records (FastChat names the answer file after it). */
  readonly modelId: string;
  /** New tokens per turn at most (FastChat's default: 1024). */
  readonly maxNewTokens: number;
  /** A fixed temperature (0: greedy, the default) or FastChat's per-category table. */
  readonly temperature?: number | "category";
  readonly topK?: number;
  readonly topP?: number;
  /** Seed of the sampling streams; each (question, turn) draws from its own. Default 0. */
  readonly seed?: number;
  /** Use the key/value cache (default true). */
  readonly cache?: boolean;
  /** Called after each question. */
  readonly onQuestion?: (done: QuestionDone) => void;
  /** Seconds since the epoch for `tstamp` (default: the clock). */
  readonly now?: () => number;
  /** A fresh `answer_id` (default: a random UUID without dashes, as FastChat's shortuuid is). */
  readonly answerId?: () => string;
}

function temperatureOf(options: MtBenchOptions, category: string): number {
  const t = options.temperature ?? 0;
  return t === "category" ? FASTCHAT_TEMPERATURES[category] ?? 0.7 : t;
}

/**
 * Answers every turn of every question, in order; the answers carry no trailing whitespace.
 *
 * @example
 * ```ts
 * import { answerMtBench } from "./mt_bench.ts";
 * import { byteTokenizer } from "../data/mod.ts";
 * import { initBackend, initParams } from "../kernels/mod.ts";
 * await initBackend("cpu");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 257,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 32,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const questions = [{ question_id: 1, category: "math", turns: ["1+1?", "And 2+2?"] }];
 * const r = await answerMtBench({ model, tokenizer: byteTokenizer() }, questions, {
 *   modelId: "tiny", maxNewTokens: 8,
 * })();
 * console.assert(r._tag === "Right" && r.right[0]!.choices[0]!.turns.length === 2);
 * for (const t of model.params.values()) t.dispose();
 * ```
 */
export function answerMtBench(
  m: TextModel,
  questions: readonly MtBenchQuestion[],
  options: MtBenchOptions,
): TE.TaskEither<KernelFailed | ContentInvalid, ModelAnswer[]> {
  return async () => {
    const out: ModelAnswer[] = [];
    for (const [index, question] of questions.entries()) {
      const t0 = performance.now();
      const turns: Turn[] = [];
      const answers: string[] = [];
      let tokens = 0;
      for (const [turn, instruction] of question.turns.entries()) {
        const prompt = conversationPrompt([...turns, { instruction }]);
        const r = await generateText(m, prompt, {
          maxNewTokens: options.maxNewTokens,
          temperature: temperatureOf(options, question.category),
          seed: deriveSeed(options.seed ?? 0, hashString(String(question.question_id)), turn),
          stopTexts: ALPACA_STOP_TEXTS,
          ...(options.topK === undefined ? {} : { topK: options.topK }),
          ...(options.topP === undefined ? {} : { topP: options.topP }),
          ...(options.cache === undefined ? {} : { cache: options.cache }),
        })();
        if (E.isLeft(r)) return r;
        const answer = r.right.text.trim();
        tokens += r.right.ids.length;
        answers.push(answer);
        turns.push({ instruction, response: answer });
      }
      out.push(modelAnswer(question, answers, {
        modelId: options.modelId,
        answerId: options.answerId?.() ?? crypto.randomUUID().replaceAll("-", ""),
        tstamp: options.now?.() ?? Date.now() / 1000,
      }));
      options.onQuestion?.({
        index,
        total: questions.length,
        question,
        tokens,
        seconds: (performance.now() - t0) / 1000,
      });
    }
    return E.right(out);
  };
}
