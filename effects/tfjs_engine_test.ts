/**
 * The tfjs engine at the seam: a stage boundary through it (snapshot → surgery → load →
 * snapshot) gives exactly the pure functions' snapshots, and a retired state handle is refused
 * by name — after a step, a ReLoRA restart or dispose — never used.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import type * as TE from "fp-ts/lib/TaskEither.js";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "../tests/assert.ts";
import {
  adaptedWeights,
  grownStageRoles,
  grownTrainable,
  type LlamaShape,
  stageTrainable,
  withDefaults,
} from "../base/mod.ts";
import {
  attachedSnapshot,
  type EngineSnapshot,
  grownSnapshot,
  initialSnapshot,
  mergedSnapshot,
} from "../checkpoint/mod.ts";
import { initBackend } from "../kernels/mod.ts";
import {
  type Engine,
  type EngineState,
  type MicroBatch,
  type StepHyper,
  TorchCodec,
} from "../pipeline/mod.ts";
import { engineOn } from "./tfjs_engine.ts";
import { createTorchEngine } from "./torch_engine.ts";

const SHAPE: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 3,
  vocab: 19,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 16,
};
const BATCH: MicroBatch = {
  tokens: Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 19),
  targets: Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 5) % 19),
  batch: 2,
  seq: 8,
};
const HYPER: StepHyper = {
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  clip: 1,
  recompute: "none",
};
const ROLES = grownStageRoles(2, 2, 1, {
  placement: "upper",
  seed: 0,
  targets: ["q", "down"],
  trainEmbeddings: false,
});

async function ok<A>(te: TE.TaskEither<{ readonly message: string }, A>): Promise<A> {
  const r = await te();
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
}

function right<A>(e: E.Either<string, A>): A {
  if (E.isLeft(e)) throw new Error(e.left);
  return e.right;
}

/** The engine's model after two steps from the initial snapshot. */
async function trained(engine: Engine): Promise<EngineState> {
  let s = await ok(engine.load(SHAPE, initialSnapshot(SHAPE, 2, 4)));
  for (let i = 0; i < 2; i++) s = (await ok(engine.step(s, [BATCH], HYPER))).state;
  return s;
}

/** Snapshot → `transform` → load → snapshot: what the engine holds after the boundary. */
async function acrossBoundary(
  engine: Engine,
  s: EngineState,
  transform: (snap: EngineSnapshot) => EngineSnapshot,
): Promise<{ readonly pure: EngineSnapshot; readonly held: EngineSnapshot; next: EngineState }> {
  const snap = await ok(engine.snapshot(s));
  engine.dispose(s);
  const pure = transform(snap);
  const next = await ok(engine.load(SHAPE, pure));
  return { pure, held: await ok(engine.snapshot(next)), next };
}

Deno.test("tfjs engine: a stage boundary holds exactly the surgery's snapshots, and leaks nothing", async () => {
  assert(E.isRight(await initBackend("cpu")));
  const engine = engineOn("cpu");
  const before = tf.memory().numTensors;
  const grown = await acrossBoundary(
    engine,
    await trained(engine),
    (snap) =>
      right(grownSnapshot(snap, {
        add: 1,
        placement: "upper",
        seed: 0,
        trainable: grownTrainable(ROLES),
      })),
  );
  assertEquals(grown.held, grown.pure);
  const attached = await acrossBoundary(engine, grown.next, (snap) =>
    right(attachedSnapshot(snap, {
      rank: 2,
      alpha: 4,
      seed: 9,
      adapted: adaptedWeights(ROLES),
      trainable: stageTrainable(ROLES, SHAPE),
    })));
  assertEquals(attached.held, attached.pure);
  let s = attached.next;
  for (let i = 0; i < 2; i++) s = (await ok(engine.step(s, [BATCH], HYPER))).state;
  const adaptedLoss = await ok(engine.evaluate(s, [BATCH]));
  const merged = await acrossBoundary(engine, s, mergedSnapshot);
  assertEquals(merged.held, merged.pure);
  // Merging keeps the function (up to float32 rounding of the merged weights).
  const mergedLoss = await ok(engine.evaluate(merged.next, [BATCH]));
  assert(Math.abs(mergedLoss - adaptedLoss) < 1e-5, `${mergedLoss} vs ${adaptedLoss}`);
  engine.dispose(merged.next);
  assertEquals(tf.memory().numTensors, before);
});

async function refusal(te: TE.TaskEither<{ readonly message: string }, unknown>): Promise<string> {
  const r = await te();
  assert(E.isLeft(r), "a retired state was used");
  return r.left.message;
}

Deno.test("tfjs engine: a state replaced by a step, a restart or dispose is refused by name", async () => {
  assert(E.isRight(await initBackend("cpu")));
  const engine = engineOn("cpu");
  const before = tf.memory().numTensors;
  const s0 = await trained(engine);
  const { state: s1 } = await ok(engine.step(s0, [BATCH], HYPER));
  for (
    const message of [
      await refusal(engine.step(s0, [BATCH], HYPER)),
      await refusal(engine.evaluate(s0, [BATCH])),
      await refusal(engine.snapshot(s0)),
      await refusal(engine.reset(s0, { pruneRatio: 0.5, seed: 1 })),
    ]
  ) {
    assertStringIncludes(message, `tfjs engine: state #${s0.id} was used after a training step`);
  }
  assertThrows(() => engine.dispose(s0), "a retired state is not disposed twice");
  const { state: s2 } = await ok(engine.reset(s1, { pruneRatio: 0.5, seed: 1 }));
  assertStringIncludes(await refusal(engine.evaluate(s1, [BATCH])), "after a ReLoRA restart");
  engine.dispose(s2);
  assertStringIncludes(await refusal(engine.evaluate(s2, [BATCH])), "after dispose");
  // A handle another engine issued names nothing here.
  assertStringIncludes(
    await refusal(engineOn("cpu").evaluate(s2, [BATCH])),
    "is not one it issued",
  );
  assertEquals(tf.memory().numTensors, before);
});

Deno.test("torch engine: a disposed state is refused by name before any launch", async () => {
  const workDir = await Deno.makeTempDir();
  const engine = createTorchEngine({
    settings: withDefaults(TorchCodec, {}),
    python: "/nonexistent/python3",
    torchVersion: "0",
    workDir,
    tokens: undefined,
    threads: 1,
  });
  const s = await ok(engine.load(SHAPE, initialSnapshot(SHAPE, 2, 4)));
  assertEquals(await ok(engine.snapshot(s)), initialSnapshot(SHAPE, 2, 4));
  engine.dispose(s);
  assertStringIncludes(
    await refusal(engine.step(s, [BATCH], HYPER)),
    `torch engine: state #${s.id} was used after dispose retired it`,
  );
  assertThrows(() => engine.dispose(s));
  await engine.shutdown?.();
  await Deno.remove(workDir, { recursive: true });
});
