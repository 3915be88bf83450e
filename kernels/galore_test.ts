/**
 * GaLore against an independent float64 reference (plain loops), its clamped full-rank case
 * against AdamW, SVD failures, checkpoint resume through the engine, and tensor accounting.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "../tests/assert.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { LM_HEAD } from "../base/param_names.ts";
import { projectionWeight } from "../base/param_names.ts";
import { type ShortSideSvd, svd, type SvdFailed, svdShortSide } from "../solvers/svd.ts";
import {
  checkpointStateText,
  decodeCheckpointState,
  initialSnapshot,
  projectorName,
} from "../checkpoint/mod.ts";
import type { EngineSnapshot, EngineState, MicroBatch, StepHyper } from "../pipeline/mod.ts";
import { engineOn } from "../effects/tfjs_engine.ts";
import { type AdamWResult, adamwUpdate } from "./ops/adamw.ts";
import { adamReference } from "./ops/adamw_rule.ts";
import { initBackend } from "./backend.ts";
import { computeProjector, type GaloreOptions, galoreUpdate, type ProjectorSvd } from "./galore.ts";
import { accountedBytes } from "./accounted_bytes.ts";
import { type Batch, lossSum } from "./model.ts";
import { initParams } from "./params.ts";
import { backwardInto, type GradientSums } from "./recompute.ts";
import { createTrainState, disposeState, type TrainState } from "./train_state.ts";
import { type StepOptions, trainStep } from "./train_step.ts";
import { assertClose, backendTest } from "./_test_util.ts";
import { orthonormalise } from "../tests/orthonormal.ts";

const shape: LlamaShape = {
  hidden: 16,
  intermediate: 24,
  heads: 4,
  kvHeads: 2,
  layers: 2,
  vocab: 13,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 8,
};

/** Square (right), wide [16, 24] (left), tall [24, 16] (right) and tall [16, 8] (right). */
const TARGETS = [
  projectionWeight(0, "q"),
  projectionWeight(0, "up"),
  projectionWeight(0, "down"),
  projectionWeight(1, "v"),
];
const GALORE: GaloreOptions = { rank: 3, updateEvery: 2, scale: 0.25, targets: TARGETS };
const HYPER = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 0.5 };

/** A different batch for every step, fixed by the step index. */
function batchAt(step: number): Batch {
  const tokens = Int32Array.from({ length: 12 }, (_, i) => (i * 5 + step * 3 + 1) % 13);
  const targets = Int32Array.from({ length: 12 }, (_, i) => (i * 7 + step * 2 + 2) % 13);
  return { tokens, targets, batch: 2, seq: 6 };
}

function galoreStateOf(seed: number, options: GaloreOptions = GALORE): TrainState {
  return createTrainState(shape, initParams(shape, 2, seed), { galore: options });
}

async function f64(t: tf.Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.data() as Float32Array);
}

/** The step's gradients, by the same tape trainStep records (one micro-batch). */
async function gradientsOf(state: TrainState, mb: Batch): Promise<Map<string, Float64Array>> {
  const names = [...state.trainable];
  const scale = 1 / mb.targets.filter((t) => t >= 0).length;
  const sums: GradientSums = new Map();
  const loss = { headTrains: state.trainable.has(LM_HEAD) };
  const { value } = backwardInto(state, {
    f: () => tf.tidy(() => tf.mul(lossSum(state, mb, loss), scale) as tf.Scalar),
    input: undefined,
    names,
  }, sums);
  value.dispose();
  const out = new Map<string, Float64Array>();
  for (const n of names) {
    const g = sums.get(n)!;
    out.set(n, await f64(g));
    g.dispose();
  }
  return out;
}

// ---- float64 reference, plain loops ----

