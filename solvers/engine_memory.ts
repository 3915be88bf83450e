/**
 * The memory of one training step of this project's engine, predicted by
 * replaying the step's tensor buffers on a timeline: every buffer the forward
 * pass makes, which ones the gradient tape keeps and until when, the
 * gradients the backward pass makes and frees node by node, and the
 * optimizer's temporaries. The peak of that timeline is the prediction of
 * the engine's measured peak (distinct tensor buffers, `kernels/peak_memory.ts`).
 *
 * It encodes the engine's rules, not a fit: tfjs keeps an op's saved inputs
 * until the backward pass reaches the op, a layer's other temporaries die at
 * the layer's end, the backward pass frees each saved tensor and each
 * intermediate gradient once used (`kernels/_backprop.ts`), and an op is
 * fused (one kernel, its own small saved set) or composite (plain tfjs ops
 * and their temporaries). Measured against it on a grid of shapes in
 * `bench/memory_grid.ts` (docs/memory.md: the error table).
 *
 * @module
 */
import {
  attentionParts,
  type AttentionScratch,
  attentionScratch,
  type LlamaShape,
  type Projection,
  projectionDims,
  PROJECTIONS,
  type StageRoles,
} from "../base/mod.ts";

/**
 * Ops that may run as one fused kernel or as composite tfjs ops; `adamwInPlace`: the fused AdamW
 * writes into its inputs' buffers (wasm) instead of new ones (webgpu); `productSums`: a matrix
 * product's contribution to a gradient already begun is added inside the product, into the
 * running sum's buffer (the pooled products of `kernels/fused`), instead of by an Add.
 */
export const FUSIBLE_OPS = [
  "rmsNorm",
  "rope",
  "attention",
  "swiglu",
  "crossEntropy",
  "adamw",
  "adamwInPlace",
  "sumSquares",
  "productSums",
] as const;
/** One of {@link FUSIBLE_OPS}. */
export type FusibleOp = typeof FUSIBLE_OPS[number];

/** What a fused set means for memory: the optimizer update's copies and the attention kept. */
export interface KernelTraits {
  /**
   * Parameter-sized buffers the optimizer update holds beside the state for one tensor: 0 for a
   * fused AdamW in place, 3 for one writing a new weight, m and v, 6 for the composite (the
   * clipped gradient, the new m, three temporaries and the new v, `kernels/adamw.ts`).
   */
  readonly updateBuffers: number;
  /** `fused`: one log-sum-exp per head and row kept; `composite`: each head's probabilities. */
  readonly attention: "fused" | "composite";
  /** `fused`: the global gradient norm reads the gradients in place; `composite`: squares each. */
  readonly gradientNorm: "fused" | "composite";
  /** Whether a product's contribution to a gradient sum is added inside the product. */
  readonly productSums: boolean;
}

/**
 * The traits of a backend's fused ops.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FUSIBLE_OPS, kernelTraits } from "./engine_memory.ts";
 * assert.deepEqual(kernelTraits(FUSIBLE_OPS), {
 *   updateBuffers: 0, attention: "fused", gradientNorm: "fused", productSums: true,
 * });
 * assert.deepEqual(kernelTraits([]), {
 *   updateBuffers: 6, attention: "composite", gradientNorm: "composite", productSums: false,
 * });
 * ```
 */
export function kernelTraits(fused: readonly FusibleOp[]): KernelTraits {
  return {
    updateBuffers: fused.includes("adamw") ? (fused.includes("adamwInPlace") ? 0 : 3) : 6,
    attention: fused.includes("attention") ? "fused" : "composite",
    gradientNorm: fused.includes("sumSquares") ? "fused" : "composite",
    productSums: fused.includes("productSums"),
  };
}

/** How the step recomputes: `none` keeps every layer's activations for the backward pass. */
export type Recompute = "none" | "layers";

