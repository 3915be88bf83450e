/**
 * `deno task chat CHECKPOINT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
 * [--seed S] [--tokenizer bytes|gpt2] [--backend NAME] [--no-cache]`
 *
 * A small conversation loop: each line read from stdin is an instruction, answered in the
 * Alpaca template with the earlier turns (and the model's answers) in the prompt. When the
 * prompt would exceed the model's context, the oldest turns are dropped; a single turn longer
 * than the context keeps its last tokens (the generation window, `kernels/generate.ts`).
 * `/reset` forgets the conversation, `/quit` or end of input ends it. Works with piped input:
 * the prompt marker is only shown on a terminal.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { conversationPrompt, type Tokenizer, type Turn } from "../data/mod.ts";
import { ALPACA_STOP_TEXTS, generateText } from "../effects/mod.ts";
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

/**
 * The turns that fit: the oldest dropped until the prompt is at most `maxSeqLen` tokens (the
 * newest turn always stays).
 */
export function fitTurns(turns: readonly Turn[], tokenizer: Tokenizer, maxSeqLen: number): Turn[] {
  let kept = [...turns];
  while (kept.length > 1 && tokenizer.encode(conversationPrompt(kept)).length > maxSeqLen) {
    kept = kept.slice(1);
  }
  return kept;
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
  const maxSeqLen = loaded.model.shape.maxSeqLen;
  let history: Turn[] = [];
  let asked = 0;
  if (io.interactive) io.write("> ");
  for await (const raw of lines(io.input)) {
    const text = raw.trim();
    if (text === "/quit") break;
    if (text === "/reset") {
      history = [];
      io.line("(conversation cleared)");
    } else if (text !== "") {
      const turns = fitTurns([...history, { instruction: text }], loaded.tokenizer, maxSeqLen);
      if (turns.length < history.length + 1) {
        io.note(`(dropped ${history.length + 1 - turns.length} oldest turns to fit the context)`);
      }
      const r = await generateText(loaded, conversationPrompt(turns), {
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
      history = [...turns.slice(0, -1), { instruction: text, response: r.right.text.trim() }];
    }
    if (io.interactive) io.write("> ");
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
