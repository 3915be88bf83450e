/**
 * Decoding one token at a time without tfjs ops: on the "wasm" backend, OpenBLAS's sgemv reads
 * the model's weights where they lie in the wasm heap, a preallocated key/value cache is written
 * in place, and the row-sized work between the products (RMSNorm, RoPE, softmax over the cached
 * positions, SwiGLU, residuals) runs as plain loops.
 *
 * Why: a token through tfjs costs about thirty kernel dispatches per layer (tape, allocation,
 * reshapes, the cache's concatenation), several times the arithmetic at small widths; and
 * OpenBLAS's sgemm packs each weight matrix before a one-row product, which sgemv does not.
 * Prefill stays on the tfjs path (a prompt is a real matrix product); its cache is copied in.
 *
 * The arithmetic is the tfjs path's (kernels/model.ts, decode.ts), rounded at different points
 * (float64 loops here, float32 kernels there): tests compare the logits with a tolerance.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import {
  EMBED,
  FINAL_NORM,
  layerNormNames,
  LM_HEAD,
  loraNames,
  type Projection,
  projectionWeight,
} from "../base/mod.ts";
import { openSgemv, type Sgemv } from "./blas/mod.ts";
import { depthOf } from "../checkpoint/mod.ts";
import type { KvCache } from "./decode.ts";
import type { Model } from "./model.ts";

/** The parts of tfjs-backend-wasm 4.22's BackendWasm read here (pinned in deno.json). */
interface WasmBackendLike {
  readonly wasm: { readonly HEAPU8: Uint8Array };
  readonly dataIdMap: {
    get(dataId: tf.DataId): { readonly memoryOffset: number } | undefined;
  };
}

/** A weight matrix in the heap: byte offset, stored [rows, cols]. */
interface Matrix {
  readonly at: number;
  readonly rows: number;
  readonly cols: number;
}

/** A projection's weight [in, out] and, when attached, its adapter A [in, r], B [r, out]. */
interface Linear {
  readonly w: Matrix;
  readonly lora?: { readonly a: Matrix; readonly b: Matrix };
}

interface LayerWeights {
  readonly inputNorm: number;
  readonly postNorm: number;
  readonly proj: Readonly<Record<Projection, Linear>>;
}

/** A one-token decoder over a model's weights; see the module doc. */
export interface RowDecoder {
  /** Positions in the cache. */
  readonly length: number;
  /** Replaces the cache with a tfjs one (`[kvHeads, length, headDim]` per layer); the caller keeps it. */
  load(cache: KvCache): void;
  /** Runs `token` at position `length` and returns the next-token logits (a new array). */
  step(token: number): Float32Array;
}

const PROJECTIONS: readonly Projection[] = ["q", "k", "v", "o", "gate", "up", "down"];

/**
 * A row decoder for `model` when it can run one: the active backend is "wasm", OpenBLAS with
 * sgemv loads, and every weight is a float32 tensor in the wasm heap. Left says why not (the
 * caller decodes through tfjs instead). The weights must stay alive and unchanged while the
 * decoder is used; it holds no tensors, only its cache's plain arrays.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { openRowDecoder } from "./row_decoder.ts";
 * import { prefill, disposeCache } from "./decode.ts";
 * import { disposeParams, initParams } from "./params.ts";
 * import { initBackend } from "./backend.ts";
 * await initBackend("wasm");
 * const shape = {
 *   hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 1, vocab: 11,
 *   tiedEmbeddings: true, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 * };
 * const model = { shape, params: initParams(shape, 1, 0), loraScale: 1 };
 * const rows = openRowDecoder(model);
 * if (E.isRight(rows)) {
 *   const p = prefill(model, [1, 2, 3]);
 *   p.logits.dispose();
 *   rows.right.load(p.cache);
 *   disposeCache(p.cache);
 *   console.assert(rows.right.step(4).length === 11);
 * }
 * disposeParams(model.params);
 * ```
 */
