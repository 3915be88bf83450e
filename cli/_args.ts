/**
 * Command-line parsing shared by the entry points: `node:util` `parseArgs` in
 * strict mode, with its exceptions (unknown flag, missing value) turned into a
 * `ConfigInvalid` naming the command line.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid, describeUnknown } from "../base/mod.ts";
import { TokenizerName, type TokenizerSpec } from "../data/mod.ts";
import { type BackendName, BACKENDS, type EngineName, ENGINES } from "../pipeline/mod.ts";

/** Flags and positionals as `parseArgs` returns them. */
export interface ParsedCommand {
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
}

/** Parses `argv` against `options`; unknown flags are errors. */
export function parseCommand(
  argv: readonly string[],
  options: NonNullable<ParseArgsConfig["options"]>,
): E.Either<ConfigInvalid, ParsedCommand> {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options,
    });
    return E.right({ values: values as ParsedCommand["values"], positionals });
  } catch (e) {
    return E.left(configInvalid("command line", describeUnknown(e)));
  }
}

/** The value of a string flag, or undefined when absent. */
export function stringFlag(p: ParsedCommand, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

/** Whether a boolean flag was given. */
export function booleanFlag(p: ParsedCommand, name: string): boolean {
  return p.values[name] === true;
}

/** `{ [key]: value }` when the value is present, `{}` otherwise (for exact optional fields). */
export function field<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/**
 * A flag's value as a number that passes `ok` (described by `expected` in the error), or
 * undefined when the flag is absent.
 */
export function numberFlag(
  p: ParsedCommand,
  flag: string,
  ok: (n: number) => boolean,
  expected: string,
): E.Either<ConfigInvalid, number | undefined> {
  const v = stringFlag(p, flag);
  if (v === undefined) return E.right(undefined);
  const n = v.trim() === "" ? NaN : Number(v);
  return ok(n)
    ? E.right(n)
    : E.left(configInvalid(`--${flag}`, `expected ${expected}, got "${v}"`));
}

/** A flag's value as an integer ≥ `min` (written as digits), or undefined when absent. */
export function intFlag(
  p: ParsedCommand,
  flag: string,
  min: number,
): E.Either<ConfigInvalid, number | undefined> {
  const digits = /^\s*\d+\s*$/.test(stringFlag(p, flag) ?? "0");
  return numberFlag(
    p,
    flag,
    (n) => digits && Number.isSafeInteger(n) && n >= min,
    `an integer ≥ ${min}`,
  );
}

/**
 * `--tokenizer bytes|gpt2|PATH` (a `tokenizer.json` or a Hugging Face model folder holding one,
 * relative to the working directory), or undefined when absent. A path that does not exist is
 * refused here, naming the flag; the file itself is read when the model is opened.
 */
export function tokenizerFlag(
  p: ParsedCommand,
): E.Either<ConfigInvalid, TokenizerSpec | undefined> {
  const v = stringFlag(p, "tokenizer");
  if (v === undefined || TokenizerName.is(v)) return E.right(v);
  let found = false;
  try {
    Deno.statSync(v);
    found = true;
  } catch {
    // Not there (or not readable): refused below, naming the flag.
  }
  return found && v.trim() !== "" ? E.right(v) : E.left(configInvalid(
    "--tokenizer",
    `"${v}" is neither bytes, gpt2 nor an existing tokenizer.json or Hugging Face model folder`,
  ));
}

/** `--FLAG NAME` where NAME must be one of `choices`, or undefined when absent. */
function choiceFlag<C extends string>(
  p: ParsedCommand,
  flag: string,
  choices: readonly C[],
): E.Either<ConfigInvalid, C | undefined> {
  const v = stringFlag(p, flag);
  return v === undefined || (choices as readonly string[]).includes(v)
    ? E.right(v as C | undefined)
    : E.left(
      configInvalid(`--${flag}`, `unknown ${flag} "${v}": expected one of ${choices.join(", ")}`),
    );
}

/** `--backend NAME`, or undefined when absent. */
export function backendFlag(p: ParsedCommand): E.Either<ConfigInvalid, BackendName | undefined> {
  return choiceFlag(p, "backend", BACKENDS);
}

/** `--engine NAME`: one of the training engines, or undefined when not given. */
export function engineFlag(p: ParsedCommand): E.Either<ConfigInvalid, EngineName | undefined> {
  return choiceFlag(p, "engine", ENGINES);
}

/** The one positional argument (`what`, e.g. CHECKPOINT), or an error showing the usage. */
export function onePositional(
  p: ParsedCommand,
  what: string,
  usage: string,
): E.Either<ConfigInvalid, string> {
  return p.positionals.length === 1 ? E.right(p.positionals[0]!) : E.left(configInvalid(
    "command line",
    `expected one ${what}, got ${p.positionals.length}${usage === "" ? "" : `\n\n${usage}`}`,
  ));
}

/** How a run directory is opened: `--resume`, `--force` (replace), or fresh; never both flags. */
export function runDirModeFlag(
  p: ParsedCommand,
): E.Either<ConfigInvalid, "fresh" | "resume" | "replace"> {
  const resume = booleanFlag(p, "resume");
  const force = booleanFlag(p, "force");
  if (resume && force) {
    return E.left(
      configInvalid("--resume/--force", "give one of them: continue the run or replace it"),
    );
  }
  return E.right(resume ? "resume" : force ? "replace" : "fresh");
}
