import { assert, assertEquals } from "../tests/assert.ts";
import { createRng } from "../base/prng.ts";
import { argmax } from "../base/stats.ts";
import { isGreedy, sampleToken, samplingDistribution, samplingProblem } from "./sampling.ts";

const LOGITS = new Float32Array([1.2, -0.5, 3.1, 0.4, 3.1, -2, 2.0, 0.9]);

function softmax(xs: ArrayLike<number>, t = 1): number[] {
  const m = Math.max(...Array.from(xs));
  const e = Array.from(xs, (x) => Math.exp((x - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): boolean {
  return a.length === b.length && Array.from(a).every((x, i) => Math.abs(x - b[i]!) <= tol);
}

Deno.test("argmax() takes the first of tied maxima", () => {
  assertEquals(argmax(LOGITS), 2);
  assertEquals(argmax([5]), 0);
});

Deno.test("samplingDistribution() without filters is softmax(logits / temperature)", () => {
  for (const t of [1, 0.5, 2.5]) {
    assert(close(samplingDistribution(LOGITS, { temperature: t }), softmax(LOGITS, t), 1e-12));
  }
});

Deno.test("samplingDistribution() greedy cases are one-hot at argmax", () => {
  const onehot = Array.from(LOGITS, (_, i) => (i === 2 ? 1 : 0));
  assertEquals(Array.from(samplingDistribution(LOGITS, { temperature: 0 })), onehot);
  assertEquals(Array.from(samplingDistribution(LOGITS, { topK: 1, temperature: 3 })), onehot);
  assert(isGreedy({ temperature: 0 }) && isGreedy({ topK: 1 }) && !isGreedy({}));
  // Temperature → 0 tends to greedy: the tie at 3.1 splits the mass between its two tokens.
  const cold = samplingDistribution(LOGITS, { temperature: 1e-3 });
  assert(close(cold, Array.from(LOGITS, (x) => (x === LOGITS[2] ? 0.5 : 0)), 1e-9));
});

Deno.test("samplingDistribution() top-k keeps the k largest logits, renormalised", () => {
  const p = samplingDistribution(LOGITS, { topK: 3 });
  // Largest: 2 and 4 (3.1, tied), then 6 (2.0).
  const kept = softmax([LOGITS[2]!, LOGITS[4]!, LOGITS[6]!]);
  const want = Array.from(LOGITS, () => 0);
  want[2] = kept[0]!;
  want[4] = kept[1]!;
  want[6] = kept[2]!;
  assert(close(p, want, 1e-12), `${Array.from(p)}`);
  // A tie at the cut keeps the lower index.
  const two = samplingDistribution(new Float32Array([1, 5, 5, 5]), { topK: 2 });
  assert(close(two, [0, 0.5, 0.5, 0], 1e-12));
  // k ≥ vocabulary keeps everything.
  assert(close(samplingDistribution(LOGITS, { topK: 99 }), softmax(LOGITS), 1e-12));
});

Deno.test("samplingDistribution() top-p keeps the smallest set with mass ≥ p", () => {
  const full = softmax(LOGITS);
  const order = Array.from(LOGITS.keys()).sort((a, b) => full[b]! - full[a]! || a - b);
  for (const p of [0.05, 0.3, 0.5, 0.8, 0.95, 0.999]) {
    // Exhaustively: the shortest prefix of the sorted order reaching p.
    let n = 0;
    let mass = 0;
    while (mass < p) mass += full[order[n++]!]!;
    const want = Array.from(full, () => 0);
    for (const i of order.slice(0, n)) want[i] = full[i]! / mass;
    const got = samplingDistribution(LOGITS, { topP: p });
    assert(close(got, want, 1e-12), `p = ${p}: ${Array.from(got)} vs ${want}`);
    const support = Array.from(got).filter((x) => x > 0).length;
    assertEquals(support, n);
    // The set one smaller would not reach p.
    const without = order.slice(0, n - 1).reduce((s, i) => s + full[i]!, 0);
    assert(without < p);
  }
});

Deno.test("samplingDistribution() applies temperature, then top-k, then top-p", () => {
  const t = 0.7;
  const top4 = [2, 4, 6, 0]; // by decreasing logit
  const scaled = softmax(top4.map((i) => LOGITS[i]!), t);
  const keep = scaled[0]! + scaled[1]! >= 0.9 ? 2 : 3;
  const mass = scaled.slice(0, keep).reduce((a, b) => a + b, 0);
  const want = Array.from(LOGITS, () => 0);
  top4.slice(0, keep).forEach((id, j) => (want[id] = scaled[j]! / mass));
  assert(close(samplingDistribution(LOGITS, { temperature: t, topK: 4, topP: 0.9 }), want, 1e-12));
});

Deno.test("sampleToken() frequencies over seeded draws match the distribution", () => {
  const n = 40000;
  for (const options of [{}, { temperature: 1.5 }, { topK: 4 }, { topP: 0.8, temperature: 0.8 }]) {
    const p = samplingDistribution(LOGITS, options);
    const counts = new Array(LOGITS.length).fill(0);
    const rng = createRng(42);
    for (let i = 0; i < n; i++) counts[sampleToken(LOGITS, options, rng)]++;
    for (let i = 0; i < LOGITS.length; i++) {
      // Five binomial standard errors, and tokens outside the support are never drawn.
      const sd = Math.sqrt((p[i]! * (1 - p[i]!)) / n);
      assert(
        Math.abs(counts[i] / n - p[i]!) <= 5 * sd + 1e-12,
        `${JSON.stringify(options)} token ${i}: ${counts[i] / n} vs ${p[i]}`,
      );
    }
  }
});

Deno.test("sampleToken() is fixed by the seed, and greedy draws consume no randomness", () => {
  const draw = (seed: number) => {
    const rng = createRng(seed);
    return Array.from({ length: 50 }, () => sampleToken(LOGITS, { temperature: 1.2 }, rng));
  };
  assertEquals(draw(9), draw(9));
  assert(draw(9).join() !== draw(10).join());
  const rng = createRng(3);
  assertEquals(sampleToken(LOGITS, { temperature: 0 }, rng), 2);
  assertEquals(rng.nextU32(), createRng(3).nextU32());
});

Deno.test("samplingProblem() names the bad option", () => {
  assertEquals(samplingProblem({ temperature: 0.7, topK: 40, topP: 0.95 }), undefined);
  assert(samplingProblem({ temperature: -1 })!.includes("temperature"));
  assert(samplingProblem({ temperature: NaN })!.includes("temperature"));
  assert(samplingProblem({ topK: 1.5 })!.includes("top-k"));
  assert(samplingProblem({ topP: 0 })!.includes("top-p"));
  assert(samplingProblem({ topP: 1.01 })!.includes("top-p"));
});

/** The definition, by a full sort: temperature, top-k, then the nucleus. */
function reference(logits: Float32Array, t: number, k: number, p: number): Float64Array {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const kept = k > 0 ? order.slice(0, k) : order;
  const max = logits[kept[0]!]!;
  const e = kept.map((i) => Math.exp((logits[i]! - max) / t));
  const z = e.reduce((a, b) => a + b, 0);
  let n = 0;
  let mass = 0;
  while (n < kept.length && mass < p) mass += e[n++]! / z;
  const out = new Float64Array(logits.length);
  for (let j = 0; j < n; j++) out[kept[j]!] = e[j]! / z / (p < 1 ? mass : 1);
  return out;
}

Deno.test("samplingDistribution() equals the full-sort definition on a large vocabulary", () => {
  const rng = createRng(5);
  const logits = Float32Array.from({ length: 5000 }, () => 8 * (rng.nextFloat() - 0.5) ** 3 * 4);
  for (let i = 0; i < 50; i++) logits[i * 97] = logits[i * 89]!; // ties
  for (
    const [t, k, p] of [[1, 0, 0.9], [0.7, 40, 1], [1.3, 300, 0.5], [1, 0, 0.999], [2, 7, 0.95]]
  ) {
    const got = samplingDistribution(logits, { temperature: t!, topK: k!, topP: p! });
    assert(close(got, reference(logits, t!, k!, p!), 1e-12), `t ${t}, k ${k}, p ${p}`);
  }
});

Deno.test("samplingDistribution() never keeps ids masked to −∞, even when k exceeds the rest", () => {
  const logits = new Float32Array([0.5, -Infinity, 2, -Infinity, 1]);
  for (const options of [{ topK: 4 }, { topP: 0.99 }, { topK: 5, topP: 0.5 }, {}]) {
    const p = samplingDistribution(logits, options);
    assertEquals([p[1], p[3]], [0, 0]);
    assert(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12, JSON.stringify(options));
  }
});
