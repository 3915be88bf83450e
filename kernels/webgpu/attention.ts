/**
 * `StepCausalAttention` and `StepCausalAttentionGrad` (contracts in
 * ../ops/fused_kernels.ts) as tiled WGSL programs that never hold a t×t matrix.
 *
 * Each thread owns one row (a query row in the forward and dq programs, a
 * key row in the dk and dv programs) and keeps it in registers as vec4s
 * (the head dimension zero-padded to a multiple of 4); the rows it is
 * multiplied against stream through workgroup memory a tile at a time, so
 * every row read from global memory serves all the workgroup's threads.
 *
 * tfjs programs write one output each, so the forward is two passes (the
 * log-sum-exp of each query row, then the output with the probabilities
 * exp(s − lse) already normalised) and the backward four (Dᵢ = dOᵢ·Oᵢ, then
 * dq, dk and dv, each recomputing the scores). Recomputing QKᵀ costs FLOPs
 * that are small next to the step's matrix products, and keeps the
 * batch·heads·t² probabilities out of memory.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import {
  ELEMENTWISE_THREADS,
  float,
  type GpuBackend,
  gpuOf,
  type GpuProgram,
  inputOf,
  ints,
  type KernelArgs,
  numberAttr,
  program,
  type ProgramUniform,
} from "./_program.ts";

const FORWARD = "StepCausalAttention";
const GRADIENT = "StepCausalAttentionGrad";

/** Rows (threads) per workgroup. */
const ROWS = 64;
/** Largest tile of streamed rows. */
const MAX_TILE = 64;

interface Dims {
  readonly batch: number;
  readonly seq: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly d: number;
}

/** Everything baked into one attention shader. */
interface Layout {
  readonly d: number;
  /** vec4s per head row. */
  readonly dv: number;
  /** Rows streamed through workgroup memory per step. */
  readonly tile: number;
}

/**
 * The widest power-of-two tile whose two row buffers (plus two scalars per
 * row) fit the device's workgroup memory.
 */
function layoutFor(gpu: GpuBackend, d: number): Layout {
  const dv = Math.ceil(d / 4);
  const limit = gpu.device.limits.maxComputeWorkgroupStorageSize;
  let tile = MAX_TILE;
  while (tile > 1 && 2 * tile * dv * 16 + 2 * tile * 4 + 16 > limit) tile /= 2;
  return { d, dv, tile };
}

function uniformsOf(dims: Dims, tiles: number, scale: number): ProgramUniform[] {
  return [...ints(dims.batch, dims.seq, dims.heads, dims.kvHeads, tiles), float(scale)];
}

const UNIFORMS = "batch : i32, seq : i32, heads : i32, kvHeads : i32, tiles : i32, scale : f32,";

/** WGSL: constants, a vec4 reader for each named input, and the row decoder. */
function header(l: Layout, names: readonly string[]): string {
  const readers = names.map((name) =>
    l.d % 4 === 0
      ? `fn ${name}4(at : i32) -> vec4<f32> {
           return vec4<f32>(${name}[at], ${name}[at + 1], ${name}[at + 2], ${name}[at + 3]);
         }`
      // The head dimension is not a multiple of 4: pad the last vec4 with zeros.
      : `fn ${name}4(at : i32) -> vec4<f32> {
           var r = vec4<f32>(0.0);
           let c = at % D;
           for (var e = 0; e < 4; e = e + 1) {
             if (c + e < D) { r[e] = ${name}[at + e]; }
           }
           return r;
         }`
  ).join("\n");
  return `
    const D = ${l.d};
    const DV = ${l.dv};
    const ROWS = ${ROWS};
    const TILE = ${l.tile};
    var<workgroup> sharedGroup : i32;
    ${readers}
    // The workgroup index as a uniform value: loop bounds derived from it may
    // surround barriers.
    fn uniformGroup() -> i32 {
      if (localIndex == 0u) { sharedGroup = groupIndex(); }
      return workgroupUniformLoad(&sharedGroup);
    }
  `;
}

/**
 * WGSL: rows row0 … row0 + TILE − 1 of tensor `name` ([b, t, heads, d], head
 * `head`) into the shared array `dst`, zeros past the sequence; each thread
 * copies every ROWS-th vec4, so neighbouring threads read neighbouring floats.
 */
