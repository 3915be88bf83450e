/**
 * Generation throughput: new tokens/s of greedy decoding with the key/value cache and without
 * it (every token recomputes the whole context through `forwardLogits`), side by side in one
 * run, per shape and backend. A prompt of half the context is prefilled, then the other half
 * is generated, so no window slides and the uncached path's context grows from T/2 to T.
 * Rounds alternate the two paths; each reports its median round. Every timed run follows a
 * short warm-up run of the same path (4 new tokens), as each PyTorch round does. Both paths must produce the
 * same tokens (a check, reported as `same`).
 *
 * Beside them, in the same rounds, the PyTorch loop a user would write
 * (bench/peer_generate_torch.py: the same model shape with its own preallocated key/value cache,
 * `inference_mode`, the same prompt and number of new tokens, the same timing), and the ratio of
 * our cached rate to it. Its weights come from torch's generator, so its tokens differ from ours;
 * the work per token is the same.
 *
 * Model per shape [d, L, V, T, H]: hidden d, L layers, vocabulary V, context T, H heads of
 * d/H (SwiGLU width as in `train_bench.ts`), random LLaMA initialisation, batch 1.
 *
 * Run: `deno task bench --only generate [--backend auto,wasm] [--rounds N]`.
 *
 * @module
 */
import { median } from "../base/mod.ts";
import { disposeParams, generate, initParams, type Model } from "../kernels/mod.ts";
import { benchShape, useBackend } from "./train_bench.ts";
import { runPeerScript } from "./peer.ts";

/** One measured (shape, backend). */
export interface GenerateBenchRow {
  /** [d, L, V, T, H]. */
  readonly shape: readonly number[];
  readonly backend: string;
  readonly description: string;
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly cachedTokensPerSec: number;
  readonly uncachedTokensPerSec: number;
  /** cached / uncached. */
  readonly ratio: number;
  /** Both paths chose the same tokens. */
  readonly same: boolean;
  /** The PyTorch key/value-cache loop's tokens/s (median round), when it ran. */
  readonly peerTokensPerSec?: number;
  /** cached / PyTorch. */
  readonly peerRatio?: number;
}

/** How to run the PyTorch peer: its environment and interpreter (see bench/peer.ts). */
export interface GeneratePeer {
  readonly env: Record<string, string>;
  readonly python?: string;
  readonly threads: number;
}

/** The study's model (d 192, 8 layers, bytes, context 128) and a wider, deeper-context one. */
export const GENERATE_SHAPES: readonly (readonly [number, number, number, number, number])[] = [
  [192, 8, 257, 128, 6],
  [512, 8, 4096, 256, 8],
];

/** Options of {@link benchGeneration}. */
export interface GenerateBenchOptions {
  readonly backends: readonly string[];
  readonly shapes?: readonly (readonly number[])[];
  /** Alternating rounds per path (default 3). */
  readonly rounds?: number;
  /** Called with each finished row. */
  readonly onRow?: (row: GenerateBenchRow) => void;
  /** Runs the PyTorch key/value-cache loop in each round; left out, no peer. */
  readonly peer?: GeneratePeer;
  /** Called once with the peer's torch version, or the reason it did not run. */
  readonly onPeer?: (what: { torch: string } | { reason: string }) => void;
}

/** One round of the PyTorch peer on `dims`: its tokens/s, or why it did not run. */
async function peerRound(
  peer: GeneratePeer,
  dims: readonly number[],
): Promise<{ rate: number; torch: string } | { reason: string }> {
  const out = await runPeerScript("peer_generate_torch.py", [
    "--shapes",
    dims.join(","),
    "--rounds",
    "1",
    "--threads",
    String(peer.threads),
  ], { env: peer.env, ...(peer.python !== undefined ? { python: peer.python } : {}) });
  if (!out.ran) return { reason: out.reason };
  const json = out.json as { torch: string; results: { tokensPerSec: number }[] };
  const rate = json.results[0]?.tokensPerSec;
  return rate === undefined ? { reason: "no result" } : { rate, torch: json.torch };
}

const CACHED = true;
const UNCACHED = false;