/** a (p×q) · b (q×s), row-major. */
function matmul(a: Float64Array, b: Float64Array, p: number, q: number, s: number): Float64Array {
  const out = new Float64Array(p * s);
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < s; j++) {
      let x = 0;
      for (let k = 0; k < q; k++) x += a[i * q + k]! * b[k * s + j]!;
      out[i * s + j] = x;
    }
  }
  return out;
}

function transpose(a: Float64Array, p: number, q: number): Float64Array {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) out[j * p + i] = a[i * q + j]!;
  return out;
}

interface RefMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly side: "left" | "right";
  w: Float64Array;
  m: Float64Array;
  v: Float64Array;
  q: Float64Array | undefined;
}

/** The top-r shorter-side singular vectors of g, signs taken from the engine's projector. */
function referenceProjector(
  g: Float64Array,
  ref: RefMatrix,
  rank: number,
  engine: Float64Array,
): Float64Array {
  const full = svd(g, ref.rows, ref.cols);
  if (E.isLeft(full)) throw new Error(full.left.message);
  const { k } = full.right;
  const vectors = ref.side === "right" ? full.right.v : full.right.u;
  const n = Math.min(ref.rows, ref.cols);
  const out = new Float64Array(n * rank);
  for (let j = 0; j < rank; j++) {
    let dot = 0;
    for (let i = 0; i < n; i++) dot += vectors[i * k + j]! * engine[i * rank + j]!;
    // Singular vectors are defined up to sign; anything else is a wrong projector.
    assert(Math.abs(Math.abs(dot) - 1) < 1e-5, `projector column ${j}: |q·q'| = ${dot}`);
    for (let i = 0; i < n; i++) out[i * rank + j] = Math.sign(dot) * vectors[i * k + j]!;
  }
  return out;
}

/** One GaLore-Adam step of the reference, gradient already clipped. */
function referenceStep(ref: RefMatrix, g: Float64Array, rank: number, step: number): void {
  const { rows, cols, q } = ref;
  const n = Math.min(rows, cols);
  const r = ref.side === "right"
    ? matmul(g, q!, rows, cols, rank)
    : matmul(transpose(q!, n, rank), g, rank, rows, cols);
  const { beta1, beta2, eps, lr, weightDecay: wd } = HYPER;
  const adam = adamReference(r, ref, {
    lr,
    beta1,
    beta2,
    eps,
    weightDecay: wd,
    step,
    gradScale: 1,
  });
  [ref.m, ref.v] = [adam.m, adam.v];
  const back = ref.side === "right"
    ? matmul(adam.direction, transpose(q!, n, rank), rows, rank, cols)
    : matmul(q!, adam.direction, rows, rank, cols);
  for (let i = 0; i < ref.w.length; i++) {
    const stepped = ref.w[i]! - lr * GALORE.scale * back[i]!;
    ref.w[i] = stepped - lr * wd * stepped;
  }
}

