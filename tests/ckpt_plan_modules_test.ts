/**
 * `deno task plan --modules`: the per-stage module lists through the CLI, and
 * the same lists checked against what the model that every engine loads trains, freezes and
 * adapts after `grownSnapshot` and `attachedSnapshot` (`checkpoint/surgery.ts`).
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { main as plan } from "../cli/plan.ts";
import { stageModules } from "../pipeline/plan_modules.ts";
import type { Placement } from "../base/growth_layout.ts";
import {
  adaptedWeights,
  grownStageRoles,
  grownTrainable,
  stageTrainable,
} from "../base/stage_roles.ts";
import {
  attachedSnapshot,
  type EngineSnapshot,
  grownSnapshot,
  initialSnapshot,
} from "../checkpoint/mod.ts";
import { type LlamaShape, type Projection, PROJECTIONS } from "../base/llama_shape.ts";
import { capture, type Captured } from "./cli_capture.ts";

const CONFIGS = new URL("../examples/configs", import.meta.url).pathname;

function planCli(args: string[]): Promise<Captured> {
  return capture(plan, args);
}

Deno.test("plan --modules --json adds each stage's module lists", async () => {
  const r = await planCli([`${CONFIGS}/tiny-step.yaml`, "--split", "2,2", "--modules", "--json"]);
  assertEquals(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assertEquals(j.split, [2, 2]);
  assertEquals(j.modules.length, 2);
  const [s1, s2] = j.modules;
  assertEquals([s1.stage, s1.layers, s1.frozen.length, s1.trainable.length], [1, 2, 0, 21]);
  assertEquals(s2.newLayers, [1, 3]);
  assertEquals(s2.adapted.length, 14);
  assertEquals(s2.peft, {
    r: 8,
    lora_alpha: 16,
    target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    layers_to_transform: [0, 2],
    layers_pattern: "layers",
  });
  const plain = JSON.parse((await planCli([`${CONFIGS}/tiny-step.yaml`, "--json"])).out);
  assertEquals(plain.modules, undefined);
});

Deno.test("plan --modules prints one module per line after the plan", async () => {
  const r = await planCli([`${CONFIGS}/paper-680m.yaml`, "--modules"]);
  assertEquals(r.code, 0, r.err);
  assertStringIncludes(r.out, "Stage 2: 24 layers, new: 5, 7, 9, 11, 13, 15, 17, 19, 21, 23");
  assertStringIncludes(r.out, "\n    model.layers.23.mlp.down_proj\n");
  assertStringIncludes(r.out, "layers_to_transform=[0,1,2,3,4,6,8,10,12,14,16,18,20,22]");
});

const SHAPE: LlamaShape = {
  hidden: 8,
  intermediate: 12,
  heads: 2,
  kvHeads: 2,
  layers: 6,
  vocab: 11,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 8,
};

function module(name: string): string {
  return name.replace(/\.(weight|lora_A|lora_B)$/, "");
}

Deno.test("stageModules() names what the loaded model trains, freezes and adapts", () => {
  const cases: [number[], Placement, readonly Projection[], boolean][] = [
    [[2, 2], "upper", PROJECTIONS, false],
    [[3, 2, 1], "uniform", ["q", "v"], false],
    [[1, 2, 3], "random", ["down", "k"], true],
    [[4, 2], "lower", PROJECTIONS, true],
  ];
  for (const [split, placement, targets, trainEmbeddings] of cases) {
    const seed = 13;
    const expected = stageModules(split, {
      placement,
      seed,
      targets,
      rank: 2,
      alpha: 4,
      trainEmbeddingsAfterStage1: trainEmbeddings,
      tiedEmbeddings: false,
    });
    let state: EngineSnapshot = initialSnapshot(SHAPE, split[0]!, 0);
    let depth = split[0]!;
    for (const [i, s] of expected.entries()) {
      if (i > 0) {
        const roles = grownStageRoles(i + 1, depth, split[i]!, {
          placement,
          seed,
          targets,
          trainEmbeddings,
        });
        depth += split[i]!;
        const grown = grownSnapshot(state, {
          add: split[i]!,
          placement,
          seed,
          trainable: grownTrainable(roles),
        });
        const attached = E.flatMap((g: EngineSnapshot) =>
          attachedSnapshot(g, {
            rank: 2,
            alpha: 4,
            seed,
            adapted: adaptedWeights(roles),
            trainable: stageTrainable(roles, SHAPE),
          })
        )(grown);
        assert(E.isRight(attached));
        state = attached.right;
      }
      const names = state.params.map((p) => p.name);
      const trains = new Set(state.meta.trainable);
      const adapters = names.filter((n) => n.endsWith(".lora_A")).map(module);
      const trainable = names.filter((n) => !n.includes(".lora_") && trains.has(n)).map(module);
      const frozen = names.filter((n) => !n.includes(".lora_") && !trains.has(n)).map(module);
      const where = `${split} ${placement} stage ${s.stage}`;
      assertEquals([...s.trainable].sort(), trainable.sort(), where);
      assertEquals([...s.frozen].sort(), frozen.sort(), where);
      assertEquals([...s.adapted].sort(), adapters.sort(), where);
    }
  }
});
