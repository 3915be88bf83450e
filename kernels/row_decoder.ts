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
 * Where memory allows (the caller says how much is free), the layers' weights are also copied once, transposed and side by side
 * (q|k|v, gate|up), outside the heap: a token then runs four sgemv per layer over contiguous
 * output rows instead of seven over the stored [in, out] columns, which OpenBLAS reads at about
 * 1.3–1.9× the rate here (bench/generate_bench.ts). The copy is kept per parameter map and made
 * again when any weight tensor changes.
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
import { hugePageFloats, openSgemv, openTransposeCopy, type Sgemv } from "./blas/mod.ts";
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
  /** The tensor's data (changes when a variable is assigned): tells whether a packed copy is stale. */
  readonly dataId: tf.DataId;
}

/** A float32 array off the JS heap (its address never moves) and that address. */
interface Buffer {
  readonly v: Float32Array;
  readonly p: Deno.PointerValue;
}

/**
 * Products whose outputs lie side by side in one row (q|k|v, gate|up, or one projection): each
 * part is a weight [in, width] and, when attached, its adapter A [in, r], B [r, width].
 */
interface Group {
  readonly input: number;
  readonly width: number;
  readonly parts: readonly {
    readonly w: Matrix;
    readonly offset: number;
    readonly lora?: { readonly a: Matrix; readonly b: Matrix };
  }[];
}

interface LayerWeights {
  readonly inputNorm: number;
  readonly postNorm: number;
  readonly qkv: Group;
  readonly o: Group;
  readonly gateUp: Group;
  readonly down: Group;
}

/** Each group's weights transposed, [width, input] row-major, outside the heap. */
interface Packed {
  readonly ids: readonly tf.DataId[];
  readonly layers: readonly Readonly<Record<"qkv" | "o" | "gateUp" | "down", Buffer>>[];
  /** The untied head as [vocab, hidden]; a tied head is already stored so. */
  readonly head?: Buffer;
}

/** One packed copy per parameter map: a bench or a chat generates many times from one model. */
const packedByParams = new WeakMap<object, Packed>();

/** A one-token decoder over a model's weights; see the module doc. */
export interface RowDecoder {
  /** Positions in the cache. */
  readonly length: number;
  /** Whether it reads a packed copy of the weights (see the module doc) or the heap in place. */
  readonly packed: boolean;
  /** Replaces the cache with a tfjs one (`[kvHeads, length, headDim]` per layer); the caller keeps it. */
  load(cache: KvCache): void;
  /** Runs `token` at position `length` and returns the next-token logits (a new array). */
  step(token: number): Float32Array;
}

/** Options of {@link openRowDecoder}. */
export interface RowDecoderOptions {
  /**
   * Pack the weights (module doc): true whatever the copy's size, false never; left out, when
   * the copy takes at most a quarter of `availableBytes`.
   */
  readonly pack?: boolean;
  /**
   * The memory the machine can give this process now, as the caller read it
   * (`effects/machine_memory.ts`'s `availableMemory`); left out, {@link UNKNOWN_MEMORY_BYTES}.
   */
  readonly availableBytes?: number;
}

/** What the packing assumes free where the caller says nothing: copies up to 256 MiB. */
export const UNKNOWN_MEMORY_BYTES = 2 ** 30;

/** Packed products of at least this many elements run on two threads (measured, module doc). */
const PACKED_SINGLE_THREAD_BELOW = 1 << 16;