Deno.test({
  name: "GaLore steps equal a float64 reference: both sides, a projector refresh between",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    E.getOrElseW((e: { message: string }) => {
      throw new Error(e.message);
    })(await initBackend("cpu"));
    let state = galoreStateOf(3);
    const refs = new Map<string, RefMatrix>();
    for (const name of TARGETS) {
      const [rows, cols] = state.params.get(name)!.shape as [number, number];
      const side = rows >= cols ? "right" : "left";
      const mLen = side === "right" ? rows * 3 : 3 * cols;
      refs.set(name, {
        rows,
        cols,
        side,
        w: await f64(state.params.get(name)!),
        m: new Float64Array(mLen),
        v: new Float64Array(mLen),
        q: undefined,
      });
      assertEquals(state.adam.m.get(name)!.shape, side === "right" ? [rows, 3] : [3, cols]);
    }
    assertEquals(refs.get(projectionWeight(0, "up"))!.side, "left");
    let clipped = false;
    for (let k = 0; k < 3; k++) {
      const mb = batchAt(k);
      const grads = await gradientsOf(state, mb);
      let sq = 0;
      for (const g of grads.values()) for (const x of g) sq += x * x;
      const gradScale = Math.min(1, HYPER.clip / (Math.sqrt(sq) + 1e-6));
      clipped ||= gradScale < 1;
      const r = await trainStep(state, [mb], HYPER);
      state = r.state;
      assert(!r.skipped);
      assertEquals(r.projectorUpdates, k % 2 === 0 ? TARGETS.length : 0, `step ${k} refreshes`);
      assertEquals(r.svdFailures, 0);
      for (const name of TARGETS) {
        const ref = refs.get(name)!;
        const g = grads.get(name)!;
        if (k % 2 === 0) {
          const engineQ = await f64(state.galore!.projectors.get(name)!);
          ref.q = referenceProjector(g, ref, 3, engineQ);
        }
        referenceStep(ref, g.map((x) => x * gradScale), 3, k + 1);
        const label = `${name} after step ${k}`;
        assertClose(await state.params.get(name)!.data(), ref.w, 2e-6, `${label}: W`);
        assertClose(await state.adam.m.get(name)!.data(), ref.m, 1e-5, `${label}: m`);
        assertClose(await state.adam.v.get(name)!.data(), ref.v, 1e-5, `${label}: v`);
      }
    }
    assert(clipped, "the clip factor took part");
    disposeState(state);
  },
});

/** n×k with orthonormal columns (Gram–Schmidt on a fixed dense matrix). */
function orthonormalColumns(n: number, k: number, seed: number): Float64Array {
  return orthonormalise(
    Float64Array.from({ length: n * k }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) + 0.1),
    n,
    k,
  );
}

backendTest("GaLore clamps its rank to the matrix, and at full rank matches AdamW", async () => {
  // Clamping: a rank beyond every matrix gives full-shape moments and square projectors.
  const s = galoreStateOf(4, { ...GALORE, rank: 1000 });
  const up = projectionWeight(0, "up");
  assertEquals(s.adam.m.get(up)!.shape, [16, 24]);
  const r0 = await trainStep(s, [batchAt(0)], HYPER);
  assertEquals(r0.state.galore!.projectors.get(up)!.shape, [16, 16]);
  assertEquals(r0.state.galore!.projectors.get(projectionWeight(0, "down"))!.shape, [16, 16]);
  disposeState(r0.state);

  // A gradient with orthogonal columns of distinct norms has signed-permutation right vectors:
  // Adam's element-wise arithmetic commutes with them, so full-rank GaLore at scale 1 is AdamW
  // (decay applied after the update instead of before). A general basis would not commute.
  const [rows, cols] = [6, 4];
  const a = orthonormalColumns(rows, cols, 1);
  const g1 = Float32Array.from(a, (x, i) => x * [3, 2, 5, 1][i % cols]!);
  const g2 = Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i * 0.7) * 0.3);
  const w0 = tf.tensor2d(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 0.1), [6, 4]);
  const grad1 = tf.tensor2d(g1, [rows, cols]);
  const projector = (await computeProjector(grad1, 1000))!;
  assertEquals(projector.shape, [4, 4]);
  let galore: AdamWResult = { param: w0.clone(), m: tf.zeros([6, 4]), v: tf.zeros([6, 4]) };
  let adam: AdamWResult = { param: w0.clone(), m: tf.zeros([6, 4]), v: tf.zeros([6, 4]) };
  const lr = 0.05;
  for (const [step, g] of [[1, g1], [2, g2]] as const) {
    const grad = tf.tensor2d(g, [rows, cols]);
    const options = { lr, step, gradScale: 0.8, weightDecay: 0.1 };
    const nextG = galoreUpdate({ ...galore, grad, projector }, "right", { ...options, scale: 1 });
    const nextA = adamwUpdate({ ...adam, grad }, { ...options, weightDecay: 0 });
    const wA = await nextA.param.data();
    const wAPrev = await adam.param.data();
    // AdamW without decay, then the reference's decay of the updated weight: W ← W(1 − lr·wd).
    assertClose(
      await nextG.param.data(),
      Float32Array.from(wA, (x) => x * (1 - lr * 0.1)),
      1e-6,
      `step ${step}: W`,
    );
    // and AdamW's own order (decay of the old weight) differs, by lr·wd·(W' − W).
    const diff = Math.max(
      ...Array.from(
        await nextG.param.data(),
        (x, i) => Math.abs(x - (wA[i]! - lr * 0.1 * wAPrev[i]!)),
      ),
    );
    assert(diff > 1e-6, `decay order visible (${diff})`);
    [galore, adam].flatMap((x) => Object.values(x)).forEach((t) => t.dispose());
    grad.dispose();
    galore = nextG;
    // The AdamW side takes the same after-update decay, so both follow one rule.
    adam = { ...nextA, param: tf.mul(nextA.param, 1 - lr * 0.1) };
    nextA.param.dispose();
  }
  [galore, adam].flatMap((x) => Object.values(x)).forEach((t) => t.dispose());
  [w0, grad1, projector].forEach((t) => t.dispose());
});