/** What the prediction needs to know about one step. */
export interface EngineStepSpec {
  /** The model's widths; the stage's depth comes from `roles`. */
  readonly shape: LlamaShape;
  /** What trains this stage (`base/stage_roles.ts`), its depth included. */
  readonly roles: StageRoles;
  /** Adapter rank on the frozen layers' targeted projections (ignored without targets). */
  readonly rank: number;
  /** Sequences per micro-batch. */
  readonly microBatch: number;
  /** Tokens per sequence. */
  readonly seqLen: number;
  /** Micro-batches per optimizer step. */
  readonly accumulation: number;
  /** Ops that run fused on the backend; the others run composite. */
  readonly fused: readonly FusibleOp[];
  /**
   * Whether the backward pass recomputes each layer's forward instead of keeping its activations.
   */
  readonly recompute: Recompute;
  /** Tokens per chunk of the LM head and cross-entropy (`kernels/ops/chunked_loss.ts`); unset: whole. */
  readonly lossChunk?: number;
  /**
   * Threads the fused CPU kernels cut a call over (`kernels/fused/_pool.ts`): fused attention
   * holds one scratch area per part (`base/kernel_parts.ts`). Default 1.
   */
  readonly kernelThreads?: number;
}

/** The predicted step. */
export interface EngineStepMemory {
  /** The timeline's peak: the whole prediction. */
  readonly peakBytes: number;
  /** Weights, gradients and Adam moments (fp32): the model state the plan counts. */
  readonly modelStateBytes: number;
  /** The buffer that made the peak, e.g. `backward layer 3 swiglu`. */
  readonly peakAt: string;
}

/** A set of named buffers and the most bytes it held at once. */
class Timeline {
  held = 0;
  peak = 0;
  peakAt = "";
  readonly sizes = new Map<string, number>();

  alloc(name: string, floats: number, at: string): void {
    if (floats <= 0) return;
    const bytes = 4 * floats;
    this.sizes.set(name, (this.sizes.get(name) ?? 0) + bytes);
    this.held += bytes;
    if (this.held > this.peak) {
      this.peak = this.held;
      this.peakAt = at;
    }
  }

  /** Allocates and frees at once: a temporary inside one kernel or node. */
  spike(floats: number, at: string): void {
    this.alloc("~spike", floats, at);
    this.free("~spike");
  }

  free(...names: readonly string[]): void {
    for (const name of names) {
      const bytes = this.sizes.get(name);
      if (bytes === undefined) continue;
      this.sizes.delete(name);
      this.held -= bytes;
    }
  }

  rename(from: string, to: string): void {
    const bytes = this.sizes.get(from);
    if (bytes === undefined) return;
    this.sizes.delete(from);
    this.sizes.set(to, (this.sizes.get(to) ?? 0) + bytes);
  }
}

interface Dims {
  readonly n: number;
  readonly h: number;
  readonly kv: number;
  readonly f: number;
  readonly heads: number;
  readonly seq: number;
  readonly vocab: number;
  /** Query heads per kv head. */
  readonly group: number;
}

interface Layer {
  readonly index: number;
  readonly trains: boolean;
  /** Projections with adapters (empty when the layer trains or carries none). */
  readonly adapted: ReadonlySet<Projection>;
}

/** The step being replayed. */
interface Replay {
  readonly t: Timeline;
  readonly spec: EngineStepSpec;
  readonly d: Dims;
  readonly fused: ReadonlySet<FusibleOp>;
}

function dimsOf(spec: EngineStepSpec): Dims {
  const s = spec.shape;
  const headDim = s.hidden / s.heads;
  return {
    n: spec.microBatch * spec.seqLen,
    h: s.hidden,
    kv: s.kvHeads * headDim,
    f: s.intermediate,
    heads: s.heads,
    seq: spec.seqLen,
    vocab: s.vocab,
    group: s.heads / s.kvHeads,
  };
}