export function openRowDecoder(model: Model): E.Either<string, RowDecoder> {
  if (tf.getBackend() !== "wasm") return E.left(`the backend is ${tf.getBackend()}, not wasm`);
  const gemv = openSgemv();
  if (E.isLeft(gemv)) return gemv;
  const backend = tf.backend() as unknown as WasmBackendLike;
  const s = model.shape;
  const matrixOf = (name: string): Matrix | string => {
    const t = model.params.get(name);
    if (t === undefined) return `no parameter ${name}`;
    if (t.dtype !== "float32" || t.isDisposed) return `${name} is not a live float32 tensor`;
    const info = backend.dataIdMap.get(t.dataId);
    if (info === undefined) return `${name} is not in the wasm heap`;
    return { at: info.memoryOffset, rows: t.shape[0] ?? 1, cols: t.shape[1] ?? 1 };
  };
  try {
    const depth = depthOf(model.params.keys());
    const layers: LayerWeights[] = [];
    for (let l = 0; l < depth; l++) {
      const norms = layerNormNames(l);
      const inputNorm = matrixOf(norms.input);
      const postNorm = matrixOf(norms.post);
      if (typeof inputNorm === "string") return E.left(inputNorm);
      if (typeof postNorm === "string") return E.left(postNorm);
      const proj = {} as Record<Projection, Linear>;
      for (const p of PROJECTIONS) {
        const name = projectionWeight(l, p);
        const w = matrixOf(name);
        if (typeof w === "string") return E.left(w);
        const ln = loraNames(name);
        if (model.params.has(ln.a) || model.params.has(ln.b)) {
          const a = matrixOf(ln.a);
          const b = matrixOf(ln.b);
          if (typeof a === "string") return E.left(a);
          if (typeof b === "string") return E.left(b);
          proj[p] = { w, lora: { a, b } };
        } else {
          proj[p] = { w };
        }
      }
      layers.push({ inputNorm: inputNorm.at, postNorm: postNorm.at, proj });
    }
    const embed = matrixOf(EMBED);
    const finalNorm = matrixOf(FINAL_NORM);
    const head = s.tiedEmbeddings ? embed : matrixOf(LM_HEAD);
    if (typeof embed === "string") return E.left(embed);
    if (typeof finalNorm === "string") return E.left(finalNorm);
    if (typeof head === "string") return E.left(head);
    return E.right(
      rowDecoderOver(model, gemv.right, backend, { layers, embed, finalNorm: finalNorm.at, head }),
    );
  } catch (e: unknown) {
    return E.left(e instanceof Error ? e.message : String(e));
  }
}

/** A float32 array off the JS heap (its address never moves) and that address. */
function buffer(length: number): { readonly v: Float32Array; readonly p: Deno.PointerValue } {
  const v = new Float32Array(new ArrayBuffer(Math.max(1, length) * 4));
  return { v, p: Deno.UnsafePointer.of(v) };
}