/** svdShortSide, or a failure while `fail` is set (by an error result or by NaN vectors). */
function flakySvd(mode: { fail: "error" | "nan" | "none" }): ProjectorSvd {
  return (a, rows, cols): E.Either<SvdFailed, ShortSideSvd> => {
    if (mode.fail === "error") {
      return E.left({ _tag: "SvdFailed", reason: "no-convergence", message: "forced" });
    }
    const r = svdShortSide(a, rows, cols);
    if (mode.fail === "nan" && E.isRight(r)) {
      return E.right({ ...r.right, vectors: r.right.vectors.map(() => NaN) });
    }
    return r;
  };
}

async function valuesOf(ts: ReadonlyMap<string, tf.Tensor>, names: readonly string[]) {
  return await Promise.all(names.map(async (n) => Array.from(await ts.get(n)!.data())));
}

Deno.test({
  name: "A failed GaLore decomposition never reaches the weights",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await initBackend("cpu");
    const mode: { fail: "error" | "nan" | "none" } = { fail: "error" };
    const options: StepOptions = { ...HYPER, galoreSvd: flakySvd(mode) };
    let state = galoreStateOf(5);
    const other = projectionWeight(0, "k");
    const w0 = await valuesOf(state.params, TARGETS);
    const m0 = await valuesOf(state.adam.m, TARGETS);
    const k0 = await valuesOf(state.params, [other]);
    // Step 0: no projector yet, so the targets and their moments stay; the rest trains.
    let r = await trainStep(state, [batchAt(0)], options);
    state = r.state;
    assertEquals([r.projectorUpdates, r.svdFailures], [0, TARGETS.length]);
    assertEquals(await valuesOf(state.params, TARGETS), w0);
    assertEquals(await valuesOf(state.adam.m, TARGETS), m0);
    assertEquals(await valuesOf(state.adam.v, TARGETS), m0);
    assert((await valuesOf(state.params, [other]))[0]!.some((x, i) => x !== k0[0]![i]));
    assertEquals(state.galore!.projectors.size, 0);
    // Step 1 refreshes nothing and still has no projector; step 2 decomposes.
    r = await trainStep(state, [batchAt(1)], options);
    state = r.state;
    assertEquals(await valuesOf(state.params, TARGETS), w0);
    mode.fail = "none";
    r = await trainStep(state, [batchAt(2)], options);
    state = r.state;
    assertEquals([r.projectorUpdates, r.svdFailures], [TARGETS.length, 0]);
    const q2 = await valuesOf(state.galore!.projectors, TARGETS);
    r = await trainStep(state, [batchAt(3)], options);
    state = r.state;
    // Step 4: NaN vectors count as a failure; the old projector stays and the weights move.
    mode.fail = "nan";
    const w3 = await valuesOf(state.params, TARGETS);
    r = await trainStep(state, [batchAt(4)], options);
    state = r.state;
    assertEquals([r.projectorUpdates, r.svdFailures], [0, TARGETS.length]);
    assertEquals(await valuesOf(state.galore!.projectors, TARGETS), q2);
    const w4 = await valuesOf(state.params, TARGETS);
    w4.forEach((w, i) => assert(w.some((x, j) => x !== w3[i]![j]), `${TARGETS[i]} moved`));
    assert(w4.flat().every(Number.isFinite));
    disposeState(state);
  },
});

