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
