/**
 * `deno task generate CHECKPOINT --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]
 * [--top-p P] [--seed S] [--tokenizer bytes|gpt2|PATH] [--backend NAME] [--no-cache] [--json]`
 *
 * Continues a prompt with the model, printing the text to stdout as it is generated (the
 * prompt itself is not repeated); the model line and tokens/s go to stderr. With `--json`,
 * one object instead: the text, its ids, why generation stopped and the timings.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { configInvalid, exitCode, type PipelineError, renderError } from "../base/mod.ts";
import { generateText } from "../effects/mod.ts";
import { booleanFlag, field, parseCommand, stringFlag } from "./_args.ts";
import {
  describeLoaded,
  GENERATION_FLAGS,
  type GenerationArgs,
  generationArgs,
  type GenerationDefaults,
  generationUsage,
  openForGeneration,
} from "./_generation.ts";

const DEFAULTS: GenerationDefaults = { maxTokens: 256, temperature: 0.8, topP: 0.95 };

const USAGE = `Usage: deno task generate CHECKPOINT --prompt TEXT [options]

Continues TEXT with the model, streaming the new text to stdout.

CHECKPOINT  a run's final/ or checkpoint/, or a Hugging Face directory (ckpt import/export)

Options:
  --prompt TEXT      the text to continue (empty: start from end-of-text)
  --no-eot-stop      keep going past end-of-text
  --json             print one JSON object (text, ids, stop, timings) instead of streaming
${generationUsage(DEFAULTS)}`;

/** Where the command writes: streamed text, whole lines, and notes (stderr). */
export interface GenerateIo {
  readonly write: (text: string) => void;
  readonly line: (text: string) => void;
  readonly note: (text: string) => void;
}

const encoder = new TextEncoder();

/** Writes all of `text` to stdout (a pipe may take a write in parts). */
function writeStdout(text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/** The process's stdout and stderr. */
export const STD_IO: GenerateIo = {
  write: writeStdout,
  line: (text) => console.log(text),
  note: (text) => console.error(text),
};

interface Args extends GenerationArgs {
  readonly prompt: string;
  readonly json: boolean;
  readonly eotStop: boolean;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, Args | "help"> {
  const parsed = parseCommand(argv, {
    ...GENERATION_FLAGS,
    prompt: { type: "string" },
    json: { type: "boolean", default: false },
    "no-eot-stop": { type: "boolean", default: false },
  });
  if (E.isLeft(parsed)) return parsed;
  const cmd = parsed.right;
  if (booleanFlag(cmd, "help")) return E.right("help");
  const prompt = stringFlag(cmd, "prompt");
  if (prompt === undefined) {
    return E.left(configInvalid("--prompt", `is missing: give the text to continue\n\n${USAGE}`));
  }
  const args = generationArgs(cmd, DEFAULTS, USAGE);
  if (E.isLeft(args)) return args;
  return E.right({
    ...args.right,
    prompt,
    json: booleanFlag(cmd, "json"),
    eotStop: !booleanFlag(cmd, "no-eot-stop"),
  });
}

/** Runs the generate command; resolves to the process exit code. */
export async function main(argv: readonly string[], io: GenerateIo = STD_IO): Promise<number> {
  const cli = parseCli(argv);
  if (E.isLeft(cli)) return fail(cli.left, io);
  if (cli.right === "help") {
    io.line(USAGE);
    return 0;
  }
  const args = cli.right;
  const opened = await openForGeneration(args);
  if (E.isLeft(opened)) return fail(opened.left, io);
  const { loaded, backend } = opened.right;
  try {
    io.note(describeLoaded(loaded, backend));
    const r = await generateText(loaded, args.prompt, {
      maxNewTokens: args.maxTokens,
      temperature: args.temperature,
      seed: args.seed,
      cache: args.cache,
      stopAtEot: args.eotStop,
      ...field("topK", args.topK),
      ...field("topP", args.topP),
    }, args.json ? undefined : io.write)();
    if (E.isLeft(r)) return fail(r.left, io);
    const g = r.right;
    if (args.json) {
      io.line(JSON.stringify({
        prompt: args.prompt,
        text: g.text,
        ids: g.ids,
        stop: g.stop,
        promptTokens: g.promptTokens,
        newTokens: g.ids.length,
        seconds: g.seconds,
        firstTokenSeconds: g.firstTokenSeconds,
        tokensPerSec: g.tokensPerSec,
        cache: args.cache,
        backend,
      }));
    } else {
      io.write("\n");
    }
    io.note(
      `${g.ids.length} tokens in ${g.seconds.toFixed(2)} s: ${
        g.tokensPerSec.toFixed(1)
      } tokens/s (prompt ${g.promptTokens} tokens, first token after ${
        (g.firstTokenSeconds * 1000).toFixed(0)
      } ms; ${args.cache ? "key/value cache" : "no cache"}; stopped: ${g.stop})`,
    );
    return 0;
  } finally {
    loaded.dispose();
  }
}

/** Prints the error on the command's note stream; resolves to its exit code. */
export function fail(e: PipelineError, io: GenerateIo): number {
  io.note(renderError(e));
  return exitCode(e);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