function layersOf(spec: EngineStepSpec): Layer[] {
  const fresh = new Set(spec.roles.newLayers);
  return Array.from({ length: spec.roles.layers }, (_, index) => ({
    index,
    trains: fresh.has(index),
    adapted: fresh.has(index) ? new Set<Projection>() : new Set(spec.roles.targets),
  }));
}

/** Parameters of one projection's weight. */
function weightSize(shape: LlamaShape, p: Projection): number {
  const d = projectionDims(shape, p);
  return d.in * d.out;
}

// ---- forward ----

/** A projection x·W (+ LoRA branch): its output, and the temporaries the layer keeps to its end. */
function projectForward(r: Replay, l: Layer, p: Projection, out: string): void {
  const { t, d } = r;
  const dims = projectionDims(r.spec.shape, p);
  const at = `forward layer ${l.index} ${p}_proj`;
  if (!l.adapted.has(p)) {
    t.alloc(out, d.n * dims.out, at);
    return;
  }
  // x·A (kept by the second matmul) and the sum; x·W, (x·A)·B and its scaled copy die with the
  // branch's own scope (`kernels/ops/linear.ts`).
  t.alloc(`L${l.index}.${p}.xA`, d.n * r.spec.rank, at);
  t.alloc(out, d.n * dims.out, at);
  t.spike(3 * d.n * dims.out, at);
}

// A composite op is a `customGrad` whose forward runs in its own scope: its temporaries live
// only while it runs (a spike beside its output), what it saves until its backward node.

function rmsForward(r: Replay, name: string, out: string, at: string): void {
  const { t, d } = r;
  t.alloc(`${name}.rstd`, d.n, at);
  t.alloc(out, d.n * d.h, at);
  // composite: x², x·r
  if (!r.fused.has("rmsNorm")) t.spike(2 * d.n * d.h, at);
}

/** The fused attention kernel's scratch of all parts of one call, per pass. */
function attentionScratchOf(r: Replay): AttentionScratch {
  const { spec, d } = r;
  const parts = attentionParts(spec.kernelThreads ?? 1, {
    sequences: spec.microBatch,
    seq: d.seq,
    heads: d.heads,
    kvHeads: spec.shape.kvHeads,
    headDim: d.h / d.heads,
  });
  const one = attentionScratch(d.seq);
  return { forward: parts * one.forward, backward: parts * one.backward };
}

function attentionForward(r: Replay, L: string, at: string): void {
  const { t, d } = r;
  const scores = d.n * d.heads * d.seq;
  // rope: q and k rotated (the raw projections die at the layer's end); composite: the halves,
  // four products and two sums
  t.alloc(`${L}.qr`, d.n * d.h, at);
  if (!r.fused.has("rope")) t.spike(4 * d.n * d.h, at);
  t.alloc(`${L}.kr`, d.n * d.kv, at);
  if (!r.fused.has("rope")) t.spike(4 * d.n * d.kv, at);
  if (r.fused.has("attention")) {
    t.alloc(`${L}.o`, d.n * d.h, at);
    t.alloc(`${L}.lse`, d.n * d.heads, at);
    t.spike(attentionScratchOf(r).forward, at);
    return;
  }
  // composite: q, k, v regrouped per kv head, the probabilities and the output per group (all
  // kept), the output regrouped back; scores, scaled, masked and the causal mask are temporaries
  t.alloc(`${L}.qkvRows`, d.n * (d.h + 2 * d.kv), at);
  t.alloc(`${L}.p`, scores, at);
  t.alloc(`${L}.oh`, d.n * d.h, at);
  t.alloc(`${L}.o`, d.n * d.h, at);
  t.spike(3 * scores + d.group * d.seq * d.seq, at);
}