// ---- checkpoint resume through the engine ----

const ENGINE_HYPER: StepHyper = {
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  clip: 1,
  recompute: "none",
};

async function run<A>(te: () => Promise<E.Either<{ _tag: string }, A>>): Promise<A> {
  const r = await te();
  if (E.isLeft(r)) throw new Error(JSON.stringify(r.left));
  return r.right;
}

function asMicroBatch(b: Batch): MicroBatch {
  return b;
}

Deno.test({
  name: "A GaLore run resumed from a snapshot continues bit-identically, refresh included",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await initBackend("cpu");
    const engine = engineOn("cpu");
    const galore = GALORE;
    const steps = async (s: EngineState, from: number, to: number): Promise<EngineState> => {
      for (let k = from; k < to; k++) {
        const o = await run(engine.step(s, [asMicroBatch(batchAt(k))], ENGINE_HYPER));
        assertEquals(o.projectorUpdates, k % 2 === 0 ? TARGETS.length : 0);
        assertEquals(o.svdFailures, 0);
        s = o.state;
      }
      return s;
    };
    const straight = await steps(
      await run(engine.load(shape, initialSnapshot(shape, 2, 7), { galore })),
      0,
      5,
    );
    const first = await steps(
      await run(engine.load(shape, initialSnapshot(shape, 2, 7), { galore })),
      0,
      3,
    );
    const snap = await run(engine.snapshot(first));
    engine.dispose(first);
    assertEquals(snap.meta.galore?.targets, TARGETS);
    assert(snap.moments.some((m) => m.name === projectorName(TARGETS[0]!)));
    // The meta survives state.json.
    const decoded = decodeCheckpointState(checkpointStateText({ progress: {}, meta: snap.meta }));
    if (E.isLeft(decoded)) throw new Error(decoded.left);
    assertEquals(decoded.right.meta, snap.meta);
    const resumed = await steps(
      await run(engine.load(shape, { ...snap, meta: decoded.right.meta })),
      3,
      5,
    );
    const a = await run(engine.snapshot(straight));
    const b = await run(engine.snapshot(resumed));
    assertEquals(b.meta, a.meta);
    assertEquals(b.params.map((p) => p.name), a.params.map((p) => p.name));
    a.params.forEach((p, i) => assertEquals(b.params[i]!.data, p.data, `${p.name} bit-identical`));
    assertEquals(b.moments.map((p) => p.name), a.moments.map((p) => p.name));
    a.moments.forEach((p, i) =>
      assertEquals(b.moments[i]!.data, p.data, `${p.name} bit-identical`)
    );
    engine.dispose(straight);
    engine.dispose(resumed);
  },
});

