/**
 * `deno task serve [DIR …] [--port N]`: the dashboard of the runs and comparisons under the
 * folders (default `runs/`), on 127.0.0.1 until Ctrl-C. It reads the folders and never writes.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { configInvalid, exitCode, type PipelineError, renderError } from "../base/mod.ts";
import { startDashboard } from "../serve/mod.ts";
import { booleanFlag, intFlag, parseCommand } from "./_args.ts";

const USAGE = `Usage: deno task serve [DIR …] [--port N]

A dashboard of the runs (deno task run) and comparisons (deno task compare) under the folders
(default runs/): status, stage graphs, live loss curves, memory against predictions, reports
and evaluations. Bound to 127.0.0.1; it reads the folders and never writes into them.

Options:
  --port N     the port to listen on (default 8765; 0 picks a free one)
  -h, --help   show this help`;

const DEFAULT_PORT = 8765;
const HIGHEST_PORT = 65535;

interface ServeArgs {
  readonly dirs: readonly string[];
  readonly port: number;
}

function parseCli(argv: readonly string[]): E.Either<PipelineError, ServeArgs | "help"> {
  const parsed = parseCommand(argv, {
    port: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (E.isLeft(parsed)) {
    return E.left(configInvalid("command line", `${parsed.left.message}\n\n${USAGE}`));
  }
  if (booleanFlag(parsed.right, "help")) return E.right("help");
  const port = intFlag(parsed.right, "port", 0);
  if (E.isLeft(port)) return port;
  if ((port.right ?? 0) > HIGHEST_PORT) {
    return E.left(
      configInvalid("--port", `expected a port from 0 to ${HIGHEST_PORT}, got ${port.right}`),
    );
  }
  const dirs = parsed.right.positionals.length === 0 ? ["runs"] : parsed.right.positionals;
  return E.right({ dirs, port: port.right ?? DEFAULT_PORT });
}

/** Runs the dashboard until SIGINT or SIGTERM; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = parseCli(argv);
  if (E.isLeft(cli)) {
    console.error(renderError(cli.left));
    return exitCode(cli.left);
  }
  if (cli.right === "help") {
    console.log(USAGE);
    return 0;
  }
  const dashboard = await startDashboard({ dirs: cli.right.dirs, port: cli.right.port });
  if (E.isLeft(dashboard)) {
    console.error(renderError(dashboard.left));
    return exitCode(dashboard.left);
  }
  console.log(
    `Dashboard of ${cli.right.dirs.join(", ")}: ${dashboard.right.url} (Ctrl-C stops it)`,
  );
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  await new Promise<void>((stop) => {
    for (const s of signals) Deno.addSignalListener(s, stop);
  });
  await dashboard.right.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