function layerForward(r: Replay, l: Layer): void {
  const { t, d } = r;
  const L = `L${l.index}`;
  const at = `forward layer ${l.index}`;
  rmsForward(r, `${L}.n1`, `${L}.a`, at);
  projectForward(r, l, "q", `${L}.q`);
  projectForward(r, l, "k", `${L}.k`);
  projectForward(r, l, "v", `${L}.v`);
  attentionForward(r, L, `${at} attention`);
  projectForward(r, l, "o", `${L}.po`);
  t.alloc(`${L}.h1`, d.n * d.h, at);
  rmsForward(r, `${L}.n2`, `${L}.m`, at);
  projectForward(r, l, "gate", `${L}.g`);
  projectForward(r, l, "up", `${L}.u`);
  t.alloc(`${L}.s`, d.n * d.f, at);
  // composite SwiGLU: σ(g), g·σ(g)
  if (!r.fused.has("swiglu")) t.spike(2 * d.n * d.f, at);
  projectForward(r, l, "down", `${L}.dn`);
  t.alloc(`h${l.index + 1}`, d.n * d.h, at);
  // The layer's scope ends: what no backward node saved dies.
  for (const out of ["q", "k", "v", "po", "g", "u", "dn"]) {
    t.free(`${L}.${out}.y`, `${L}.${out}.low`);
  }
  t.free(`${L}.q`, `${L}.k`, `${L}.po`, `${L}.dn`);
  // composite attention keeps its regrouped q, k, v instead of the rotated ones and v
  if (!r.fused.has("attention")) t.free(`${L}.qr`, `${L}.kr`, `${L}.v`);
}

/** The chunk size in effect, or undefined when the loss takes the whole micro-batch at once. */
function chunkOf(r: Replay): number | undefined {
  const c = r.spec.lossChunk;
  return c === undefined || c >= r.d.n ? undefined : c;
}

function headForward(r: Replay): void {
  const { t, d } = r;
  const at = "forward head";
  rmsForward(r, "final", "hf", at);
  const chunk = chunkOf(r);
  if (chunk !== undefined) {
    // one log-sum-exp per row stays; a chunk's rows, logits and losses come and go
    t.alloc("ce.lse", 2 * d.n, at);
    t.spike(chunk * (d.h + d.vocab + 2) + d.n, at);
    return;
  }
  if (r.fused.has("crossEntropy")) {
    t.alloc("logits", d.n * d.vocab, at);
    t.alloc("ce.lse", d.n, at);
    t.spike(d.n, at);
    return;
  }
  // composite: the logits die with the loss's scope, the probabilities stay
  t.alloc("logits", d.n * d.vocab, at);
  t.alloc("ce.p", d.n * d.vocab, at);
  t.spike(d.n * d.vocab, at);
  t.free("logits");
}

// ---- backward ----

/** A parameter's gradient arrives (a product): a new buffer, or summed into the running sum. */
function paramGrad(r: Replay, name: string, size: number, at: string): void {
  sumInto(r, contribution(r, `grad:${name}`, size, at), at);
}

/**
 * One product's contribution to the gradient summed in `into`: the name of its own buffer, or
 * undefined when it needs none (it starts the sum, or the product adds into the sum).
 */
function contribution(r: Replay, into: string, floats: number, at: string): string | undefined {
  const { t } = r;
  if (!t.sizes.has(into)) {
    t.alloc(into, floats, at);
    return undefined;
  }
  if (r.fused.has("productSums")) return undefined;
  t.alloc(`${into}~c`, floats, at);
  return `${into}~c`;
}

/** add(sum, c): the new sum beside both, then the old sum and the contribution go. */
function sumInto(r: Replay, c: string | undefined, at: string): void {
  if (c === undefined) return;
  r.t.spike(r.t.sizes.get(c)! / 4, at);
  r.t.free(c);
}

