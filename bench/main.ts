/**
 * `deno task bench [--json] [--only solver,train,matmul] [--backend NAME]`
 *
 * Benchmarks, each measured side by side in one run (these machines are
 * shared and noisy: compare ratios, not absolute figures across runs).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { benchSolver, type SolverBenchResult } from "./solver_bench.ts";

function solverTable(rows: readonly SolverBenchResult[]): string {
  const lines = ["L    K   compositions   HiGHS ms   exhaustive ms   split"];
  for (const r of rows) {
    lines.push(
      `${String(r.layers).padEnd(4)} ${String(r.stages).padEnd(3)} ${
        r.compositions.toExponential(2).padStart(12)
      }   ${r.highsMs.toFixed(1).padStart(8)}   ${
        (r.exhaustiveMs === undefined ? "skipped" : r.exhaustiveMs.toFixed(1)).padStart(13)
      }   [${r.split.join(", ")}]${r.agree === false ? "  (DISAGREE)" : ""}`,
    );
  }
  return lines.join("\n");
}

/** Runs the selected benchmarks; resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      json: { type: "boolean", default: false },
      only: { type: "string" },
    },
  });
  const only = new Set((values.only ?? "solver").split(","));
  const report: Record<string, unknown> = { results: [] };
  if (only.has("solver")) {
    const solver = await benchSolver();
    report.solver = solver;
    if (!values.json) {
      console.log(`Eq. 3 solve time (1.2B layer shape, r = 128)\n${solverTable(solver)}\n`);
    }
  }
  if (values.json) console.log(JSON.stringify(report, null, 2));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