function rowDecoderOver(
  model: Model,
  gemv: Sgemv,
  backend: WasmBackendLike,
  w: {
    readonly layers: readonly LayerWeights[];
    readonly embed: Matrix;
    readonly finalNorm: number;
    readonly head: Matrix;
  },
): RowDecoder {
  const s = model.shape;
  const d = s.hidden;
  const hd = d / s.heads;
  const half = hd / 2;
  const group = s.heads / s.kvHeads;
  const kvWidth = s.kvHeads * hd;
  const maxLen = s.maxSeqLen;
  const eps = s.rmsNormEps;
  const x = buffer(d);
  const a = buffer(d);
  const q = buffer(d);
  const k = buffer(kvWidth);
  const v = buffer(kvWidth);
  const att = buffer(d);
  const y = buffer(Math.max(d, s.intermediate));
  const gate = buffer(s.intermediate);
  const up = buffer(s.intermediate);
  const rank = Math.max(
    1,
    ...w.layers.flatMap((l) => PROJECTIONS.map((p) => l.proj[p].lora?.a.cols ?? 1)),
  );
  const low = buffer(rank);
  const probs = buffer(maxLen);
  const logits = buffer(s.vocab);
  // Per layer, keys and values as [kvHeads, maxLen, headDim]: one head's rows are a matrix.
  const keys = w.layers.map(() => buffer(s.kvHeads * maxLen * hd));
  const values = w.layers.map(() => buffer(s.kvHeads * maxLen * hd));
  const inverseFrequency = Float64Array.from(
    { length: half },
    (_, i) => Math.pow(s.ropeTheta, (-2 * i) / hd),
  );
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  let length = 0;

  // The heap's Float32Array and base address change when wasm memory grows: read them per step.
  let heapBuffer: ArrayBufferLike | undefined;
  let heapF32: Float32Array = new Float32Array(0);
  let base: Deno.PointerValue = null;
  const refreshHeap = (): void => {
    const bytes = backend.wasm.HEAPU8;
    if (bytes.buffer === heapBuffer) return;
    heapBuffer = bytes.buffer;
    heapF32 = new Float32Array(bytes.buffer);
    base = Deno.UnsafePointer.of(bytes);
    weightPointers.clear();
  };
  // A token makes ~150 FFI calls: their pointers are made once (per heap move), not per call.
  const weightPointers = new Map<number, Deno.PointerValue>();
  const at = (byteOffset: number): Deno.PointerValue => {
    let p = weightPointers.get(byteOffset);
    if (p === undefined) {
      p = Deno.UnsafePointer.offset(base!, byteOffset);
      weightPointers.set(byteOffset, p);
    }
    return p;
  };
  const offset = (p: Deno.PointerValue, floats: number): Deno.PointerValue =>
    floats === 0 ? p : Deno.UnsafePointer.offset(p!, floats * 4);
  const qHeads = Array.from({ length: s.heads }, (_, h) => offset(q.p, h * hd));
  const attHeads = Array.from({ length: s.heads }, (_, h) => offset(att.p, h * hd));
  const keyHeads = keys.map((b) =>
    Array.from({ length: s.kvHeads }, (_, kv) => offset(b.p, kv * maxLen * hd))
  );
  const valueHeads = values.map((b) =>
    Array.from({ length: s.kvHeads }, (_, kv) => offset(b.p, kv * maxLen * hd))
  );

  /** out = input · W (+ scale · input · A · B): W stored [in, out], so op = Wᵀ on the row. */
  const linear = (lin: Linear, input: Deno.PointerValue, out: Deno.PointerValue): void => {
    const { w: m } = lin;
    gemv({
      trans: true,
      rows: m.rows,
      cols: m.cols,
      a: at(m.at),
      lda: m.cols,
      x: input,
      y: out,
      alpha: 1,
      beta: 0,
    });
    if (lin.lora === undefined) return;
    const { a: la, b: lb } = lin.lora;
    gemv({
      trans: true,
      rows: la.rows,
      cols: la.cols,
      a: at(la.at),
      lda: la.cols,
      x: input,
      y: low.p,
      alpha: 1,
      beta: 0,
    });
    gemv({
      trans: true,
      rows: lb.rows,
      cols: lb.cols,
      a: at(lb.at),
      lda: lb.cols,
      x: low.p,
      y: out,
      alpha: model.loraScale,
      beta: 1,
    });
  };

  const rmsNorm = (from: Float32Array, weightAt: number, to: Float32Array): void => {
    let sum = 0;
    for (let i = 0; i < d; i++) sum += from[i]! * from[i]!;
    const r = 1 / Math.sqrt(sum / d + eps);
    const wi = weightAt / 4;
    for (let i = 0; i < d; i++) to[i] = from[i]! * r * heapF32[wi + i]!;
  };

  /** HF's rotate_half RoPE on `heads` heads of `row`, at the position the tables hold. */
  const rotate = (row: Float32Array, heads: number): void => {
    for (let h = 0; h < heads; h++) {
      const o = h * hd;
      for (let i = 0; i < half; i++) {
        const x1 = row[o + i]!;
        const x2 = row[o + half + i]!;
        row[o + i] = x1 * cos[i]! - x2 * sin[i]!;
        row[o + half + i] = x2 * cos[i]! + x1 * sin[i]!;
      }
    }
  };

  const attend = (layer: number, positions: number): void => {
    const scale = 1 / Math.sqrt(hd);
    const p = probs.v;
    for (let h = 0; h < s.heads; h++) {
      const kv = Math.floor(h / group);
      const kAt = keyHeads[layer]![kv]!;
      const vAt = valueHeads[layer]![kv]!;
      // scores = K_h · q_h over the cached positions
      gemv({
        trans: false,
        rows: positions,
        cols: hd,
        a: kAt,
        lda: hd,
        x: qHeads[h]!,
        y: probs.p,
        alpha: 1,
        beta: 0,
      });
      let max = -Infinity;
      for (let j = 0; j < positions; j++) {
        p[j] = p[j]! * scale;
        if (p[j]! > max) max = p[j]!;
      }
      let sum = 0;
      for (let j = 0; j < positions; j++) {
        const e = Math.exp(p[j]! - max);
        p[j] = e;
        sum += e;
      }
      for (let j = 0; j < positions; j++) p[j] = p[j]! / sum;
      // out_h = V_hᵀ · p
      gemv({
        trans: true,
        rows: positions,
        cols: hd,
        a: vAt,
        lda: hd,
        x: probs.p,
        y: attHeads[h]!,
        alpha: 1,
        beta: 0,
      });
    }
  };

  return {
    get length() {
      return length;
    },
    load(cache: KvCache): void {
      if (cache.layers.length !== w.layers.length) {
        throw new Error(
          `RowDecoder.load: ${cache.layers.length} cached layers, the model has ${w.layers.length}`,
        );
      }
      if (cache.length > maxLen) {
        throw new Error(`RowDecoder.load: ${cache.length} positions > maxSeqLen ${maxLen}`);
      }
      cache.layers.forEach((l, i) => {
        for (const [from, to] of [[l.k, keys[i]!.v], [l.v, values[i]!.v]] as const) {
          const data = from.dataSync() as Float32Array;
          for (let h = 0; h < s.kvHeads; h++) {
            to.set(
              data.subarray(h * cache.length * hd, (h + 1) * cache.length * hd),
              h * maxLen * hd,
            );
          }
        }
      });
      length = cache.length;
    },
    step(token: number): Float32Array {
      if (!(Number.isInteger(token) && token >= 0 && token < s.vocab)) {
        throw new Error(`Token id ${token} is outside [0, ${s.vocab})`);
      }
      if (length >= maxLen) {
        throw new Error(`Cannot decode past the model's maxSeqLen ${maxLen}`);
      }
      refreshHeap();
      const pos = length;
      for (let i = 0; i < half; i++) {
        const angle = pos * inverseFrequency[i]!;
        cos[i] = Math.cos(angle);
        sin[i] = Math.sin(angle);
      }
      const e0 = (w.embed.at / 4) + token * d;
      x.v.set(heapF32.subarray(e0, e0 + d));
      w.layers.forEach((lw, l) => {
        rmsNorm(x.v, lw.inputNorm, a.v);
        linear(lw.proj.q, a.p, q.p);
        linear(lw.proj.k, a.p, k.p);
        linear(lw.proj.v, a.p, v.p);
        rotate(q.v, s.heads);
        rotate(k.v, s.kvHeads);
        for (let h = 0; h < s.kvHeads; h++) {
          keys[l]!.v.set(k.v.subarray(h * hd, (h + 1) * hd), (h * maxLen + pos) * hd);
          values[l]!.v.set(v.v.subarray(h * hd, (h + 1) * hd), (h * maxLen + pos) * hd);
        }
        attend(l, pos + 1);
        linear(lw.proj.o, att.p, y.p);
        for (let i = 0; i < d; i++) x.v[i] = x.v[i]! + y.v[i]!;
        rmsNorm(x.v, lw.postNorm, a.v);
        linear(lw.proj.gate, a.p, gate.p);
        linear(lw.proj.up, a.p, up.p);
        const g = gate.v;
        const u = up.v;
        for (let i = 0; i < s.intermediate; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
        linear(lw.proj.down, gate.p, y.p);
        for (let i = 0; i < d; i++) x.v[i] = x.v[i]! + y.v[i]!;
      });
      rmsNorm(x.v, w.finalNorm, a.v);
      const hm = w.head;
      // Untied head [hidden, vocab]: logits = headᵀ·a; tied, the embedding [vocab, hidden]: E·a.
      gemv({
        trans: !s.tiedEmbeddings,
        rows: hm.rows,
        cols: hm.cols,
        a: at(hm.at),
        lda: hm.cols,
        x: a.p,
        y: logits.p,
        alpha: 1,
        beta: 0,
      });
      length = pos + 1;
      return logits.v.slice();
    },
  };
}
