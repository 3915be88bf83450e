/**
 * STEP's surgery on host snapshots, with neither tfjs nor torch: the float32 arithmetic against
 * an exact oracle (integers scaled by 2³⁰⁰, rounded to float32 by hand), and growth, attaching
 * and merging against what they must keep, compute and leave fresh.
 */
import * as E from "fp-ts/lib/Either.js";
import fc from "fast-check";
import { assert, assertEquals } from "../tests/assert.ts";
import {
  grownLayout,
  insertionCounts,
  isAdapterName,
  loraAValues,
  loraNames,
  paramShapes,
  PLACEMENTS,
} from "../base/mod.ts";
import { momentName } from "./run_layout.ts";
import type { EngineSnapshot, NamedArray } from "./snapshot.ts";
import {
  attachedSnapshot,
  fmaF32,
  freshMoments,
  grownSnapshot,
  initialSnapshot,
  meanValues,
  mergedSnapshot,
  mergeValues,
} from "./surgery.ts";
import { randomValues, TINY } from "./_test_util.ts";

const SCALE = 300n;

/** A float32 (held in a float64) as the integer x · 2³⁰⁰ (exact: float32's smallest step is 2⁻¹⁴⁹). */
function exact(x: number): bigint {
  return BigInt(x * 2 ** Number(SCALE));
}

/** The float32 nearest n / 2³⁰⁰, ties to even (float32's range; no overflow in these tests). */
function toFloat32(n: bigint): number {
  if (n === 0n) return 0;
  const sign = n < 0n ? -1 : 1;
  const m = n < 0n ? -n : n;
  const exponent = BigInt(m.toString(2).length - 1) - SCALE;
  // 24 significant bits, or float32's subnormal step 2⁻¹⁴⁹ below 2⁻¹²⁶.
  const step = (exponent - 23n > -149n ? exponent - 23n : -149n) + SCALE;
  let q = m >> step;
  const rest = m - (q << step);
  const half = 1n << (step - 1n);
  if (rest > half || (rest === half && (q & 1n) === 1n)) q += 1n;
  return sign * Number(q) * 2 ** Number(step - SCALE);
}

/** a·b + c rounded once to float32, computed exactly (an exact zero is −0 only from −0 + −0). */
function fmaOracle(a: number, b: number, c: number): number {
  const sum = (exact(a) * exact(b) >> SCALE) + exact(c);
  if (sum !== 0n) return toFloat32(sum);
  return Object.is(a * b, -0) && Object.is(c, -0) ? -0 : 0;
}

const float32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });

Deno.test("fmaF32() rounds a·b + c once, as an exact computation does", () => {
  fc.assert(
    fc.property(float32, float32, float32, (a, b, c) => {
      assertEquals(fmaF32(a, b, c), fmaOracle(a, b, c));
    }),
    { numRuns: 20000 },
  );
  // Sums that float64 rounds onto a float32 midpoint from either side, for each sign.
  for (let k = 12; k <= 23; k++) {
    for (const [a, b] of [[1 + 2 ** -k, 2 ** -24 - 2 ** (-24 - k)], [1 - 2 ** -k, 2 ** -24]]) {
      for (const c of [1, 1 + 2 ** -23, -1, -(1 + 2 ** -23), 3, 1.5 + 2 ** -22]) {
        const [x, y] = [Math.fround(a!), Math.fround(b!)];
        assertEquals(fmaF32(x, y, c), fmaOracle(x, y, c), `${x}·${y} + ${c}`);
        assertEquals(fmaF32(-x, y, -c), fmaOracle(-x, y, -c), `−${x}·${y} − ${c}`);
      }
    }
  }
});

Deno.test("meanValues() is the float32 nearest (a + b) / 2", () => {
  const a = randomValues(1000, 1);
  const b = randomValues(1000, 2);
  const got = meanValues(a, b);
  got.forEach((x, i) => assertEquals(x, Math.fround((a[i]! + b[i]!) / 2)));
});