/** Backward of a projection whose input's gradient sums into `into`. */
function projectBackward(
  r: Replay,
  l: Layer,
  p: Projection,
  dyName: string,
  into: string,
): void {
  const { t, d, spec } = r;
  const dims = projectionDims(spec.shape, p);
  const L = `L${l.index}`;
  const at = `backward layer ${l.index} ${p}_proj`;
  if (l.adapted.has(p)) {
    // scale: dy·s; (x·A)·B: d(x·A), dB; x·A: dx (branch), dA; x·W: dx (main)
    t.alloc(`${L}.dlow`, d.n * dims.out, at);
    t.alloc(`${L}.dxA`, d.n * spec.rank, at);
    paramGrad(r, `${L}.${p}.B`, spec.rank * dims.out, at);
    t.free(`${L}.dlow`);
    const branch = contribution(r, into, d.n * dims.in, at);
    paramGrad(r, `${L}.${p}.A`, dims.in * spec.rank, at);
    sumInto(r, branch, at);
    t.free(`${L}.dxA`, `${L}.${p}.xA`);
    sumInto(r, contribution(r, into, d.n * dims.in, at), at);
  } else {
    const c = contribution(r, into, d.n * dims.in, at);
    if (l.trains) paramGrad(r, `${L}.${p}.W`, weightSize(spec.shape, p), at);
    sumInto(r, c, at);
  }
  t.free(dyName);
}

function rmsBackward(r: Replay, name: string, trains: boolean, at: string): string {
  const { t, d } = r;
  if (!r.fused.has("rmsNorm")) t.spike(6 * d.n * d.h, at);
  const dx = `${name}.dx`;
  t.alloc(dx, d.n * d.h, at);
  if (trains) paramGrad(r, `${name}.w`, d.h, at);
  t.free(`${name}.rstd`);
  return dx;
}

function attentionBackward(r: Replay, L: string, at: string): void {
  const { t, d } = r;
  const scores = d.n * d.heads * d.seq;
  if (!r.fused.has("attention")) t.spike(4 * scores + d.n * (2 * d.h + 2 * d.kv), at);
  t.alloc(`${L}.dqr`, d.n * d.h, at);
  t.alloc(`${L}.dkr`, d.n * d.kv, at);
  t.alloc(`${L}.dv`, d.n * d.kv, at);
  if (r.fused.has("attention")) t.spike(attentionScratchOf(r).backward, at);
  t.free(`${L}.do`, `${L}.qr`, `${L}.kr`, `${L}.v`, `${L}.o`, `${L}.lse`);
  t.free(`${L}.qkvRows`, `${L}.p`, `${L}.oh`);
  // rope backward, k then q (the tape's reverse order)
  if (!r.fused.has("rope")) t.spike(4 * d.n * d.kv, at);
  t.alloc(`${L}.dk`, d.n * d.kv, at);
  t.free(`${L}.dkr`);
  if (!r.fused.has("rope")) t.spike(4 * d.n * d.h, at);
  t.alloc(`${L}.dq`, d.n * d.h, at);
  t.free(`${L}.dqr`);
}

function layerBackward(r: Replay, l: Layer): void {
  const { t, d } = r;
  const L = `L${l.index}`;
  const at = `backward layer ${l.index}`;
  // dh (the gradient of this layer's output) flows to h1 and to the down projection as views.
  const dh = `dh${l.index + 1}`;
  t.free(`h${l.index + 1}`);
  const ds = `${L}.ds`;
  projectBackward(r, l, "down", "~view", ds);
  t.free(`${L}.s`);
  // SwiGLU
  if (!r.fused.has("swiglu")) t.spike(7 * d.n * d.f, `${at} swiglu`);
  t.alloc(`${L}.dg`, d.n * d.f, `${at} swiglu`);
  t.alloc(`${L}.du`, d.n * d.f, `${at} swiglu`);
  t.free(ds, `${L}.g`, `${L}.u`);
  projectBackward(r, l, "up", `${L}.du`, `${L}.dm`);
  projectBackward(r, l, "gate", `${L}.dg`, `${L}.dm`);
  t.free(`${L}.m`);
  const dn2 = rmsBackward(r, `${L}.n2`, l.trains, `${at} norm`);
  t.free(`${L}.dm`, `${L}.h1`);
  // dh1 = dh (view) + norm's dx: a new sum, then dh's buffer is free
  t.alloc(`${L}.dh1`, d.n * d.h, at);
  t.free(dn2, dh);
  // the residual add hands dh1 to h_l and to the o projection as views
  projectBackward(r, l, "o", "~view", `${L}.do`);
  attentionBackward(r, L, `${at} attention`);
  projectBackward(r, l, "v", `${L}.dv`, `${L}.da`);
  projectBackward(r, l, "k", `${L}.dk`, `${L}.da`);
  projectBackward(r, l, "q", `${L}.dq`, `${L}.da`);
  t.free(`${L}.a`);
  const dn1 = rmsBackward(r, `${L}.n1`, l.trains, `${at} norm`);
  t.free(`${L}.da`);
  // dh_l = dh1 (view) + norm's dx
  t.alloc(`dh${l.index}`, d.n * d.h, at);
  t.free(dn1, `${L}.dh1`);
}