function tileLoad(dst: string, name: string, heads: string, head: string): string {
  return `
      for (var e = i32(localIndex); e < TILE * DV; e = e + ROWS) {
        let rr = e / DV;
        let c4 = e - rr * DV;
        let r = row0 + rr;
        var val = vec4<f32>(0.0);
        if (r < T) { val = ${name}4(((b * T + r) * ${heads} + ${head}) * D + c4 * 4); }
        ${dst}[e] = val;
      }`;
}

/** WGSL: write the register array `src` as this thread's output row at `base`. */
function rowStore(src: string, base: string): string {
  return `
      if (live) {
        for (var c = 0; c < D; c = c + 1) { result[${base} + c] = ${src}[c / 4][c % 4]; }
      }`;
}

/** WGSL: Σ over the row's vec4s of a[c4]·shared[at + c4]. */
function rowDot(a: string, shared: string, at: string): string {
  return `rowDot_${a}_${shared}(${at})`;
}

function rowDotFn(a: string, shared: string): string {
  return `
    fn rowDot_${a}_${shared}(at : i32) -> f32 {
      var s = vec4<f32>(0.0);
      for (var c4 = 0; c4 < DV; c4 = c4 + 1) { s = s + ${a}[c4] * ${shared}[at + c4]; }
      return s.x + s.y + s.z + s.w;
    }`;
}

/**
 * WGSL prologue of the query-row programs: decodes (batch, head, query tile)
 * from the workgroup index and sets `b`, `h`, `kvh`, `T`, `i`, `live`,
 * `qBase` (the row's offset in q, o, dy) and `lseAt` (in lse, D).
 */
const QUERY_ROWS = `
      let g = uniformGroup();
      if (g >= uniforms.batch * uniforms.heads * uniforms.tiles) { return; }
      let T = uniforms.seq;
      let tile = g % uniforms.tiles;
      let bh = g / uniforms.tiles;
      let h = bh % uniforms.heads;
      let b = bh / uniforms.heads;
      let kvh = h / (uniforms.heads / uniforms.kvHeads);
      let i = tile * ROWS + i32(localIndex);
      let live = i < T;
      let qBase = ((b * T + i) * uniforms.heads + h) * D;
      let lseAt = (b * uniforms.heads + h) * T + i;
      // Keys 0 … the tile's last query row.
      let keyEnd = min(T, tile * ROWS + ROWS);`;

/** The forward's first pass: lse [b, H, t] (online max and rescaled sum). */
function lseProgram(l: Layout, dims: Dims, tiles: number): GpuProgram {
  return program({
    key: `attn_lse_${l.d}_${l.tile}_${ROWS}`,
    inputs: ["q", "k"],
    outputShape: [dims.batch, dims.heads, dims.seq],
    groups: dims.batch * dims.heads * tiles,
    workgroupSize: ROWS,
    uniforms: UNIFORMS,
    code: `${header(l, ["q", "k"])}
    var<workgroup> Ks : array<vec4<f32>, ${l.tile * l.dv}>;
    var<private> qr : array<vec4<f32>, DV>;
    ${rowDotFn("qr", "Ks")}
    fn main(index : i32) {
      ${QUERY_ROWS}
      if (live) {
        for (var c4 = 0; c4 < DV; c4 = c4 + 1) { qr[c4] = q4(qBase + c4 * 4); }
      }
      var m = -3.402823e+38;
      var s = 0.0;
      for (var row0 = 0; row0 < keyEnd; row0 = row0 + TILE) {
        ${tileLoad("Ks", "k", "uniforms.kvHeads", "kvh")}
        workgroupBarrier();
        if (live) {
          let last = min(TILE, i - row0 + 1);
          for (var jj = 0; jj < last; jj = jj + 1) {
            let z = ${rowDot("qr", "Ks", "jj * DV")} * uniforms.scale;
            if (z > m) {
              s = s * exp(m - z) + 1.0;
              m = z;
            } else {
              s = s + exp(z - m);
            }
          }
        }
        workgroupBarrier();
      }
      if (live) { result[lseAt] = m + log(s); }
    }`,
  });
}

