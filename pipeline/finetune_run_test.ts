/**
 * `runFinetune` on fake effects (no tensors): the LR of every step against the schedule worked
 * out by hand, the records and lines the fold writes in fine-tuning's voice, a run stopped and
 * resumed against the uninterrupted one, and the refusals (broken base, divergence, a changed
 * setting), with every model the engine loaded disposed whatever happens.
 */
import * as E from "fp-ts/lib/Either.js";
import * as TE from "fp-ts/lib/TaskEither.js";
import { assert, assertAlmostEquals, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { completeShape, kernelFailed, type LlamaShape } from "../base/mod.ts";
import { initialSnapshot } from "../checkpoint/mod.ts";
import { byteTokenizer, encodeAlpacaSet, type SftSet } from "../data/mod.ts";
import { instructionData } from "../effects/instruction_data.ts";
import type {
  Checkpoint,
  Engine,
  EngineSnapshot,
  EngineState,
  Env,
  StepOutcome,
} from "./effects.ts";
import { finetuneGraph } from "./finetune_graph.ts";
import { type FinetunePlan, finetunePlan, plannedStep } from "./finetune_plan.ts";
import { type FinetuneJob, type FinetuneOutcome, runFinetune } from "./finetune_run.ts";
import { decodeFinetune, finetuneRecord } from "./finetune_settings.ts";
import type { FinetuneMetric } from "./metrics_records.ts";
import type { PipelineError } from "../base/mod.ts";

const SHAPE: LlamaShape = completeShape(
  { hidden: 8, intermediate: 16, heads: 2, layers: 1, vocab: 257, maxSeqLen: 256 } as never,
);
const ROLES = { trainableWeights: 0, gradients: 0, optimizer: 0, frozen: 0, adapters: 0, total: 0 };

/** How the fake engine's steps go: its loss is 1 + the first weight, unless `nan` says not. */
type Losses = (call: number) => "finite" | "nan";

/**
 * A model is its snapshot; a step moves the first weight by −LR (a skipped step leaves it), so
 * the weights after a run say which steps updated them. Handles are used once, as a real
 * engine's are.
 */
function fakeEngine(losses: Losses = () => "finite") {
  const live = new Map<EngineState, EngineSnapshot>();
  let issued = 0;
  let calls = 0;
  const lrs: number[] = [];
  const issue = (snap: EngineSnapshot): EngineState => {
    const handle = { engine: "fake", id: ++issued };
    live.set(handle, snap);
    return handle;
  };
  const take = (h: EngineState): EngineSnapshot => {
    const snap = live.get(h);
    if (snap === undefined) throw new Error(`state #${h.id} is not live`);
    return snap;
  };
  const first = (snap: EngineSnapshot) => snap.params[0]!.data[0]!;
  const engine: Engine = {
    backend: { description: "fake", fusedOps: [] },
    load: (_shape, snap) => TE.right(issue(snap)),
    step: (h, _batches, hyper) => () => {
      const snap = take(h);
      live.delete(h);
      lrs.push(hyper.lr);
      const skipped = losses(++calls) === "nan";
      const [w, ...rest] = snap.params;
      const data = Float32Array.from(w!.data);
      if (!skipped) data[0] = data[0]! - hyper.lr;
      const next = { ...snap, params: [{ ...w!, data }, ...rest] };
      const outcome: StepOutcome = {
        state: issue(next),
        loss: skipped ? NaN : 1 + first(snap),
        gradNorm: skipped ? NaN : 1,
        skipped,
        accounted: ROLES,
        measured: { bufferBytes: 0, tensorCountBytes: 0 },
      };
      return Promise.resolve(E.right(outcome));
    },
    evaluate: (h) => TE.right(1 + first(take(h))),
    reset: () => TE.left(kernelFailed("no adapters here")),
    snapshot: (h) => TE.right(take(h)),
    dispose: (h) => {
      take(h);
      live.delete(h);
    },
  };
  return { engine, live, lrs };
}

/** A run directory in memory: the checkpoint goes through JSON, as `state.json` does. */
function memoryDir() {
  const metrics: FinetuneMetric[] = [];
  const lines: string[] = [];
  let checkpoint: Checkpoint | undefined;
  let final: EngineSnapshot | undefined;
  return {
    metrics,
    lines,
    checkpoint: () => checkpoint,
    final: () => final,
    effects: {
      store: {
        saveCheckpoint: (c: Checkpoint) =>
          TE.fromIO(() => {
            checkpoint = { snapshot: c.snapshot, progress: JSON.parse(JSON.stringify(c.progress)) };
          }),
        loadCheckpoint: () => TE.right(checkpoint),
        saveFinal: (snap: EngineSnapshot) =>
          TE.fromIO(() => {
            final = snap;
            return "final/model.safetensors";
          }),
        writeText: (name: string) => TE.right(name),
      },
      log: {
        line: (text: string) => void lines.push(text),
        metric: (r: unknown) => void metrics.push(JSON.parse(JSON.stringify(r))),
        truncate: (n: number) => TE.fromIO(() => void metrics.splice(n)),
      },
      clock: { now: () => 0 },
      processMemory: { peakBytes: () => undefined, resetPeak: () => {} },
    },
  };
}

/** 20 records: 16 train and 4 held out; 4 steps of 4 examples an epoch, 2 epochs. */
function job(settings: Record<string, number> = {}): { job: FinetuneJob; set: SftSet } {
  const records = Array.from({ length: 20 }, (_, i) => ({
    instruction: `Repeat ${"x".repeat(i % 5)}.`,
    output: "y".repeat(1 + (i % 7)),
  }));
  const set = encodeAlpacaSet(records, { tokenizer: byteTokenizer(), maxSeqLen: 256 });
  const s = decodeFinetune({
    epochs: 2,
    batch: 4,
    microBatch: 2,
    evalExamples: 4,
    warmup: 3,
    lr: 0.01,
    checkpointEvery: 3,
    logEvery: 2,
    ...settings,
  });
  assert(E.isRight(s));
  const plan = finetunePlan(s.right, set.examples.length);
  assert(E.isRight(plan));
  const graph = finetuneGraph(SHAPE, plan.right);
  assert(E.isRight(graph), JSON.stringify(graph));
  const record = finetuneRecord(s.right, {
    base: "/base",
    dataHash: "0",
    records: 20,
    heldOut: plan.right.heldOut.length,
    microBatch: plan.right.microBatch,
  });
  const base = () => Promise.resolve(E.right(initialSnapshot(SHAPE, 1, 3)));
  return { job: { graph: graph.right, plan: plan.right, record, base }, set };
}

async function finetune(
  j: { job: FinetuneJob; set: SftSet },
  run: { engine: Engine; dir: ReturnType<typeof memoryDir> },
  options: { resume?: boolean; stopAfter?: number } = {},
): Promise<E.Either<PipelineError, FinetuneOutcome>> {
  const env: Env = {
    ...run.dir.effects,
    engine: run.engine,
    data: instructionData(j.set, j.job.plan, byteTokenizer()),
  };
  return await runFinetune(j.job, { resume: options.resume ?? false, ...options })(env)();
}

function trainRecords(dir: ReturnType<typeof memoryDir>) {
  return dir.metrics.filter((r) => r.type === "train");
}

Deno.test("runFinetune() trains each planned step at the LR of a warmup and a cosine to 0", async () => {
  const j = job();
  const fake = fakeEngine();
  const dir = memoryDir();
  const r = await finetune(j, { engine: fake.engine, dir });
  assert(E.isRight(r) && r.right.finished, JSON.stringify(r));
  const plan: FinetunePlan = j.job.plan;
  assertEquals(plan.steps, 8);
  // Worked out by hand: (k + 1)/3 of the peak over 3 warmup steps, then ½(1 + cos(π(k − 3)/5)).
  const expected = Array.from(
    { length: 8 },
    (_, k) => k < 3 ? 0.01 * (k + 1) / 3 : 0.01 * 0.5 * (1 + Math.cos(Math.PI * (k - 3) / 5)),
  );
  fake.lrs.forEach((lr, k) => assertAlmostEquals(lr, expected[k]!, 1e-15));
  const train = trainRecords(dir);
  assertEquals(train.map((x) => x.type === "train" && x.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  assertEquals(train.map((x) => x.type === "train" && x.epoch), [0, 0, 0, 0, 1, 1, 1, 1]);
  // Each step's response tokens are its examples', unpadded.
  assertEquals(
    train.map((x) => x.type === "train" && x.responseTokens),
    expected.map((_, k) =>
      plannedStep(plan, k).examples.reduce((n, i) => n + j.set.examples[i]!.responseTokens, 0)
    ),
  );
  assertEquals(
    dir.metrics.filter((x) => x.type === "eval").map((x) => x.type === "eval" && x.when),
    [
      "before",
      "after",
    ],
  );
  // The last weight moved by the sum of the LRs: every step updated it, in order.
  const moved = initialSnapshot(SHAPE, 1, 3).params[0]!.data[0]! - expected.reduce((a, b) => a + b);
  assertAlmostEquals(dir.final()!.params[0]!.data[0]!, moved, 1e-6);
  assert(dir.lines.some((l) => l.startsWith("[finetune 1/8 epoch 1/2] loss ")));
  assert(dir.lines.some((l) => l.startsWith("[finetune 8/8 epoch 2/2] loss ")));
  assertEquals(dir.lines.filter((l) => l.startsWith("[finetune ")).length, 5); // 1, 2, 4, 6, 8
  assertEquals(fake.live.size, 0);
});

Deno.test("a fine-tuning run stopped and resumed repeats the uninterrupted one", async () => {
  const j = job();
  const whole = memoryDir();
  assert(E.isRight(await finetune(j, { engine: fakeEngine().engine, dir: whole })));
  const cut = memoryDir();
  const first = fakeEngine();
  const stopped = await finetune(j, { engine: first.engine, dir: cut }, { stopAfter: 5 });
  assertEquals(stopped, E.right({ finished: false, step: 5, steps: 8 }) as typeof stopped);
  assertEquals(cut.checkpoint()?.progress.globalStep, 5);
  assertEquals(first.live.size, 0);
  // What a process killed after its checkpoint leaves: records past it, cut on resume.
  cut.metrics.push(cut.metrics.at(-1)!);
  const second = fakeEngine();
  const resumed = await finetune(j, { engine: second.engine, dir: cut }, { resume: true });
  assertEquals(
    resumed,
    E.right({ finished: true, final: "final/model.safetensors", resumedFrom: 5 }) as typeof resumed,
  );
  assertEquals(cut.metrics, whole.metrics);
  assertEquals(cut.final(), whole.final());
  assert(cut.lines.includes("Resumed at step 5 of 8"));
  assertEquals(second.live.size, 0);
  // The same command with another LR is refused, naming the flag.
  const other = await finetune(job({ lr: 0.02 }), { engine: second.engine, dir: cut }, {
    resume: true,
  });
  assert(E.isLeft(other) && other.left._tag === "ConfigInvalid");
  assertStringIncludes(other.left.message, "written with --lr 0.01, this command gives 0.02");
  assertEquals(second.live.size, 0);
});

Deno.test("a base no step could update is refused as broken input, not as a divergence", async () => {
  const fake = fakeEngine(() => "nan");
  const dir = memoryDir();
  const r = await finetune(job({ evalExamples: 0 }), { engine: fake.engine, dir });
  assert(E.isLeft(r) && r.left._tag === "ContentInvalid", JSON.stringify(r));
  assertStringIncludes(r.left.message, "not finite on each of the first 3 steps");
  assertStringIncludes(r.left.message, "no learning rate can help");
  assertEquals(dir.checkpoint(), undefined);
  assertEquals(fake.live.size, 0);
});

Deno.test("a run that diverges after updating names the checkpoint it keeps", async () => {
  const fake = fakeEngine((call) => call <= 3 ? "finite" : "nan");
  const dir = memoryDir();
  const r = await finetune(job(), { engine: fake.engine, dir });
  assert(E.isLeft(r) && r.left._tag === "TrainingDiverged", JSON.stringify(r));
  assertStringIncludes(
    r.left.message,
    "3 steps in a row had a non-finite loss or gradient (last: loss NaN, gradient norm NaN, LR ",
  );
  assertStringIncludes(r.left.message, "the checkpoint of global step 3 is kept — lower --lr");
  assertEquals(dir.checkpoint()?.progress.globalStep, 3);
  assertEquals(dir.final(), undefined);
  assertEquals(fake.live.size, 0);
});
