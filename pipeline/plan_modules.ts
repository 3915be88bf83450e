/**
 * Which modules train, which are frozen and which carry adapters in each
 * stage of a plan, named as PyTorch names them in `LlamaForCausalLM`
 * (`model.embed_tokens`, `model.layers.3.self_attn.q_proj`, `model.norm`,
 * `lm_head`), so a stage can run on any trainer that freezes by module name.
 *
 * The rules are `base/stage_roles.ts`'s, the ones the engine applies. An
 * adapted module is listed as frozen too: its base weight is frozen, its
 * adapter trains.
 *
 * @module
 */
import {
  layerWeightNames,
  outsideWeightNames,
  type Placement,
  type Projection,
  projectionModule,
  splitRoles,
} from "../base/mod.ts";

/** Options of {@link stageModules}. */
export interface StageModulesOptions {
  /** Where growth puts the new layers. */
  readonly placement: Placement;
  /** Seed of the `random` placement (the run's `training.seed`). */
  readonly seed: number;
  /** Projections that get adapters. */
  readonly targets: readonly Projection[];
  /** The adapters' rank r. */
  readonly rank: number;
  /** The adapters' α (their output is scaled by α / r). */
  readonly alpha: number;
  /** Whether embeddings, final norm and LM head keep training after stage 1. */
  readonly trainEmbeddingsAfterStage1: boolean;
  /** A tied LM head is the embedding: no separate `lm_head` entry. */
  readonly tiedEmbeddings: boolean;
}

/** PEFT's LoraConfig arguments that adapt exactly the stage's adapted modules. */
export interface PeftTargets {
  /** The adapters' rank. */
  readonly r: number;
  /** The adapters' α. */
  readonly lora_alpha: number;
  /** Projection names adapted (`q_proj`, …). */
  readonly target_modules: readonly string[];
  /** Indices of the layers adapted. */
  readonly layers_to_transform: readonly number[];
  /** The name of the module list those indices count in. */
  readonly layers_pattern: "layers";
}

/** Module roles of one stage. */
export interface StageModules {
  /** The stage's number, from 1. */
  readonly stage: number;
  /** Depth during the stage. */
  readonly layers: number;
  /** Indices (in this stage's numbering) of the layers this stage added. */
  readonly newLayers: readonly number[];
  /** Modules whose weights train at full rank. */
  readonly trainable: readonly string[];
  /** Modules whose weights do not train, adapted ones included. */
  readonly frozen: readonly string[];
  /** Frozen modules that carry a trainable LoRA adapter. */
  readonly adapted: readonly string[];
  /** The adapters as PEFT arguments; null in stage 1 and when nothing is adapted. */
  readonly peft: PeftTargets | null;
}

function moduleOf(weight: string): string {
  return weight.slice(0, -".weight".length);
}

/**
 * Module roles per stage of a split (layers added per stage, stage 1 first).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stageModules } from "./plan_modules.ts";
 * const [, s2] = stageModules([2, 1], {
 *   placement: "upper", seed: 0, targets: ["q", "v"], rank: 8, alpha: 16,
 *   trainEmbeddingsAfterStage1: false, tiedEmbeddings: true,
 * });
 * assert(s2!.newLayers[0] === 2 && s2!.adapted[0] === "model.layers.0.self_attn.q_proj");
 * ```
 */
export function stageModules(
  split: readonly number[],
  options: StageModulesOptions,
): StageModules[] {
  const [embed, ...last] = outsideWeightNames(options.tiedEmbeddings).map(moduleOf);
  const roles = splitRoles(split, () => ({
    placement: options.placement,
    seed: options.seed,
    targets: options.targets,
    trainEmbeddings: options.trainEmbeddingsAfterStage1,
  }));
  return roles.map((r) => {
    const fresh = new Set(r.newLayers);
    const trainable: string[] = [];
    const frozen: string[] = [];
    const adapted: string[] = [];
    (r.embeddingsTrain ? trainable : frozen).push(embed!);
    for (let layer = 0; layer < r.layers; layer++) {
      const modules = layerWeightNames(layer).map(moduleOf);
      if (fresh.has(layer)) {
        trainable.push(...modules);
        continue;
      }
      frozen.push(...modules);
      adapted.push(...r.targets.map((p) => projectionModule(layer, p)));
    }
    (r.embeddingsTrain ? trainable : frozen).push(...last);
    return {
      stage: r.stage,
      layers: r.layers,
      newLayers: r.newLayers,
      trainable,
      frozen,
      adapted,
      peft: adapted.length === 0 ? null : {
        r: options.rank,
        lora_alpha: options.alpha,
        target_modules: r.targets.map((p) => `${p}_proj`),
        layers_to_transform: r.frozenLayers,
        layers_pattern: "layers",
      },
    };
  });
}

/**
 * The per-stage lists as text: one module per line, so they can be pasted into a trainer's
 * freezing code.
 */
export function stageModulesText(stages: readonly StageModules[]): string {
  const lines = [
    "Modules per stage (PyTorch names in LlamaForCausalLM; an adapted module's base weight is",
    "frozen and its LoRA adapter trains)",
  ];
  for (const s of stages) {
    lines.push(
      "",
      `Stage ${s.stage}: ${s.layers} layers, new: ${
        s.newLayers.length === 0 ? "none" : s.newLayers.join(", ")
      }`,
    );
    for (
      const [label, list] of [["trainable", s.trainable], ["frozen", s.frozen], [
        "adapted",
        s.adapted,
      ]] as const
    ) {
      lines.push(`  ${label} (${list.length}):`, ...list.map((m) => `    ${m}`));
    }
    if (s.peft !== null) {
      const p = s.peft;
      lines.push(
        `  peft: LoraConfig(r=${p.r}, lora_alpha=${p.lora_alpha}, target_modules=${
          JSON.stringify(p.target_modules)
        }, ` +
          `layers_to_transform=${JSON.stringify(p.layers_to_transform)}, layers_pattern="layers")`,
      );
    }
  }
  return lines.join("\n");
}