/**
 * A row decoder for `model` when it can run one: the active backend is "wasm", OpenBLAS with
 * sgemv loads, and every weight is a float32 tensor in the wasm heap. Left says why not (the
 * caller decodes through tfjs instead). The weights must stay alive and unchanged while the
 * decoder is used; it holds no tensors, only plain arrays (its cache, and the packed copy).
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
export function openRowDecoder(
  model: Model,
  options: RowDecoderOptions = {},
): E.Either<string, RowDecoder> {
  if (tf.getBackend() !== "wasm") return E.left(`the backend is ${tf.getBackend()}, not wasm`);
  const gemv = openSgemv();
  if (E.isLeft(gemv)) return gemv;
  const backend = tf.backend() as unknown as WasmBackendLike;
  const s = model.shape;
  const matrixOf = (name: string): Matrix => {
    const t = model.params.get(name);
    if (t === undefined) throw new Error(`no parameter ${name}`);
    if (t.dtype !== "float32" || t.isDisposed) {
      throw new Error(`${name} is not a live float32 tensor`);
    }
    const info = backend.dataIdMap.get(t.dataId);
    if (info === undefined) throw new Error(`${name} is not in the wasm heap`);
    return {
      at: info.memoryOffset,
      rows: t.shape[0] ?? 1,
      cols: t.shape[1] ?? 1,
      dataId: t.dataId,
    };
  };
  const groupOf = (l: number, projections: readonly Projection[]): Group => {
    let width = 0;
    const parts = projections.map((p) => {
      const name = projectionWeight(l, p);
      const w = matrixOf(name);
      const ln = loraNames(name);
      const lora = model.params.has(ln.a) || model.params.has(ln.b)
        ? { a: matrixOf(ln.a), b: matrixOf(ln.b) }
        : undefined;
      const part = { w, offset: width, ...(lora !== undefined ? { lora } : {}) };
      width += w.cols;
      return part;
    });
    return { input: parts[0]!.w.rows, width, parts };
  };
  try {
    const depth = depthOf(model.params.keys());
    const layers: LayerWeights[] = [];
    for (let l = 0; l < depth; l++) {
      const norms = layerNormNames(l);
      layers.push({
        inputNorm: matrixOf(norms.input).at,
        postNorm: matrixOf(norms.post).at,
        qkv: groupOf(l, ["q", "k", "v"]),
        o: groupOf(l, ["o"]),
        gateUp: groupOf(l, ["gate", "up"]),
        down: groupOf(l, ["down"]),
      });
    }
    const embed = matrixOf(EMBED);
    const finalNorm = matrixOf(FINAL_NORM).at;
    const head = s.tiedEmbeddings ? embed : matrixOf(LM_HEAD);
    const weights = { layers, embed, finalNorm, head };
    const packed = packedWeights(model, backend, weights, options);
    return E.right(rowDecoderOver(model, gemv.right, backend, weights, packed));
  } catch (e: unknown) {
    return E.left(e instanceof Error ? e.message : String(e));
  }
}

function buffer(length: number): Buffer {
  const v = new Float32Array(new ArrayBuffer(Math.max(1, length) * 4));
  return { v, p: Deno.UnsafePointer.of(v) };
}

interface Weights {
  readonly layers: readonly LayerWeights[];
  readonly embed: Matrix;
  readonly finalNorm: number;
  readonly head: Matrix;
}

const GROUPS = ["qkv", "o", "gateUp", "down"] as const;

/** The packed copy of `w` (module doc): reused while every weight is the same tensor data. */
function packedWeights(
  model: Model,
  backend: WasmBackendLike,
  w: Weights,
  options: RowDecoderOptions,
): Packed | undefined {
  if (options.pack === false) return undefined;
  const ids = w.layers.flatMap((l) => GROUPS.flatMap((g) => l[g].parts.map((p) => p.w.dataId)));
  const untied = !model.shape.tiedEmbeddings;
  if (untied) ids.push(w.head.dataId);
  const kept = packedByParams.get(model.params);
  if (
    kept !== undefined && kept.ids.length === ids.length && kept.ids.every((id, i) => id === ids[i])
  ) {
    return kept;
  }
  packedByParams.delete(model.params);
  const floats =
    w.layers.reduce((n, l) => n + GROUPS.reduce((m, g) => m + l[g].input * l[g].width, 0), 0) +
    (untied ? w.head.rows * w.head.cols : 0);
  const budget = (options.availableBytes ?? UNKNOWN_MEMORY_BYTES) / 4;
  if (options.pack === undefined && floats * 4 > budget) return undefined;
  const copy = openTransposeCopy();
  if (E.isLeft(copy)) return undefined; // a CBLAS without OpenBLAS's extension: read in place
  const heap = Deno.UnsafePointer.of(backend.wasm.HEAPU8);
  // One allocation for the whole copy, on huge pages where the OS gives them: a token streams it.
  const all = hugePageFloats(floats);
  let used = 0;
  const transposed = (group: Group): Buffer => {
    const n = group.input * group.width;
    const v = all.subarray(used, used + n);
    used += n;
    const out = { v, p: Deno.UnsafePointer.of(v) };
    for (const part of group.parts) {
      const to = Deno.UnsafePointer.offset(out.p!, 4 * part.offset * group.input);
      const from = Deno.UnsafePointer.offset(heap!, part.w.at);
      copy.right(from, part.w.rows, part.w.cols, to, group.input);
    }
    return out;
  };
  const made: Packed = {
    ids,
    layers: w.layers.map((l) => ({
      qkv: transposed(l.qkv),
      o: transposed(l.o),
      gateUp: transposed(l.gateUp),
      down: transposed(l.down),
    })),
    ...(untied
      ? {
        head: transposed({
          input: w.head.rows,
          width: w.head.cols,
          parts: [{ w: w.head, offset: 0 }],
        }),
      }
      : {}),
  };
  packedByParams.set(model.params, made);
  return made;
}