/**
 * Measures generated tokens/s with and without the cache.
 *
 * @example
 * ```ts
 * import { benchGeneration } from "./generate_bench.ts";
 * const [row] = await benchGeneration({ backends: ["wasm"], shapes: [[32, 2, 64, 16, 2]], rounds: 1 });
 * console.assert(row!.same);
 * ```
 */
export async function benchGeneration(opts: GenerateBenchOptions): Promise<GenerateBenchRow[]> {
  const rows: GenerateBenchRow[] = [];
  const rounds = Math.max(1, opts.rounds ?? 3);
  let peerFailed = false;
  for (const backend of opts.backends) {
    const description = await useBackend(backend);
    for (const dims of opts.shapes ?? GENERATE_SHAPES) {
      const [d, layers, vocab, seq, heads] = dims as [number, number, number, number, number];
      const shape = benchShape(d, layers, vocab, seq, heads);
      const model: Model = { shape, params: initParams(shape, layers, 0), loraScale: 1 };
      try {
        const promptTokens = Math.floor(seq / 2);
        const newTokens = seq - promptTokens;
        const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % vocab);
        const timed = async (cache: boolean, n: number) => {
          const t0 = performance.now();
          const r = await generate(model, prompt, { maxNewTokens: n, temperature: 0, cache });
          return { rate: r.ids.length / ((performance.now() - t0) / 1000), ids: r.ids.join() };
        };
        await timed(CACHED, 4); // warm-up: kernels compile and allocate on first use
        await timed(UNCACHED, 2);
        const cached: number[] = [];
        const uncached: number[] = [];
        const peerRates: number[] = [];
        let same = true;
        for (let round = 0; round < rounds; round++) {
          // Each timed run follows a short warm-up of its own, as the peer's does in its process.
          await timed(CACHED, 4);
          const a = await timed(CACHED, newTokens);
          await timed(UNCACHED, 2);
          const b = await timed(UNCACHED, newTokens);
          cached.push(a.rate);
          uncached.push(b.rate);
          same &&= a.ids === b.ids;
          if (opts.peer !== undefined && !peerFailed) {
            const p = await peerRound(opts.peer, dims);
            if ("reason" in p) {
              peerFailed = true;
              opts.onPeer?.(p);
            } else {
              if (peerRates.length === 0 && rows.length === 0) opts.onPeer?.({ torch: p.torch });
              peerRates.push(p.rate);
            }
          }
        }
        const peerRate = peerRates.length > 0 ? median(peerRates) : undefined;
        const row: GenerateBenchRow = {
          shape: [...dims],
          backend,
          description,
          promptTokens,
          newTokens,
          cachedTokensPerSec: median(cached),
          uncachedTokensPerSec: median(uncached),
          ratio: median(cached) / median(uncached),
          same,
          ...(peerRate !== undefined
            ? { peerTokensPerSec: peerRate, peerRatio: median(cached) / peerRate }
            : {}),
        };
        opts.onRow?.(row);
        rows.push(row);
      } finally {
        disposeParams(model.params);
      }
    }
  }
  return rows;
}

/** The header of {@link generateBenchLine}'s table. */
export const GENERATE_TABLE_HEADER =
  "shape [d, L, V, T, H]       backend   prompt+new   cached tok/s   uncached tok/s   ratio   same" +
  "   PyTorch KV tok/s   vs PyTorch";

/** One row of the generation table. */
export function generateBenchLine(r: GenerateBenchRow): string {
  return `[${r.shape.join(", ")}]`.padEnd(28) + r.backend.padEnd(10) +
    `${r.promptTokens}+${r.newTokens}`.padStart(10) +
    r.cachedTokensPerSec.toFixed(1).padStart(15) +
    r.uncachedTokensPerSec.toFixed(1).padStart(17) +
    r.ratio.toFixed(2).padStart(8) + (r.same ? "yes" : "NO").padStart(7) +
    (r.peerTokensPerSec === undefined ? "–" : r.peerTokensPerSec.toFixed(1)).padStart(19) +
    (r.peerRatio === undefined ? "–" : r.peerRatio.toFixed(2)).padStart(13);
}
