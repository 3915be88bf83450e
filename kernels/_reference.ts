/**
 * A plain-JavaScript float64 LLaMA, written independently of the tfjs code,
 * for tests: forward values and finite-difference gradients of every block.
 * Same conventions as the engine (linear weights [in, out], HF rotate_half),
 * loops only, no tensors.
 *
 * @module
 */
import type { LlamaShape, Projection } from "../base/mod.ts";

/** A float64 array with its shape. */
export interface Arr {
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

/** Builds an {@link Arr}. */
export function arr(shape: readonly number[], data?: ArrayLike<number>): Arr {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  if (data !== undefined) {
    if (data.length !== n) throw new Error(`arr: ${data.length} values for [${shape}]`);
    out.set(data);
  }
  return { shape, data: out };
}

/** Deterministic samples in [-scale, scale) (an LCG; test data only). */
export function uniformArr(shape: readonly number[], seed: number, scale = 1): Arr {
  const a = arr(shape);
  let s = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < a.data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a.data[i] = (s / 4294967296 * 2 - 1) * scale;
  }
  return a;
}

/** x [n, in] · w [in, out]. */
export function matmul(x: Arr, w: Arr): Arr {
  const [n, k] = x.shape as [number, number];
  const m = w.shape[1]!;
  const y = arr([n, m]);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let l = 0; l < k; l++) s += x.data[i * k + l]! * w.data[l * m + j]!;
      y.data[i * m + j] = s;
    }
  }
  return y;
}

/** Elementwise a + b (same shapes). */
export function add(a: Arr, b: Arr): Arr {
  return arr(a.shape, a.data.map((v, i) => v + b.data[i]!));
}

/** RMSNorm over the last axis. */
export function rmsNormRef(x: Arr, w: Arr, eps: number): Arr {
  const h = x.shape[x.shape.length - 1]!;
  const y = arr(x.shape);
  for (let r = 0; r < x.data.length / h; r++) {
    let ss = 0;
    for (let j = 0; j < h; j++) ss += x.data[r * h + j]! ** 2;
    const inv = 1 / Math.sqrt(ss / h + eps);
    for (let j = 0; j < h; j++) y.data[r * h + j] = x.data[r * h + j]! * inv * w.data[j]!;
  }
  return y;
}

/** HF rotary embedding of x [batch, seq, heads, d]: x·cos + rotate_half(x)·sin. */
export function ropeRef(x: Arr, theta: number): Arr {
  const [b, t, nh, d] = x.shape as [number, number, number, number];
  const half = d / 2;
  const y = arr(x.shape);
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let hi = 0; hi < nh; hi++) {
        const base = ((bi * t + ti) * nh + hi) * d;
        for (let j = 0; j < d; j++) {
          // HF: emb = cat(freqs, freqs); rotate_half(x) = cat(-x2, x1)
          const freq = Math.pow(theta, -(2 * (j % half)) / d);
          const angle = ti * freq;
          const rotated = j < half ? -x.data[base + j + half]! : x.data[base + j - half]!;
          y.data[base + j] = x.data[base + j]! * Math.cos(angle) + rotated * Math.sin(angle);
        }
      }
    }
  }
  return y;
}

/** Causal attention, q [b, t, heads, d], k/v [b, t, kvHeads, d]; head h reads kv head h / (heads/kvHeads). */
export function attentionRef(q: Arr, k: Arr, v: Arr): Arr {
  const [b, t, nh, d] = q.shape as [number, number, number, number];
  const nkv = k.shape[2]!;
  const group = nh / nkv;
  const y = arr(q.shape);
  const at = (a: Arr, heads: number, bi: number, ti: number, hi: number, j: number): number =>
    a.data[((bi * t + ti) * heads + hi) * d + j]!;
  for (let bi = 0; bi < b; bi++) {
    for (let hi = 0; hi < nh; hi++) {
      const kv = Math.floor(hi / group);
      for (let i = 0; i < t; i++) {
        const s: number[] = [];
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let l = 0; l < d; l++) dot += at(q, nh, bi, i, hi, l) * at(k, nkv, bi, j, kv, l);
          s.push(dot / Math.sqrt(d));
        }
        const mx = Math.max(...s);
        const e = s.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, c) => a + c, 0);
        for (let l = 0; l < d; l++) {
          let o = 0;
          for (let j = 0; j <= i; j++) o += (e[j]! / z) * at(v, nkv, bi, j, kv, l);
          y.data[((bi * t + i) * nh + hi) * d + l] = o;
        }
      }
    }
  }
  return y;
}

/** silu(g)·u. */
export function swigluRef(g: Arr, u: Arr): Arr {
  return arr(g.shape, g.data.map((x, i) => (x / (1 + Math.exp(-x))) * u.data[i]!));
}