Deno.test("mergeValues() is W + s·A·B with one float32 rounding per multiply-add, k ascending", () => {
  const [rows, cols, rank] = [6, 5, 4];
  const w = randomValues(rows * cols, 3);
  const a = randomValues(rows * rank, 4);
  const b = randomValues(rank * cols, 5);
  const scale = 16 / 3;
  const got = mergeValues(w, { a, b, rank, scale });
  const s = Math.fround(scale);
  let worst = 0;
  for (let i = 0; i < rows; i++) {
    for (let o = 0; o < cols; o++) {
      let acc = 0;
      let sum64 = 0;
      for (let k = 0; k < rank; k++) {
        acc = fmaOracle(a[i * rank + k]!, b[k * cols + o]!, acc);
        sum64 += a[i * rank + k]! * b[k * cols + o]!;
      }
      const want = toFloat32(
        exact(w[i * cols + o]!) + (exact(toFloat32(exact(acc) * exact(s) >> SCALE))),
      );
      assertEquals(got[i * cols + o], want, `(${i}, ${o})`);
      worst = Math.max(worst, Math.abs(got[i * cols + o]! - (w[i * cols + o]! + scale * sum64)));
    }
  }
  // Beside float64's W + s·A·B: a few float32 roundings of values below 16.
  assert(worst < 16 * rank * 2 ** -23, `worst ${worst}`);
  // Where every product and sum is exact, the closed form.
  const exactly = mergeValues(new Float32Array([1, 2, 3, 4]), {
    a: new Float32Array([1, -2, 0.5, 4]),
    b: new Float32Array([2, 0, -1, 8]),
    rank: 2,
    scale: 0.25,
  });
  // A·B = [[1·2 + −2·−1, 1·0 + −2·8], [0.5·2 + 4·−1, 0.5·0 + 4·8]] = [[4, −16], [−3, 32]].
  assertEquals([...exactly], [1 + 1, 2 - 4, 3 - 0.75, 4 + 8]);
});

/** A snapshot of TINY's weights (random values) at `depth` layers, everything trainable. */
function randomSnapshot(depth: number, seed: number): EngineSnapshot {
  const params = paramShapes(TINY, depth).map(([name, shape], i): NamedArray => ({
    name,
    shape,
    data: randomValues(shape.reduce((x, y) => x * y, 1), seed * 1000 + i),
  }));
  const trainable = params.map((p) => p.name);
  const moments = freshMoments(params, trainable).map((m, i) => ({
    ...m,
    data: randomValues(m.data.length, seed * 7000 + i),
  }));
  return { params, moments, meta: { trainable, loraScale: 1, adamStep: 9 } };
}

function right<A>(e: E.Either<string, A>): A {
  if (E.isLeft(e)) throw new Error(e.left);
  return e.right;
}

function values(s: EngineSnapshot): Map<string, Float32Array> {
  return new Map(s.params.map((p) => [p.name, p.data]));
}

Deno.test("grownSnapshot() keeps old layers, starts new ones as neighbour means, and resets Adam", () => {
  const s = randomSnapshot(3, 1);
  const old = values(s);
  for (const placement of PLACEMENTS) {
    const trainable = ["model.layers.1.mlp.up_proj.weight"];
    const grown = right(grownSnapshot(s, { add: 4, placement, seed: 5, trainable }));
    const layout = grownLayout(insertionCounts(3, 4, placement, 5));
    const got = values(grown);
    assertEquals(got.size, old.size + 4 * 9);
    const at = (l: number, suffix: string) => `model.layers.${l}.${suffix}`;
    layout.forEach((origin, l) => {
      for (const suffix of ["self_attn.k_proj.weight", "post_attention_layernorm.weight"]) {
        const want = origin.kind === "old"
          ? old.get(at(origin.from, suffix))!
          : origin.above === undefined
          ? old.get(at(origin.below, suffix))!
          : meanValues(old.get(at(origin.below, suffix))!, old.get(at(origin.above, suffix))!);
        assertEquals(got.get(at(l, suffix)), want, `${placement} layer ${l}`);
      }
    });
    assertEquals(got.get("lm_head.weight"), old.get("lm_head.weight"));
    assertEquals(grown.meta, { trainable, loraScale: 1, adamStep: 0 });
    assertEquals(grown.moments.map((m) => m.name), ["m", "v"].map((k) => `${k}/${trainable[0]}`));
    assert(grown.moments.every((m) => m.data.every((x) => x === 0)));
  }
  const bad = grownSnapshot(s, { add: 1, placement: "upper", seed: 0, trainable: ["nope"] });
  assert(E.isLeft(bad) && bad.left.includes('"nope"'));
});

