/**
 * `deno task compare`'s runs, as stage graphs: from one config (model shape, compute budget,
 * corpus) the methods STEP is compared with — standard pre-training, ReLoRA, GaLore — and STEP
 * with K stages, each given the same compute under the chosen accounting (`paper`: 6·N trained +
 * 2·N frozen per token; `executed`: the matmuls the engine runs). Pure: the STEP splits come from
 * the planner, run by the caller.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ConfigInvalid, configInvalid, type ext, type GraphInvalid } from "../base/mod.ts";
import { shareWeights } from "../solvers/mod.ts";
import type { Config, FlopsAccounting } from "./config.ts";
import { type RunFlops, runFlops, stagePricesPerToken } from "./run_flops.ts";
import { stepNodes } from "./plan_to_graph.ts";
import {
  attachPET,
  continueTraining,
  decodePipeline,
  evaluate,
  type Pipeline,
  type StageNode,
  train,
} from "./stage_graph.ts";
import { validateGraph, type ValidGraph } from "./validate_graph.ts";

/** A method of the comparison. */
export type CompareMethod =
  | { readonly kind: "standard" }
  | { readonly kind: "relora" }
  | { readonly kind: "galore" }
  | { readonly kind: "step"; readonly stages: number };

/** `standard`, `relora`, `galore`, `step-3`. */
export function methodName(m: CompareMethod): string {
  return m.kind === "step" ? `step-${m.stages}` : m.kind;
}

/** Reads method names, refusing unknown ones and STEP deeper than the model. */
export function parseMethods(
  names: readonly string[],
  layers: number,
  where: string,
): ext.Either<ConfigInvalid, CompareMethod[]> {
  if (names.length === 0) return E.left(configInvalid(where, "no methods given"));
  const out: CompareMethod[] = [];
  for (const name of names) {
    const step = /^step-(\d+)$/.exec(name);
    const m: CompareMethod | undefined = name === "standard" || name === "relora" ||
        name === "galore"
      ? { kind: name }
      : step === null
      ? undefined
      : { kind: "step", stages: Number(step[1]) };
    if (m === undefined) {
      return E.left(configInvalid(
        where,
        `unknown method "${name}": expected standard, relora, galore or step-K (K ≥ 2 stages)`,
      ));
    }
    if (m.kind === "step" && (m.stages < 2 || m.stages > layers)) {
      return E.left(configInvalid(
        where,
        `"${name}": STEP needs 2 to ${layers} stages on a ${layers}-layer model (one layer or more per stage)`,
      ));
    }
    if (out.some((o) => methodName(o) === name)) {
      return E.left(configInvalid(where, `"${name}" is listed twice`));
    }
    out.push(m);
  }
  return E.right(out);
}

/** One run of the comparison: a method with a seed, its graph and its compute. */
export interface CompareRun {
  /** Directory name under `DIR/runs/`: `<method>-s<seed>`. */
  readonly id: string;
  /** The method's name: `standard`, `relora`, `galore` or `step-K`. */
  readonly method: string;
  /** The seed's number among the method's runs, from 0 (added to `training.seed`). */
  readonly seed: number;
  /** The run's stage graph. */
  readonly graph: Pipeline;
  /** The compute the run spends, in both accountings. */
  readonly flops: RunFlops;
}

/** Everything the comparison runs, and the compute each run was given. */
export interface ComparePlan {
  /** The compute every run matches. */
  readonly flops: number;
  /** How a token was charged in matching it. */
  readonly accounting: FlopsAccounting;
  /** Every run: each method with each of its seeds. */
  readonly runs: readonly CompareRun[];
}

/** What building the graphs needs beyond the config. */
export interface CompareInputs {
  /** The methods compared (`parseMethods`). */
  readonly methods: readonly CompareMethod[];
  /** Seeds per method: one count for all, or a count per method name (1 for the others). */
  readonly seeds: number | Readonly<Record<string, number>>;
  /** STEP's split for each K in `methods`, from the planner. */
  readonly splits: ReadonlyMap<number, readonly number[]>;
}

/** Why the comparison's graphs cannot be built: a config they refuse, or a graph that fails validation. */
export type CompareProblem = ConfigInvalid | GraphInvalid;

/** The per-stage nodes of a method, for given steps per stage. */
interface Skeleton {
  /** Fractions of the compute each stage gets. */
  readonly shares: readonly number[];
  /** The nodes, given each stage's steps and schedule length. */
  nodes(steps: readonly number[]): StageNode[];
}

