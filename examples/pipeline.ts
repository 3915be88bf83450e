/**
 * The README's main job: plan a tiny two-stage STEP run with the integer
 * program, turn the plan into a stage graph, and hand it to `deno task run`.
 *
 * `deno task run examples/pipeline.ts [--out DIR]`
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import {
  loadHighs,
  makePlan,
  parseConfig,
  type Pipeline,
  type PipelineError,
  planToGraph,
} from "../mod.ts";

const CONFIG = new URL("./configs/tiny-step.yaml", import.meta.url);

/** Plans `configs/tiny-step.yaml` and returns its stage graph. */
export async function pipeline(): Promise<E.Either<PipelineError, Pipeline>> {
  const config = parseConfig(await Deno.readTextFile(CONFIG), CONFIG.pathname);
  if (E.isLeft(config)) return config;
  const c = config.right;
  const plan = makePlan(await loadHighs(), {
    problem: { shape: c.shape, adapter: c.pet, assumptions: c.memory },
    galore: c.galore,
    minLayers: c.plan.minLayers,
    mode: { kind: "optimal", stages: c.plan.stages },
    budget: c.budget,
  });
  return E.map((p: Parameters<typeof planToGraph>[1]) => planToGraph(c, p))(plan);
}