function headBackward(r: Replay): void {
  const { t, d, spec } = r;
  const at = "backward head";
  const trains = spec.roles.embeddingsTrain;
  const chunk = chunkOf(r);
  if (chunk !== undefined) {
    headBackwardChunked(r, chunk, trains);
    return;
  }
  if (r.fused.has("crossEntropy")) {
    t.alloc("dlogits", d.n * d.vocab, `${at} cross-entropy`);
    t.free("logits", "ce.lse");
  } else {
    t.spike(d.n * d.vocab, `${at} cross-entropy`);
    t.alloc("dlogits", d.n * d.vocab, `${at} cross-entropy`);
    t.free("ce.p");
  }
  t.alloc("dhf", d.n * d.h, `${at} lm_head`);
  if (trains) paramGrad(r, spec.shape.tiedEmbeddings ? "embed" : "lm_head", d.vocab * d.h, at);
  t.free("dlogits", "hf");
  const dx = rmsBackward(r, "final", trains, at);
  t.free("dhf");
  t.rename(dx, `dh${spec.roles.layers}`);
}

/**
 * Chunk by chunk: the rows, their recomputed logits and gradient, the hidden states' gradient
 * rows (kept), the head's gradient for the chunk and its running sum; then the rows are joined.
 */
function headBackwardChunked(r: Replay, chunk: number, trains: boolean): void {
  const { t, d, spec } = r;
  const at = "backward head (chunked)";
  const headGrad = d.vocab * d.h;
  const head = spec.shape.tiedEmbeddings ? "embed" : "lm_head";
  for (let r0 = 0; r0 < d.n; r0 += chunk) {
    const rows = Math.min(chunk, d.n - r0);
    t.alloc("dhf.rows", rows * d.h, at);
    t.spike(rows * (d.h + 2 * d.vocab + 2) + (trains ? headGrad : 0), at);
    if (!trains) continue;
    if (!t.sizes.has("head.sum")) {
      t.alloc("head.sum", headGrad, at);
      continue;
    }
    t.alloc("~part", headGrad, at);
    t.spike(headGrad, at);
    t.free("~part");
  }
  if (trains) {
    t.free("head.sum");
    paramGrad(r, head, headGrad, at);
  }
  t.alloc("dhf", d.n * d.h, at);
  t.free("dhf.rows", "hf", "ce.lse");
  const dx = rmsBackward(r, "final", trains, at);
  t.free("dhf");
  t.rename(dx, `dh${spec.roles.layers}`);
}

// ---- the step ----