function skeleton(
  config: Config,
  method: CompareMethod,
  split: readonly number[] | undefined,
): Skeleton {
  const L = config.shape.layers;
  const T = config.training;
  const warmup = (length: number) => Math.min(T.warmup, Math.max(0, length - 1));
  switch (method.kind) {
    case "standard":
      return {
        shares: [1],
        nodes: ([s]) => [train({ id: "standard", layers: L, steps: s! })],
      };
    case "galore": {
      const g = config.galore;
      return {
        shares: [1],
        nodes: ([s]) => [train({
          id: "galore",
          layers: L,
          steps: s!,
          lr: g.lr ?? T.lr / g.scale,
          galore: {
            rank: g.rank,
            updateEvery: g.updateEvery,
            scale: g.scale,
            targets: [...g.targets],
          },
        })],
      };
    }
    case "relora": {
      const w = config.compare.reloraWarmStart;
      const p = config.pet;
      return {
        shares: [w, 1 - w],
        nodes: ([warm, lora]) => {
          const length = warm! + lora!;
          return [
            train({
              id: "warm-start",
              layers: L,
              steps: warm!,
              scheduleSteps: length,
              warmup: warmup(length),
            }),
            attachPET({
              id: "lora",
              kind: "relora",
              rank: p.rank,
              alpha: p.alpha,
              targets: [...p.targets],
              resetEvery: p.resetEvery,
              restartWarmup: Math.min(p.restartWarmup, p.resetEvery - 1),
              pruneRatio: p.pruneRatio,
              trainEmbeddings: true,
              trainNorms: true,
            }),
            continueTraining({
              id: "relora",
              steps: lora!,
              scheduleSteps: length,
              scheduleOffset: warm!,
              warmup: warmup(length),
            }),
          ];
        },
      };
    }
    case "step": {
      const sp = split ?? [];
      const growAt = config.budget.growAt;
      return {
        shares: normalised(shareWeights(config.budget.share, sp)),
        nodes: (steps) =>
          stepNodes(
            config,
            sp,
            steps.map((s, idx) => ({
              steps: s,
              scheduleSteps: idx === sp.length - 1 ? s : Math.max(s, Math.round(s / growAt)),
            })),
          ),
      };
    }
  }
}

function normalised(w: readonly number[]): number[] {
  const sum = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / sum);
}

/** The compute every run gets: `budget.flops`, or standard pre-training's steps priced. */
export function compareBudget(
  config: Config,
  accounting: FlopsAccounting,
): ext.Either<CompareProblem, number> {
  const total = config.budget.total;
  if (total.kind === "flops") return E.right(total.flops);
  const probe = graphOf(config, { kind: "standard" }, undefined, 0, [1]);
  if (E.isLeft(probe)) return probe;
  const perToken = stagePricesPerToken(probe.right, accounting)[0] ?? 0;
  return E.right(perToken * total.steps * config.training.batchTokens);
}

function graphOf(
  config: Config,
  method: CompareMethod,
  split: readonly number[] | undefined,
  seed: number,
  steps: readonly number[],
): ext.Either<CompareProblem, ValidGraph> {
  const sk = skeleton(config, method, split);
  const second = config.compare.secondCorpus;
  const evalNodes: StageNode[] = second === undefined ? [] : [evaluate({
    id: "second-corpus",
    source: second,
    label: config.compare.secondLabel,
    batches: config.compare.secondBatches,
  })];
  const name = `${methodName(method)}-s${seed}`;
  const doc = {
    version: 1,
    name,
    model: { ...config.shape },
    training: { ...config.training, seed: config.training.seed + seed },
    data: config.data,
    nodes: [...sk.nodes(steps), ...evalNodes],
  };
  const decoded = decodePipeline(doc, `compare: ${name}`);
  if (E.isLeft(decoded)) return decoded;
  return validateGraph(decoded.right);
}

/**
 * Every run's graph, each stage given its share of the compute at its own per-token price. A
 * stage whose share buys less than one step is an error naming the method and the stage.
 */
export function comparePlan(
  config: Config,
  inputs: CompareInputs,
): ext.Either<CompareProblem, ComparePlan> {
  const accounting = config.budget.accounting;
  const budget = compareBudget(config, accounting);
  if (E.isLeft(budget)) return budget;
  const C = budget.right;
  const B = config.training.batchTokens;
  const runs: CompareRun[] = [];
  for (const method of inputs.methods) {
    const split = method.kind === "step" ? inputs.splits.get(method.stages) : undefined;
    if (method.kind === "step" && split === undefined) {
      return E.left(configInvalid("compare.methods", `no split planned for ${methodName(method)}`));
    }
    const sk = skeleton(config, method, split);
    // Prices per token do not depend on the steps: probe with one step per stage.
    const probe = graphOf(config, method, split, 0, sk.shares.map(() => 1));
    if (E.isLeft(probe)) return probe;
    const prices = stagePricesPerToken(probe.right, accounting);
    const steps: number[] = [];
    for (const [i, share] of sk.shares.entries()) {
      const n = Math.round((C * share) / ((prices[i] ?? 1) * B));
      if (n < 1) {
        return E.left(configInvalid(
          "budget",
          `${methodName(method)}: stage ${i + 1} gets ${(C * share).toExponential(3)} FLOPs, ` +
            `less than one step (${
              ((prices[i] ?? 0) * B).toExponential(3)
            } FLOPs); raise the budget`,
        ));
      }
      steps.push(n);
    }
    const count = typeof inputs.seeds === "number"
      ? inputs.seeds
      : inputs.seeds[methodName(method)] ?? 1;
    // Seeds are added to `training.seed`.
    for (let seed = 0; seed < count; seed++) {
      const g = graphOf(config, method, split, seed, steps);
      if (E.isLeft(g)) return g;
      runs.push({
        id: `${methodName(method)}-s${seed}`,
        method: methodName(method),
        seed,
        graph: g.right.pipeline,
        flops: runFlops(g.right, accounting),
      });
    }
  }
  return E.right({ flops: C, accounting, runs });
}