Deno.test("attachedSnapshot() adds A from base/init_values and B = 0: the function is unchanged", () => {
  const s = randomSnapshot(2, 2);
  const adapted = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"];
  const names = adapted.flatMap((w) => Object.values(loraNames(w)));
  const trainable = ["model.layers.1.input_layernorm.weight", ...names];
  const attached = right(attachedSnapshot(s, { rank: 3, alpha: 12, seed: 7, adapted, trainable }));
  assertEquals(attached.meta, { trainable, loraScale: 4, adamStep: 0 });
  const got = values(attached);
  const [inDim, outDim] = [TINY.intermediate, TINY.hidden];
  const down = loraNames(adapted[1]!);
  assertEquals(got.get(down.a), loraAValues(inDim, 3, 7, down.a));
  assertEquals(got.get(down.b), new Float32Array(3 * outDim));
  assert(got.get(down.a)!.every((x) => Math.abs(x) <= 1 / Math.sqrt(inDim)));
  assertEquals(attached.moments.length, 2 * trainable.length);
  assert(attached.moments.every((m) => m.data.every((x) => x === 0)));
  // Merged straight back, the weights are bit for bit the old ones: B = 0.
  assertEquals(values(mergedSnapshot(attached)), values(s));
  const missing = attachedSnapshot(s, {
    rank: 3,
    alpha: 12,
    seed: 7,
    adapted: ["model.layers.5.mlp.up_proj.weight"],
    trainable: [],
  });
  assert(E.isLeft(missing) && missing.left.includes("model.layers.5"));
});

Deno.test("mergedSnapshot() merges each adapter into its weight and keeps what still trains", () => {
  const s = randomSnapshot(2, 3);
  const w = "model.layers.1.self_attn.v_proj.weight";
  const { a, b } = loraNames(w);
  const [inDim, outDim] = [TINY.hidden, TINY.hidden * TINY.kvHeads / TINY.heads];
  const adapters: NamedArray[] = [
    { name: a, shape: [inDim, 2], data: randomValues(inDim * 2, 11) },
    { name: b, shape: [2, outDim], data: randomValues(2 * outDim, 12) },
  ];
  const trainable = ["model.norm.weight", a, b];
  const adapted: EngineSnapshot = {
    params: [...s.params, ...adapters],
    moments: freshMoments([...s.params, ...adapters], trainable),
    meta: { trainable, loraScale: 2.5, adamStep: 40 },
  };
  const merged = mergedSnapshot(adapted);
  assert(!merged.params.some((p) => isAdapterName(p.name)));
  const got = values(merged);
  const old = values(s);
  for (const [name, v] of old) {
    const want = name === w
      ? mergeValues(v, { a: adapters[0]!.data, b: adapters[1]!.data, rank: 2, scale: 2.5 })
      : v;
    assertEquals(got.get(name), want, name);
  }
  assertEquals(merged.meta, { trainable: ["model.norm.weight"], loraScale: 2.5, adamStep: 40 });
  assertEquals(merged.moments.map((m) => m.name), [
    momentName("m", "model.norm.weight"),
    momentName("v", "model.norm.weight"),
  ]);
  assert(mergedSnapshot(s) === s, "a snapshot without adapters is returned as is");
});

Deno.test("initialSnapshot() is base/init_values' model, all trainable, with zero moments", () => {
  const s = initialSnapshot(TINY, 2, 3);
  assertEquals(s.params.map((p) => [p.name, p.shape]), paramShapes(TINY, 2));
  assertEquals(s.meta, { trainable: s.params.map((p) => p.name), loraScale: 1, adamStep: 0 });
  assert(s.moments.every((m) => m.data.length > 0 && m.data.every((x) => x === 0)));
});