Deno.test({
  name: "Restoring a GaLore snapshot with damaged moments or projectors is ContentInvalid",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await initBackend("cpu");
    const engine = engineOn("cpu");
    let s = await run(engine.load(shape, initialSnapshot(shape, 2, 8), { galore: GALORE }));
    s = (await run(engine.step(s, [asMicroBatch(batchAt(0))], ENGINE_HYPER))).state;
    const snap = await run(engine.snapshot(s));
    engine.dispose(s);
    const before = tf.memory().numTensors;
    const damaged = (name: string, shape: number[]): EngineSnapshot => ({
      ...snap,
      moments: snap.moments.map((m) =>
        m.name === name ? { name, shape, data: new Float32Array(shape[0]! * shape[1]!) } : m
      ),
    });
    const up = projectionWeight(0, "up");
    const cases: [EngineSnapshot, string][] = [
      [damaged(projectorName(up), [16, 4]), `GaLore projector "galore/${up}" has shape [16,4]`],
      [damaged(`m/${up}`, [16, 24]), `GaLore moment "m/${up}" has shape [16,24]`],
      [{ ...snap, meta: { ...snap.meta, galore: { ...snap.meta.galore!, rank: 5 } } }, "rank 5"],
      [
        { ...snap, moments: [...snap.moments, { ...snap.moments[0]!, name: "galore/x" }] },
        `projector "galore/x" belongs to no GaLore target`,
      ],
    ];
    for (const [bad, message] of cases) {
      const r = await engine.load(shape, bad)();
      assert(E.isLeft(r) && r.left._tag === "ContentInvalid", message);
      assert(r.left.message.includes(message), `${r.left.message} should say ${message}`);
    }
    assertEquals(tf.memory().numTensors, before);
    // A checkpoint from before GaLore (no galore field) still decodes.
    const old = decodeCheckpointState(
      JSON.stringify({ progress: {}, meta: { trainable: [], loraScale: 1, adamStep: 0 } }),
    );
    assert(E.isRight(old) && old.right.meta.galore === undefined);
  },
});

// ---- tensors ----

backendTest("GaLore steps leak no tensor; projectors count as optimizer memory", async () => {
  let state = galoreStateOf(6);
  const m = accountedBytes(state);
  const sizes = (names: Iterable<string>, of: ReadonlyMap<string, tf.Tensor>) =>
    [...names].reduce((sum, n) => sum + of.get(n)!.size, 0);
  assertEquals(m.optimizer, 4 * 2 * sizes(state.trainable, state.adam.m));
  assert(sizes(TARGETS, state.adam.m) < sizes(TARGETS, state.params) / 3, "projected moments");
  state = (await trainStep(state, [batchAt(0)], HYPER)).state; // warm-up, with a refresh
  const before = tf.memory().numTensors;
  for (let k = 1; k <= 3; k++) state = (await trainStep(state, [batchAt(k)], HYPER)).state;
  assertEquals(tf.memory().numTensors, before, "steps 1–3 (a refresh at 2)");
  const projectors = state.galore!.projectors;
  assertEquals(projectors.size, TARGETS.length);
  assertEquals(
    accountedBytes(state).optimizer,
    4 * (2 * sizes(state.trainable, state.adam.m) + sizes(projectors.keys(), projectors)),
  );
  disposeState(state);
  assertEquals(
    tf.memory().numTensors,
    before - state.params.size - 2 * state.trainable.size - projectors.size,
  );
});

Deno.test("createTrainState() refuses GaLore targets that are not trainable matrices", async () => {
  await initBackend("cpu");
  const before = tf.memory().numTensors;
  const bad: [string, Partial<GaloreOptions>, string][] = [
    ["a norm weight", { targets: ["model.norm.weight"] }, "only matrices project"],
    ["an unknown name", { targets: ["nope"] }, "is not a parameter"],
    ["rank 0", { rank: 0 }, "rank 0"],
  ];
  for (const [what, change, message] of bad) {
    const params = initParams(shape, 2, 1);
    let threw = "";
    try {
      createTrainState(shape, params, { galore: { ...GALORE, ...change } });
    } catch (e) {
      threw = String(e);
    }
    assert(threw.includes(message), `${what}: ${threw}`);
    params.forEach((t) => t.dispose());
  }
  const frozen = initParams(shape, 2, 1);
  assert(
    (() => {
      try {
        createTrainState(shape, frozen, { trainable: [], galore: GALORE });
        return false;
      } catch (e) {
        return String(e).includes("is not trainable");
      }
    })(),
  );
  frozen.forEach((t) => t.dispose());
  assertEquals(tf.memory().numTensors, before);
});
