/**
 * A model's parameter counts and its accounted state by role, from a snapshot's names, shapes
 * and trainable list (no engine): what the interpreter prints when a stage starts, what a
 * stage record falls back to when no step of it ran in this session, and what the torch
 * engine reports when its trainer does not.
 *
 * @module
 */
import { isAdapterName } from "../base/mod.ts";
import { depthOf, type ParamShape } from "../checkpoint/mod.ts";
import type { ModelStats } from "./effects.ts";
import type { AccountedState } from "./metrics_records.ts";

const FLOAT_BYTES = 4;

/** Counts by role and the model state they account for. */
export interface ModelAccount {
  /** Parameter counts by role. */
  readonly stats: ModelStats;
  /** Float32 model state by role where a step peaks: every trained tensor's gradient alive. */
  readonly state: AccountedState;
}

/**
 * Counts and float32 state bytes by role (the roles of `AccountedStateCodec`) of `params` when
 * `trainable` trains: weights, a gradient and Adam's two moments for each trained tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { accountModel } from "./model_account.ts";
 * const a = accountModel([
 *   { name: "model.layers.0.mlp.up_proj.weight", shape: [2, 3] },
 *   { name: "model.layers.0.mlp.up_proj.lora_A", shape: [2, 1] },
 *   { name: "model.layers.0.mlp.up_proj.lora_B", shape: [1, 3] },
 * ], ["model.layers.0.mlp.up_proj.lora_A", "model.layers.0.mlp.up_proj.lora_B"]);
 * assert(a.stats.frozenParams === 6 && a.stats.adapterParams === 5);
 * assert(a.state.total === 4 * (6 + 5 + 5 + 2 * 5));
 * ```
 */
export function accountModel(
  params: readonly ParamShape[],
  trainable: readonly string[],
): ModelAccount {
  const trains = new Set(trainable);
  let trainableParams = 0;
  let frozenParams = 0;
  let adapterParams = 0;
  let adaptersTrained = 0;
  for (const p of params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (isAdapterName(p.name)) {
      adapterParams += n;
      if (trains.has(p.name)) adaptersTrained += n;
    } else if (trains.has(p.name)) trainableParams += n;
    else frozenParams += n;
  }
  const trained = trainableParams + adaptersTrained;
  const roles = {
    trainableWeights: trainableParams * FLOAT_BYTES,
    gradients: trained * FLOAT_BYTES,
    optimizer: 2 * trained * FLOAT_BYTES,
    frozen: frozenParams * FLOAT_BYTES,
    adapters: adapterParams * FLOAT_BYTES,
  };
  return {
    stats: {
      layers: depthOf(params.map((p) => p.name)),
      trainableParams,
      frozenParams,
      adapterParams,
    },
    state: { ...roles, total: Object.values(roles).reduce((a, b) => a + b, 0) },
  };
}
