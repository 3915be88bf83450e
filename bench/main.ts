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
import { benchTraining, DEFAULT_SHAPES, type TrainBenchRow } from "./train_bench.ts";

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
      backend: { type: "string" },
    },
  });
  const only = new Set((values.only ?? "solver,train").split(","));
  const backends = (values.backend ?? "wasm,blas").split(",");
  const report: Record<string, unknown> = { results: [] };
  if (only.has("solver")) {
    const solver = await benchSolver();
    report.solver = solver;
    if (!values.json) {
      console.log(`Eq. 3 solve time (1.2B layer shape, r = 128)\n${solverTable(solver)}\n`);
    }
  }
  if (only.has("train")) {
    const rows: TrainBenchRow[] = [];
    if (!values.json) {
      console.log("Training step (forward, backward, AdamW): tokens/s and GFLOP/s = 6·N·tokens/s");
      console.log("shape [d, L, V, T, B]      backend   tokens/s   GFLOP/s");
    }
    // One row at a time, so a slow backend still shows the rows before it.
    for (const backend of backends) {
      for (const shape of DEFAULT_SHAPES) {
        const [r] = await benchTraining({ backends: [backend], shapes: [shape] });
        if (r === undefined) continue;
        rows.push(r);
        if (!values.json) {
          console.log(
            `[${r.shape.join(", ")}]`.padEnd(26) + r.backend.padEnd(9) +
              r.tokensPerSec.toFixed(0).padStart(9) + r.gflops.toFixed(2).padStart(10),
          );
        }
      }
    }
    report.results = rows;
  }
  if (values.json) console.log(JSON.stringify(report, null, 2));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
