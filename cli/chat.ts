/**
 * `deno task chat CHECKPOINT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
 * [--seed S] [--tokenizer bytes|gpt2|PATH] [--backend NAME] [--no-cache]`
 *
 * A small conversation loop: each line read from stdin is an instruction, answered in the
 * Alpaca template with the earlier turns (and the model's answers) in the prompt. When the
 * prompt would exceed the model's context, the oldest turns are dropped, then the turn's own
 * text loses its beginning; the template (preamble, headers, the `### Response:` cue) is always
 * kept whole, and a notice says so once per session. A model whose context cannot hold the
 * template is refused before the first turn. `/reset` forgets the conversation, `/quit` or end
 * of input ends it. Works with piped input: the prompt marker is only shown on a terminal.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { configInvalid } from "../base/mod.ts";
import { conversationPrompt, type Tokenizer, type Turn } from "../data/mod.ts";
import { ALPACA_STOP_TEXTS, generateText, promptIds } from "../effects/mod.ts";
import { booleanFlag, field, parseCommand } from "./_args.ts";
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

const DEFAULTS: GenerationDefaults = {
  maxTokens: 256,
  temperature: 0.8,
  topP: 0.95,
  perTurn: true,
};

const USAGE = `Usage: deno task chat CHECKPOINT [options]

Talks with an instruction-tuned model: type an instruction, read the answer. /reset starts
over, /quit (or end of input) leaves.

Options:
${generationUsage(DEFAULTS)}`;

/** Where chat reads its lines from and writes to. */
export interface ChatIo extends GenerateIo {
  readonly input: ReadableStream<Uint8Array>;
  /** Show a prompt marker before each line (a terminal). */
  readonly interactive: boolean;
}

async function* lines(input: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of input.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop() ?? "";
    for (const p of parts) yield p.replace(/\r$/, "");
  }
  if (rest !== "") yield rest;
}

/** What a prompt must fit: the model's tokenizer and context. */
export interface ChatContext {
  readonly tokenizer: Pick<Tokenizer, "encode" | "eot" | "bos">;
  readonly maxSeqLen: number;
}

/** A conversation fitted into the context. */
export interface FittedPrompt {
  readonly prompt: string;
  /** The turns in the prompt: the history kept and the newest turn (its text maybe cut). */
  readonly turns: readonly Turn[];
  /** Oldest turns left out. */
  readonly dropped: number;
  /** Characters (code points) cut from the start of the newest turn's instruction. */
  readonly cut: number;
}

function tokens(turns: readonly Turn[], context: ChatContext): number {
  return promptIds(context.tokenizer, conversationPrompt(turns)).length;
}

/**
 * Tokens of the chat template around an empty turn, when they leave no room for a turn in the
 * context; `undefined` when a turn fits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "../data/mod.ts";
 * import { templateOverflow } from "./chat.ts";
 * assert(templateOverflow({ tokenizer: byteTokenizer(), maxSeqLen: 32 }) === 140);
 * assert(templateOverflow({ tokenizer: byteTokenizer(), maxSeqLen: 160 }) === undefined);
 * ```
 */
export function templateOverflow(context: ChatContext): number | undefined {
  const template = tokens([{ instruction: "" }], context);
  return template < context.maxSeqLen ? undefined : template;
}

/**
 * The prompt for the last of `turns` within `maxSeqLen` tokens, the template kept whole: the
 * oldest turns are dropped first, then the newest turn's instruction loses its beginning (its
 * last words, next to the response cue, stay). Assumes the template fits
 * ({@link templateOverflow}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { byteTokenizer } from "../data/mod.ts";
 * import { fitPrompt } from "./chat.ts";
 * const f = fitPrompt([{ instruction: "x".repeat(100) + " What is it?" }], {
 *   tokenizer: byteTokenizer(), maxSeqLen: 160,
 * });
 * assert(f.prompt.startsWith("Below is an instruction") && f.prompt.endsWith("What is it?\n\n### Response:\n"));
 * assert(f.prompt.length === 160 && f.cut === 92);
 * ```
 */