/** The forward's second pass: o [b, t, H, d] = Σⱼ exp(sᵢⱼ − lseᵢ)·vⱼ. */
function outputProgram(l: Layout, dims: Dims, tiles: number): GpuProgram {
  return program({
    key: `attn_out_${l.d}_${l.tile}_${ROWS}`,
    inputs: ["q", "k", "v", "lse"],
    outputShape: [dims.batch, dims.seq, dims.heads, dims.d],
    groups: dims.batch * dims.heads * tiles,
    workgroupSize: ROWS,
    uniforms: UNIFORMS,
    code: `${header(l, ["q", "k", "v"])}
    var<workgroup> Ks : array<vec4<f32>, ${l.tile * l.dv}>;
    var<workgroup> Vs : array<vec4<f32>, ${l.tile * l.dv}>;
    var<private> qr : array<vec4<f32>, DV>;
    var<private> acc : array<vec4<f32>, DV>;
    ${rowDotFn("qr", "Ks")}
    fn main(index : i32) {
      ${QUERY_ROWS}
      var lseI = 0.0;
      if (live) {
        lseI = lse[lseAt];
        for (var c4 = 0; c4 < DV; c4 = c4 + 1) { qr[c4] = q4(qBase + c4 * 4); }
      }
      for (var row0 = 0; row0 < keyEnd; row0 = row0 + TILE) {
        ${tileLoad("Ks", "k", "uniforms.kvHeads", "kvh")}
        ${tileLoad("Vs", "v", "uniforms.kvHeads", "kvh")}
        workgroupBarrier();
        if (live) {
          let last = min(TILE, i - row0 + 1);
          for (var jj = 0; jj < last; jj = jj + 1) {
            let p = exp(${rowDot("qr", "Ks", "jj * DV")} * uniforms.scale - lseI);
            for (var c4 = 0; c4 < DV; c4 = c4 + 1) { acc[c4] = acc[c4] + p * Vs[jj * DV + c4]; }
          }
        }
        workgroupBarrier();
      }
      ${rowStore("acc", "qBase")}
    }`,
  });
}

function dimsOf(q: tf.TensorInfo, k: tf.TensorInfo): Dims {
  const [batch, seq, heads, d] = q.shape as [number, number, number, number];
  return { batch, seq, heads, kvHeads: k.shape[2]!, d };
}

/** `StepCausalAttention`: q [b, t, H, d], k, v [b, t, K, d] → o [b, t, H, d], lse [b, H, t]. */
export function attentionForward(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const q = inputOf(args, FORWARD, "q");
  const k = inputOf(args, FORWARD, "k");
  const v = inputOf(args, FORWARD, "v");
  const scale = numberAttr(args, FORWARD, "scale");
  const dims = dimsOf(q, k);
  const l = layoutFor(gpu, dims.d);
  const tiles = Math.ceil(dims.seq / ROWS);
  const u = uniformsOf(dims, tiles, scale);
  const lse = gpu.runWebGPUProgram(lseProgram(l, dims, tiles), [q, k], "float32", u);
  const o = gpu.runWebGPUProgram(outputProgram(l, dims, tiles), [q, k, v, lse], "float32", u);
  return [o, lse];
}

/** Dᵢ = Σ_c dOᵢ·Oᵢ per query row, laid out like lse: [b, H, t]. */
function rowDotProgram(dims: Dims): GpuProgram {
  const n = dims.batch * dims.heads * dims.seq;
  return program({
    key: `attn_rowdot_${dims.d}`,
    inputs: ["dy", "o"],
    outputShape: [dims.batch, dims.heads, dims.seq],
    groups: Math.ceil(n / ELEMENTWISE_THREADS),
    workgroupSize: ELEMENTWISE_THREADS,
    uniforms: UNIFORMS,
    code: `
    const D = ${dims.d};
    fn main(index : i32) {
      let T = uniforms.seq;
      if (index < uniforms.batch * uniforms.heads * T) {
        let i = index % T;
        let bh = index / T;
        let h = bh % uniforms.heads;
        let b = bh / uniforms.heads;
        let base = ((b * T + i) * uniforms.heads + h) * D;
        var s = 0.0;
        for (var c = 0; c < D; c = c + 1) { s = s + dy[base + c] * o[base + c]; }
        result[index] = s;
      }
    }`,
  });
}

