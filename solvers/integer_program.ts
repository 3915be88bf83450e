/**
 * Integer programs as plain data, and Eq. 3 built as one.
 *
 * Eq. 3 after the epigraph trick: minimise t subject to t ≥ bytes_i(n) for every
 * stage i, n_1 + … + n_K = L, n_i ≥ minLayers integers. The program is data so it
 * can be printed, inspected and handed to any solver; {@link toLpFormat} renders
 * the CPLEX LP text HiGHS reads.
 *
 * @module
 */
import { type MemoryProblem, stageLinearForms } from "./memory_model.ts";

/** `coef · variable`. */
export interface LinearTerm {
  /** Name of a variable of the program. */
  readonly variable: string;
  /** Its coefficient. */
  readonly coef: number;
}

/** `Σ terms (sense) rhs`. */
export interface Constraint {
  /** Name of the row in the LP text, e.g. `stage2p0`. */
  readonly name: string;
  /** Left-hand side: the sum of these terms. */
  readonly terms: readonly LinearTerm[];
  /** How the left-hand side compares to `rhs`. */
  readonly sense: "<=" | ">=" | "=";
  /** Right-hand side, a constant. */
  readonly rhs: number;
}

/** A bounded variable, integer or continuous. */
export interface Variable {
  /** Name of the variable, as terms and the LP text refer to it. */
  readonly name: string;
  /** Lower bound (finite). */
  readonly lower: number;
  /** `Infinity` for no upper bound. */
  readonly upper: number;
  /** Whether the variable must take integer values. */
  readonly integer: boolean;
}

/** A mixed-integer linear program. */
export interface IntegerProgram {
  /** Whether the objective is minimised or maximised. */
  readonly sense: "minimize" | "maximize";
  /** The objective: the sum of these terms. */
  readonly objective: readonly LinearTerm[];
  /** Every row the solution must satisfy. */
  readonly constraints: readonly Constraint[];
  /** Every variable, with its bounds and integrality. */
  readonly variables: readonly Variable[];
}

/** Options of {@link splitProgram}. */
export interface SplitProgramOptions {
  /** Number of stages K. */
  readonly stages: number;
  /** Smallest n_i allowed (the paper's wording allows 0; 1 is the useful form). */
  readonly minLayers: number;
  /** Bytes per unit of the program's coefficients (see {@link byteUnit}). */
  readonly unit: number;
}

/** Name of the layer-count variable of stage i (1-based). */
export function layerVariable(stage: number): string {
  return `n${stage}`;
}

/**
 * Eq. 3 for K stages: variables n_1..n_K (integers) and t (bytes / unit).
 * Stage i's rows, one per moment of its step (one without activations):
 * perNew·n_i + perOld·Σ_{j<i} n_j − t ≤ −constant.
 */
export function splitProgram(problem: MemoryProblem, options: SplitProgramOptions): IntegerProgram {
  const { stages: K, minLayers, unit } = options;
  const L = problem.shape.layers;
  const n = Array.from({ length: K }, (_, i) => layerVariable(i + 1));
  const rows: Constraint[] = [{
    name: "depth",
    terms: n.map((variable) => ({ variable, coef: 1 })),
    sense: "=",
    rhs: L,
  }];
  for (let i = 1; i <= K; i++) {
    // One row per moment of the step: t bounds the largest.
    stageLinearForms(problem, i).forEach((form, p) => {
      const terms: LinearTerm[] = [];
      for (let j = 1; j < i; j++) {
        if (form.perOld !== 0) terms.push({ variable: layerVariable(j), coef: form.perOld / unit });
      }
      terms.push({ variable: layerVariable(i), coef: form.perNew / unit });
      terms.push({ variable: "t", coef: -1 });
      rows.push({ name: `stage${i}p${p}`, terms, sense: "<=", rhs: -form.constant / unit });
    });
  }
  const upper = L - (K - 1) * minLayers;
  return {
    sense: "minimize",
    objective: [{ variable: "t", coef: 1 }],
    constraints: rows,
    variables: [
      ...n.map((name) => ({ name, lower: minLayers, upper, integer: true })),
      { name: "t", lower: 0, upper: Infinity, integer: false },
    ],
  };
}

/**
 * The largest power of two dividing every coefficient and constant of the
 * stage rows (all integers of bytes). Solving in these units keeps the
 * numbers small without changing which split is optimal, and keeps
 * coefficients exact: dividing by a power of two is exact in floating point.
 */
export function byteUnit(problem: MemoryProblem, stages: number): number {
  const values: number[] = [];
  for (let i = 1; i <= stages; i++) {
    for (const f of stageLinearForms(problem, i)) values.push(f.perNew, f.perOld, f.constant);
  }
  let unit = 2 ** 40;
  for (const v of values) {
    if (v === 0) continue;
    if (!Number.isInteger(v)) return 1;
    while (unit > 1 && v % unit !== 0) unit /= 2;
  }
  return unit;
}

/** Renders a program in the CPLEX LP format (what HiGHS parses). */
export function toLpFormat(ip: IntegerProgram): string {
  const expr = (terms: readonly LinearTerm[]): string =>
    terms.length === 0 ? "0" : terms.map((t, i) => {
      const sign = t.coef < 0 ? "-" : i === 0 ? "" : "+";
      return `${sign} ${num(Math.abs(t.coef))} ${t.variable}`.trim();
    }).join(" ");
  const lines = [ip.sense === "minimize" ? "Minimize" : "Maximize", ` obj: ${expr(ip.objective)}`];
  lines.push("Subject To");
  for (const c of ip.constraints) {
    lines.push(` ${c.name}: ${expr(c.terms)} ${c.sense} ${num(c.rhs)}`);
  }
  lines.push("Bounds");
  for (const v of ip.variables) {
    lines.push(
      v.upper === Infinity
        ? ` ${v.name} >= ${num(v.lower)}`
        : ` ${num(v.lower)} <= ${v.name} <= ${num(v.upper)}`,
    );
  }
  const ints = ip.variables.filter((v) => v.integer).map((v) => v.name);
  if (ints.length > 0) lines.push("General", ` ${ints.join(" ")}`);
  lines.push("End");
  return lines.join("\n");
}

// LP-format readers choke on exponents like 1e+21 less than on long digits; keep full precision.
function num(x: number): string {
  return Number.isInteger(x) ? x.toFixed(0) : x.toPrecision(17);
}