/** Rows of table [vocab, h] for each token. */
export function embeddingRef(table: Arr, tokens: ArrayLike<number>): Arr {
  const h = table.shape[1]!;
  const y = arr([tokens.length, h]);
  for (let i = 0; i < tokens.length; i++) {
    for (let j = 0; j < h; j++) y.data[i * h + j] = table.data[tokens[i]! * h + j]!;
  }
  return y;
}

/** Σ −log softmax(logits)[i, t_i] over targets ≥ 0. */
export function crossEntropyRef(logits: Arr, targets: ArrayLike<number>): number {
  const v = logits.shape[1]!;
  let loss = 0;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i]! < 0) continue;
    const row = logits.data.subarray(i * v, (i + 1) * v);
    const mx = Math.max(...row);
    let z = 0;
    for (const x of row) z += Math.exp(x - mx);
    loss += mx + Math.log(z) - row[targets[i]!]!;
  }
  return loss;
}

/** Parameters of the reference model, by engine (HF) name. */
export type RefParams = Map<string, Arr>;

function p(params: RefParams, name: string): Arr {
  const a = params.get(name);
  if (a === undefined) throw new Error(`reference: missing "${name}"`);
  return a;
}

function projName(layer: number, pr: Projection): string {
  const block = pr === "gate" || pr === "up" || pr === "down" ? "mlp" : "self_attn";
  return `model.layers.${layer}.${block}.${pr}_proj`;
}

function projRef(params: RefParams, x: Arr, layer: number, pr: Projection, loraScale: number): Arr {
  const base = projName(layer, pr);
  const y = matmul(x, p(params, `${base}.weight`));
  const a = params.get(`${base}.lora_A`);
  const b = params.get(`${base}.lora_B`);
  if (a === undefined || b === undefined) return y;
  const low = matmul(matmul(x, a), b);
  return arr(y.shape, y.data.map((v, i) => v + loraScale * low.data[i]!));
}

/** Logits [batch·seq, vocab] of the reference model with `depth` layers. */
export function forwardRef(
  shape: LlamaShape,
  params: RefParams,
  input: { tokens: ArrayLike<number>; batch: number; seq: number; loraScale: number },
): Arr {
  const { batch, seq, loraScale } = input;
  const hd = shape.hidden / shape.heads;
  const n = batch * seq;
  let h = embeddingRef(p(params, "model.embed_tokens.weight"), input.tokens);
  for (let i = 0; params.has(`model.layers.${i}.input_layernorm.weight`); i++) {
    const a = rmsNormRef(
      h,
      p(params, `model.layers.${i}.input_layernorm.weight`),
      shape.rmsNormEps,
    );
    const q = projRef(params, a, i, "q", loraScale);
    const k = projRef(params, a, i, "k", loraScale);
    const v = projRef(params, a, i, "v", loraScale);
    const o = attentionRef(
      ropeRef(arr([batch, seq, shape.heads, hd], q.data), shape.ropeTheta),
      ropeRef(arr([batch, seq, shape.kvHeads, hd], k.data), shape.ropeTheta),
      arr([batch, seq, shape.kvHeads, hd], v.data),
    );
    h = add(h, projRef(params, arr([n, shape.hidden], o.data), i, "o", loraScale));
    const m = rmsNormRef(
      h,
      p(params, `model.layers.${i}.post_attention_layernorm.weight`),
      shape.rmsNormEps,
    );
    const f = swigluRef(
      projRef(params, m, i, "gate", loraScale),
      projRef(params, m, i, "up", loraScale),
    );
    h = add(h, projRef(params, f, i, "down", loraScale));
  }
  h = rmsNormRef(h, p(params, "model.norm.weight"), shape.rmsNormEps);
  if (!shape.tiedEmbeddings) return matmul(h, p(params, "lm_head.weight"));
  const e = p(params, "model.embed_tokens.weight");
  const [vocab, hidden] = e.shape as [number, number];
  const et = arr([hidden, vocab]);
  for (let r = 0; r < vocab; r++) {
    for (let c = 0; c < hidden; c++) et.data[c * vocab + r] = e.data[r * hidden + c]!;
  }
  return matmul(h, et);
}

/**
 * Central differences (f(x+h) − f(x−h)) / 2h of a scalar function with
 * respect to every element of `x` (perturbed in place, then restored).
 */
export function finiteDiff(f: () => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const up = f();
    x[i] = x0 - h;
    const down = f();
    x[i] = x0;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/** Σ c·y: a scalar that sees every output element with its own weight. */
export function dot(y: Arr, c: Arr): number {
  let s = 0;
  for (let i = 0; i < y.data.length; i++) s += y.data[i]! * c.data[i]!;
  return s;
}