/** dq [b, t, H, d] = scale·Σⱼ Pᵢⱼ(dPᵢⱼ − Dᵢ)·kⱼ, with dPᵢⱼ = dOᵢ·vⱼ. */
function queryGradProgram(l: Layout, dims: Dims, tiles: number): GpuProgram {
  return program({
    key: `attn_dq_${l.d}_${l.tile}_${ROWS}`,
    inputs: ["dy", "q", "k", "v", "lse", "rowdot"],
    outputShape: [dims.batch, dims.seq, dims.heads, dims.d],
    groups: dims.batch * dims.heads * tiles,
    workgroupSize: ROWS,
    uniforms: UNIFORMS,
    code: `${header(l, ["dy", "q", "k", "v"])}
    var<workgroup> Ks : array<vec4<f32>, ${l.tile * l.dv}>;
    var<workgroup> Vs : array<vec4<f32>, ${l.tile * l.dv}>;
    var<private> qr : array<vec4<f32>, DV>;
    var<private> dor : array<vec4<f32>, DV>;
    var<private> acc : array<vec4<f32>, DV>;
    ${rowDotFn("qr", "Ks")}
    ${rowDotFn("dor", "Vs")}
    fn main(index : i32) {
      ${QUERY_ROWS}
      var lseI = 0.0;
      var dI = 0.0;
      if (live) {
        lseI = lse[lseAt];
        dI = rowdot[lseAt];
        for (var c4 = 0; c4 < DV; c4 = c4 + 1) {
          qr[c4] = q4(qBase + c4 * 4);
          dor[c4] = dy4(qBase + c4 * 4);
        }
      }
      for (var row0 = 0; row0 < keyEnd; row0 = row0 + TILE) {
        ${tileLoad("Ks", "k", "uniforms.kvHeads", "kvh")}
        ${tileLoad("Vs", "v", "uniforms.kvHeads", "kvh")}
        workgroupBarrier();
        if (live) {
          let last = min(TILE, i - row0 + 1);
          for (var jj = 0; jj < last; jj = jj + 1) {
            let p = exp(${rowDot("qr", "Ks", "jj * DV")} * uniforms.scale - lseI);
            let ds = p * (${rowDot("dor", "Vs", "jj * DV")} - dI) * uniforms.scale;
            for (var c4 = 0; c4 < DV; c4 = c4 + 1) { acc[c4] = acc[c4] + ds * Ks[jj * DV + c4]; }
          }
        }
        workgroupBarrier();
      }
      ${rowStore("acc", "qBase")}
    }`,
  });
}

/**
 * WGSL prologue of the key-row programs: decodes (batch, kv head, key tile)
 * and sets `b`, `kvh`, `T`, `j`, `live`, `kBase`, and `group` (query heads
 * per kv head).
 */
const KEY_ROWS = `
      let g = uniformGroup();
      if (g >= uniforms.batch * uniforms.kvHeads * uniforms.tiles) { return; }
      let T = uniforms.seq;
      let tile = g % uniforms.tiles;
      let bk = g / uniforms.tiles;
      let kvh = bk % uniforms.kvHeads;
      let b = bk / uniforms.kvHeads;
      let group = uniforms.heads / uniforms.kvHeads;
      let j = tile * ROWS + i32(localIndex);
      let live = j < T;
      let kBase = ((b * T + j) * uniforms.kvHeads + kvh) * D;
      // Queries from the tile's first key row to the end.
      let queryStart = tile * ROWS;`;

/** WGSL: load lse (and D) of query rows row0 … row0 + TILE − 1 of head h into shared arrays. */
function scalarTileLoad(names: readonly [string, string][]): string {
  return `
      for (var e = i32(localIndex); e < TILE; e = e + ROWS) {
        let r = row0 + e;
        ${
    names.map(([dst, src]) =>
      `var ${dst}Val = 0.0;
        if (r < T) { ${dst}Val = ${src}[(b * uniforms.heads + h) * T + r]; }
        ${dst}[e] = ${dst}Val;`
    ).join("\n")
  }
      }`;
}

/**
 * dk [b, t, K, d] (`wantKeys`) = scale·Σ_h Σᵢ Pᵢⱼ(dPᵢⱼ − Dᵢ)·qᵢ, or
 * dv [b, t, K, d] = Σ_h Σᵢ Pᵢⱼ·dOᵢ, summed over the kv head's query heads.
 */
