/**
 * Runs a CLI entry point in-process and captures what it prints: the tests of
 * `plan`, `run` and `ckpt` read exit code, stdout and stderr this way.
 *
 * @module
 */

/** Exit code and captured console output of one command. */
export interface Captured {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Calls `main(args)` with console.log and console.error captured, then restores them. */
export async function capture(
  main: (args: readonly string[]) => Promise<number>,
  args: readonly string[],
): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await main(args), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}