export function fitPrompt(turns: readonly Turn[], context: ChatContext): FittedPrompt {
  let kept = [...turns];
  while (kept.length > 1 && tokens(kept, context) > context.maxSeqLen) kept = kept.slice(1);
  const dropped = turns.length - kept.length;
  if (tokens(kept, context) <= context.maxSeqLen) {
    return { prompt: conversationPrompt(kept), turns: kept, dropped, cut: 0 };
  }
  // One turn too long: keep the longest tail of its text that fits (code points, so a cut never
  // splits a character; the token count grows with the tail, so a binary search finds it).
  const chars = Array.from(kept[0]!.instruction);
  const tail = (n: number): Turn[] => [{ instruction: chars.slice(chars.length - n).join("") }];
  let lo = 0;
  let hi = chars.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (tokens(tail(mid), context) <= context.maxSeqLen) lo = mid;
    else hi = mid - 1;
  }
  const fitted = tail(lo);
  return { prompt: conversationPrompt(fitted), turns: fitted, dropped, cut: chars.length - lo };
}

/** The once-per-session notice of what fitting did the first time it did something. */
function fitNotice(f: FittedPrompt, maxSeqLen: number): string {
  const what = [
    ...(f.dropped > 0 ? [`the ${f.dropped} oldest turn(s) left out`] : []),
    ...(f.cut > 0 ? [`the first ${f.cut} characters of this turn cut`] : []),
  ].join(" and ");
  return `(the conversation outgrew the model's context of ${maxSeqLen} tokens: ${what}, the ` +
    "prompt template kept whole; later turns are fitted the same way without this notice)";
}

/** Runs the chat loop; resolves to the process exit code. */
export async function main(
  argv: readonly string[],
  io: ChatIo = { ...STD_IO, input: Deno.stdin.readable, interactive: Deno.stdin.isTerminal() },
): Promise<number> {
  const parsed = parseCommand(argv, GENERATION_FLAGS);
  if (E.isLeft(parsed)) return fail(parsed.left, io);
  if (booleanFlag(parsed.right, "help")) {
    io.line(USAGE);
    return 0;
  }
  const args = generationArgs(parsed.right, DEFAULTS, USAGE);
  if (E.isLeft(args)) return fail(args.left, io);
  const opened = await openForGeneration(args.right);
  if (E.isLeft(opened)) return fail(opened.left, io);
  const { loaded, backend } = opened.right;
  try {
    io.note(describeLoaded(loaded, backend));
    const maxSeqLen = loaded.model.shape.maxSeqLen;
    const overflow = templateOverflow({ tokenizer: loaded.tokenizer, maxSeqLen });
    if (overflow !== undefined) {
      return fail(
        configInvalid(
          args.right.checkpoint,
          `the model's context of ${maxSeqLen} tokens cannot hold the chat's prompt template ` +
            `(${overflow} tokens of Alpaca's template) and a turn: chat needs a longer context`,
        ),
        io,
      );
    }
    io.note("Type an instruction; /reset starts over, /quit leaves.");
    return await loop(args.right, loaded, io);
  } finally {
    loaded.dispose();
  }
}

async function loop(
  args: GenerationArgs,
  loaded: Parameters<typeof generateText>[0],
  io: ChatIo,
): Promise<number> {
  const context = { tokenizer: loaded.tokenizer, maxSeqLen: loaded.model.shape.maxSeqLen };
  let history: Turn[] = [];
  let asked = 0;
  let noticed = false;
  if (io.interactive) io.write("> ");
  for await (const raw of lines(io.input)) {
    const text = raw.trim();
    if (text === "/quit") break;
    if (text === "/reset") {
      history = [];
      io.line("(conversation cleared)");
    } else if (text !== "") {
      const fitted = fitPrompt([...history, { instruction: text }], context);
      if (!noticed && (fitted.dropped > 0 || fitted.cut > 0)) {
        io.note(fitNotice(fitted, context.maxSeqLen));
        noticed = true;
      }
      const r = await generateText(loaded, fitted.prompt, {
        maxNewTokens: args.maxTokens,
        temperature: args.temperature,
        // A fresh stream per answer, so an answer does not depend on how many draws came before.
        seed: args.seed + asked++,
        cache: args.cache,
        stopTexts: ALPACA_STOP_TEXTS,
        ...field("topK", args.topK),
        ...field("topP", args.topP),
      }, io.write)();
      if (E.isLeft(r)) return fail(r.left, io);
      io.write("\n");
      // The turn as the model saw it, so the next prompt repeats what this answer followed.
      const asAsked = fitted.turns.at(-1)!.instruction;
      history = [
        ...fitted.turns.slice(0, -1),
        { instruction: asAsked, response: r.right.text.trim() },
      ];
    }
    if (io.interactive) io.write("> ");
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