function rowDecoderOver(
  model: Model,
  gemv: Sgemv,
  backend: WasmBackendLike,
  w: Weights,
  packed: Packed | undefined,
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
  // q|k|v and gate|up side by side, as the packed groups write them.
  const qkv = buffer(d + 2 * kvWidth);
  const q = qkv.v.subarray(0, d);
  const k = qkv.v.subarray(d, d + kvWidth);
  const v = qkv.v.subarray(d + kvWidth);
  const att = buffer(d);
  const y = buffer(d);
  const gateUp = buffer(2 * s.intermediate);
  const rank = Math.max(
    1,
    ...w.layers.flatMap((l) => GROUPS.flatMap((g) => l[g].parts.map((p) => p.lora?.a.cols ?? 1))),
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
  // A token makes ~100 FFI calls: their pointers are made once (per heap move), not per call.
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
  const qHeads = Array.from({ length: s.heads }, (_, h) => offset(qkv.p, h * hd));
  const attHeads = Array.from({ length: s.heads }, (_, h) => offset(att.p, h * hd));
  const keyHeads = keys.map((b) =>
    Array.from({ length: s.kvHeads }, (_, kv) => offset(b.p, kv * maxLen * hd))
  );
  const valueHeads = values.map((b) =>
    Array.from({ length: s.kvHeads }, (_, kv) => offset(b.p, kv * maxLen * hd))
  );
  // Where each part of each group writes, made once.
  const partOut = new Map<Matrix, Deno.PointerValue>();
  const outOf = (g: Group, out: Buffer) => {
    for (const part of g.parts) partOut.set(part.w, offset(out.p, part.offset));
  };
  for (const l of w.layers) {
    outOf(l.qkv, qkv);
    outOf(l.o, y);
    outOf(l.gateUp, gateUp);
    outOf(l.down, y);
  }

  /** out = input · [W₁ | W₂ …] (+ scale · input · Aᵢ · Bᵢ per part with an adapter). */
  const product = (g: Group, wt: Buffer | undefined, input: Deno.PointerValue): void => {
    if (wt !== undefined) {
      gemv({
        trans: false,
        rows: g.width,
        cols: g.input,
        a: wt.p,
        lda: g.input,
        x: input,
        y: partOut.get(g.parts[0]!.w)!,
        alpha: 1,
        beta: 0,
        singleThreadBelow: PACKED_SINGLE_THREAD_BELOW,
      });
    }
    for (const part of g.parts) {
      const m = part.w;
      const out = partOut.get(m)!;
      // W stored [in, out]: op = Wᵀ on the row.
      if (wt === undefined) {
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
      }
      if (part.lora === undefined) continue;
      const { a: la, b: lb } = part.lora;
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
    }
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
      // scores = K_h · q_h / √hd over the cached positions
      gemv({
        trans: false,
        rows: positions,
        cols: hd,
        a: kAt,
        lda: hd,
        x: qHeads[h]!,
        y: probs.p,
        alpha: scale,
        beta: 0,
      });
      let max = -Infinity;
      for (let j = 0; j < positions; j++) if (p[j]! > max) max = p[j]!;
      let sum = 0;
      for (let j = 0; j < positions; j++) {
        const e = Math.exp(p[j]! - max);
        p[j] = e;
        sum += e;
      }
      // out_h = V_hᵀ · softmax
      gemv({
        trans: true,
        rows: positions,
        cols: hd,
        a: vAt,
        lda: hd,
        x: probs.p,
        y: attHeads[h]!,
        alpha: 1 / sum, // the softmax's normalisation
        beta: 0,
      });
    }
  };

  return {
    get length() {
      return length;
    },
    packed: packed !== undefined,
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
      const I = s.intermediate;
      w.layers.forEach((lw, l) => {
        const pl = packed?.layers[l];
        rmsNorm(x.v, lw.inputNorm, a.v);
        product(lw.qkv, pl?.qkv, a.p);
        rotate(q, s.heads);
        rotate(k, s.kvHeads);
        for (let h = 0; h < s.kvHeads; h++) {
          keys[l]!.v.set(k.subarray(h * hd, (h + 1) * hd), (h * maxLen + pos) * hd);
          values[l]!.v.set(v.subarray(h * hd, (h + 1) * hd), (h * maxLen + pos) * hd);
        }
        attend(l, pos + 1);
        product(lw.o, pl?.o, att.p);
        for (let i = 0; i < d; i++) x.v[i] = x.v[i]! + y.v[i]!;
        rmsNorm(x.v, lw.postNorm, a.v);
        product(lw.gateUp, pl?.gateUp, a.p);
        // SwiGLU in place over the gate half; down reads it.
        const gu = gateUp.v;
        for (let i = 0; i < I; i++) gu[i] = (gu[i]! / (1 + Math.exp(-gu[i]!))) * gu[I + i]!;
        product(lw.down, pl?.down, gateUp.p);
        for (let i = 0; i < d; i++) x.v[i] = x.v[i]! + y.v[i]!;
      });
      rmsNorm(x.v, w.finalNorm, a.v);
      const hm = w.head;
      if (packed?.head !== undefined) {
        gemv({
          trans: false,
          rows: hm.cols,
          cols: hm.rows,
          a: packed.head.p,
          lda: hm.rows,
          x: a.p,
          y: logits.p,
          alpha: 1,
          beta: 0,
          singleThreadBelow: PACKED_SINGLE_THREAD_BELOW,
        });
      } else {
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
      }
      length = pos + 1;
      return logits.v.slice();
    },
  };
}