/** What `DIR/graphs/<id>.yaml` holds: nothing, a graph (its fingerprint), or no readable graph. */
export type GraphFileState =
  | { readonly kind: "absent" }
  | { readonly kind: "graph"; readonly graphId: string }
  | { readonly kind: "damaged"; readonly reason: string };

/** One run's graph evidence in a comparison folder, against the graph the config gives now. */
export interface RunGraphEvidence {
  /** The graph file, as the folder names it (`DIR/graphs/<id>.yaml`). */
  readonly graphFile: string;
  /** What the graph file holds. */
  readonly graphFileState: GraphFileState;
  /** The run directory (`DIR/runs/<id>`). */
  readonly runDir: string;
  /** Whether the run directory exists. */
  readonly started: boolean;
  /**
   * The fingerprint of the graph the run itself recorded (its `pipeline.yaml` when it finished,
   * else its checkpoint's progress) and the file it was read from; none before a checkpoint.
   */
  readonly recorded?: { readonly graphId: string; readonly file: string };
  /** The fingerprint of the graph the config gives now. */
  readonly now: string;
}

/** What to do with a run's graph file before the run goes on. */
export type GraphFileVerdict =
  | { readonly kind: "keep" }
  | { readonly kind: "write"; readonly note?: string }
  | { readonly kind: "refuse"; readonly error: ConfigInvalid };

/**
 * Whether a comparison folder's run may go on under the config's graph. The run's own record
 * decides: when it differs from the config's graph the config changed, and going on would mix
 * two graphs in one run. The graph file is only derived from the config, so a damaged one (or
 * one that disagrees with a run's matching record) is rewritten, with a note naming it; it
 * speaks for the run only when the run has recorded nothing yet.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { graphFileVerdict } from "./compare_plan.ts";
 * const v = graphFileVerdict({
 *   graphFile: "out/graphs/standard-s0.yaml",
 *   graphFileState: { kind: "damaged", reason: "not valid YAML" },
 *   runDir: "out/runs/standard-s0",
 *   started: true,
 *   recorded: { graphId: "00c0ffee", file: "out/runs/standard-s0/checkpoint/state.json" },
 *   now: "00c0ffee",
 * });
 * assert(v.kind === "write" && v.note?.includes("out/graphs/standard-s0.yaml"));
 * ```
 */
export function graphFileVerdict(x: RunGraphEvidence): GraphFileVerdict {
  const changed = (was: string): GraphFileVerdict => ({
    kind: "refuse",
    error: configInvalid(
      x.runDir,
      `was started from a different graph than the config now gives (${was}; the config ` +
        `gives graph ${x.now}): the config changed since. Restore the config, or use another ` +
        "--out for the new one",
    ),
  });
  const file = x.graphFileState;
  if (x.recorded !== undefined && x.recorded.graphId !== x.now) {
    return changed(`${x.recorded.file} records graph ${x.recorded.graphId}`);
  }
  if (x.recorded === undefined && x.started && file.kind === "graph" && file.graphId !== x.now) {
    return changed(`${x.graphFile}, which it was started from, is graph ${file.graphId}`);
  }
  const why = x.recorded !== undefined
    ? `, which gives the graph ${x.recorded.file} records`
    : x.started
    ? ` (${x.runDir} has no checkpoint yet: it starts again)`
    : "";
  if (file.kind === "damaged") {
    return {
      kind: "write",
      note: `${x.graphFile} is damaged (${file.reason}); rebuilt from the config${why}`,
    };
  }
  if (file.kind === "graph" && file.graphId !== x.now) {
    return {
      kind: "write",
      note:
        `${x.graphFile} held graph ${file.graphId}, not the run's; rebuilt from the config${why}`,
    };
  }
  return file.kind === "absent" ? { kind: "write" } : { kind: "keep" };
}