function keyGradProgram(
  l: Layout,
  dims: Dims,
  tiles: number,
  wantKeys: boolean,
): GpuProgram {
  const which = wantKeys ? "dk" : "dv";
  const scalars: [string, string][] = wantKeys
    ? [["lseS", "lse"], ["dS", "rowdot"]]
    : [["lseS", "lse"]];
  const body = wantKeys
    ? `let ds = p * (${rowDot("vr", "DOs", "ii * DV")} - dS[ii]) * uniforms.scale;
            for (var c4 = 0; c4 < DV; c4 = c4 + 1) { acc[c4] = acc[c4] + ds * Qs[ii * DV + c4]; }`
    : `for (var c4 = 0; c4 < DV; c4 = c4 + 1) { acc[c4] = acc[c4] + p * DOs[ii * DV + c4]; }`;
  return program({
    key: `attn_${which}_${l.d}_${l.tile}_${ROWS}`,
    inputs: wantKeys ? ["dy", "q", "k", "v", "lse", "rowdot"] : ["dy", "q", "k", "lse"],
    outputShape: [dims.batch, dims.seq, dims.kvHeads, dims.d],
    groups: dims.batch * dims.kvHeads * tiles,
    workgroupSize: ROWS,
    uniforms: UNIFORMS,
    code: `${header(l, wantKeys ? ["dy", "q", "k", "v"] : ["dy", "q", "k"])}
    var<workgroup> Qs : array<vec4<f32>, ${l.tile * l.dv}>;
    var<workgroup> DOs : array<vec4<f32>, ${l.tile * l.dv}>;
    var<workgroup> lseS : array<f32, ${l.tile}>;
    ${wantKeys ? `var<workgroup> dS : array<f32, ${l.tile}>;` : ""}
    var<private> kr : array<vec4<f32>, DV>;
    ${wantKeys ? "var<private> vr : array<vec4<f32>, DV>;" : ""}
    var<private> acc : array<vec4<f32>, DV>;
    ${rowDotFn("kr", "Qs")}
    ${wantKeys ? rowDotFn("vr", "DOs") : ""}
    fn main(index : i32) {
      ${KEY_ROWS}
      if (live) {
        for (var c4 = 0; c4 < DV; c4 = c4 + 1) {
          kr[c4] = k4(kBase + c4 * 4);
          ${wantKeys ? "vr[c4] = v4(kBase + c4 * 4);" : ""}
        }
      }
      for (var hh = 0; hh < group; hh = hh + 1) {
        let h = kvh * group + hh;
        for (var row0 = queryStart; row0 < T; row0 = row0 + TILE) {
          ${tileLoad("Qs", "q", "uniforms.heads", "h")}
          ${tileLoad("DOs", "dy", "uniforms.heads", "h")}
          ${scalarTileLoad(scalars)}
          workgroupBarrier();
          if (live) {
            let first = max(0, j - row0);
            let last = min(TILE, T - row0);
            for (var ii = first; ii < last; ii = ii + 1) {
              let p = exp(${rowDot("kr", "Qs", "ii * DV")} * uniforms.scale - lseS[ii]);
              ${body}
            }
          }
          workgroupBarrier();
        }
      }
      ${rowStore("acc", "kBase")}
    }`,
  });
}

/**
 * `StepCausalAttentionGrad`: dy [b, t, H, d], q, k, v, o, lse → dq [b, t, H, d],
 * dk, dv [b, t, K, d].
 */
export function attentionBackward(args: KernelArgs): tf.TensorInfo[] {
  const gpu = gpuOf(args);
  const dy = inputOf(args, GRADIENT, "dy");
  const q = inputOf(args, GRADIENT, "q");
  const k = inputOf(args, GRADIENT, "k");
  const v = inputOf(args, GRADIENT, "v");
  const o = inputOf(args, GRADIENT, "o");
  const lse = inputOf(args, GRADIENT, "lse");
  const scale = numberAttr(args, GRADIENT, "scale");
  const dims = dimsOf(q, k);
  const l = layoutFor(gpu, dims.d);
  const tiles = Math.ceil(dims.seq / ROWS);
  const u = uniformsOf(dims, tiles, scale);
  const rowdot = gpu.runWebGPUProgram(rowDotProgram(dims), [dy, o], "float32", u);
  const dq = gpu.runWebGPUProgram(
    queryGradProgram(l, dims, tiles),
    [dy, q, k, v, lse, rowdot],
    "float32",
    u,
  );
  const WANT_KEYS = true;
  const dk = gpu.runWebGPUProgram(
    keyGradProgram(l, dims, tiles, WANT_KEYS),
    [dy, q, k, v, lse, rowdot],
    "float32",
    u,
  );
  const dv = gpu.runWebGPUProgram(
    keyGradProgram(l, dims, tiles, !WANT_KEYS),
    [dy, q, k, lse],
    "float32",
    u,
  );
  gpu.disposeData(rowdot.dataId);
  return [dq, dk, dv];
}