function microBatch(r: Replay): void {
  const { t, d, spec } = r;
  const layers = layersOf(spec);
  t.alloc("rope.tables", d.seq * (d.h / d.heads), "forward");
  t.alloc("tokens", 2 * d.n, "forward");
  t.alloc("h0", d.n * d.h, "forward embedding");
  if (spec.recompute === "none") {
    for (const l of layers) layerForward(r, l);
    headForward(r);
    headBackward(r);
    for (const l of [...layers].reverse()) layerBackward(r, l);
  } else {
    // Without a tape the forward keeps each layer's output only; the backward recomputes one
    // layer under a tape, back-propagates through it, and moves down (`kernels/recompute.ts`).
    for (const l of layers) {
      layerForward(r, l);
      dropLayer(r, l);
    }
    headForward(r);
    headBackward(r);
    t.free(`h${layers.length}`);
    for (const l of [...layers].reverse()) {
      layerForward(r, l);
      // The rebuilt output is the pass's value: it lives until the layer's backward ends, and
      // so does the layer's kept input.
      t.rename(`h${l.index + 1}`, `L${l.index}.out`);
      layerBackward(r, l);
      t.free(`L${l.index}.out`, `h${l.index}`);
    }
  }
  if (spec.roles.embeddingsTrain) paramGrad(r, "embed", d.vocab * d.h, "backward embedding");
  t.free("dh0", "h0", "tokens", "rope.tables");
}

/** What a layer made, except its output, dies (its forward ran without a tape). */
function dropLayer(r: Replay, l: Layer): void {
  const prefix = `L${l.index}.`;
  for (const name of [...r.t.sizes.keys()]) if (name.startsWith(prefix)) r.t.free(name);
}

function paramCount(spec: EngineStepSpec): { all: number; trained: number; largest: number } {
  const s = spec.shape;
  const perLayer = PROJECTIONS.reduce((a, p) => a + weightSize(s, p), 0) + 2 * s.hidden;
  const adapters = spec.roles.targets.reduce((a, p) => {
    const dims = projectionDims(s, p);
    return a + spec.rank * (dims.in + dims.out);
  }, 0);
  const outside = s.vocab * s.hidden * (s.tiedEmbeddings ? 1 : 2) + s.hidden;
  const fresh = spec.roles.newLayers.length;
  const frozen = spec.roles.frozenLayers.length;
  const trained = fresh * perLayer + frozen * adapters + (spec.roles.embeddingsTrain ? outside : 0);
  const largest = Math.max(
    spec.roles.embeddingsTrain ? s.vocab * s.hidden : 0,
    fresh > 0 ? Math.max(...PROJECTIONS.map((p) => weightSize(s, p))) : 0,
  );
  return { all: spec.roles.layers * perLayer + outside + frozen * adapters, trained, largest };
}

/**
 * The predicted peak of one training step (all micro-batches and the optimizer update).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeShape, firstStageRoles } from "../base/mod.ts";
 * import { engineStepMemory } from "./engine_memory.ts";
 * const shape = completeShape({ hidden: 64, intermediate: 192, heads: 4, layers: 2, vocab: 257 } as never);
 * const m = engineStepMemory({
 *   shape, roles: firstStageRoles(2), rank: 0, microBatch: 8, seqLen: 64, accumulation: 1,
 *   fused: ["rmsNorm", "rope", "attention", "swiglu", "crossEntropy", "adamw"], recompute: "none",
 * });
 * assert(m.peakBytes > m.modelStateBytes);
 * ```
 */
export function engineStepMemory(spec: EngineStepSpec): EngineStepMemory {
  const t = new Timeline();
  const r: Replay = { t, spec, d: dimsOf(spec), fused: new Set(spec.fused) };
  const p = paramCount(spec);
  // Between steps: every weight, Adam's m and v of what trains.
  t.alloc("weights", p.all, "start");
  t.alloc("moments", 2 * p.trained, "start");
  for (let k = 0; k < spec.accumulation; k++) microBatch(r);
  // The global gradient norm: the composite squares one gradient at a time; the fused kernel
  // reads them in place.
  if (!r.fused.has("sumSquares")) t.spike(p.largest, "gradient norm");
  // The update, one parameter at a time, the largest deciding.
  t.spike(kernelTraits(spec.fused).updateBuffers * p.largest, "optimizer");
  return {
    peakBytes: t.peak,
    modelStateBytes: 4 * (p.all + 3 * p.trained),
    peakAt: t.peakAt,
  };
}
