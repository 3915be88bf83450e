/**
 * `--engine torch` against the loop a PyTorch user would write (`bench/bare_loop_torch.py`), in
 * one invocation: the same model (`torch_engine/llama.py`), the same initial weights, the same
 * batches read from the same token file and the same step (summed cross-entropy over the global
 * batch's tokens, backward, global-norm clip 1.0, AdamW with decay on matrices), on 1 process
 * and on 2 (DDP, gloo), alternating engine and loop round by round.
 *
 * The engine runs through its real path: `createTorchEngine`, a launch of
 * `torch_engine/trainer.py`, the JSON protocol over TCP, steps sent ahead as the training loop
 * sends them ({@link STEPS_AHEAD} in flight). Its tokens/s is read here, from the first timed
 * step sent to the last report received; the loop's is read by the loop around its own timed
 * steps. Start-up (interpreter, import, model load) is outside both.
 *
 * Batches: row r of step i starts at ((i·B + r)·T) mod (tokens − T − 1) in a file of random
 * tokens (a fixed seed). Every round also compares the two sides' losses step by step: the
 * same computation, so they agree to float32 rounding (2 threads in one process sum in
 * another order than 1 thread in each of 2).
 *
 * Run: `deno task bench --only torch` (bench/main.ts), or
 * `deno run -A bench/torch_engine_bench.ts [--shapes "d,L,V,T,B;…"] [--steps N] [--rounds N]
 * [--bare-fused-adamw]`. The loop takes torch's default AdamW (on a CPU, its per-tensor loop,
 * as nanoGPT does there); the engine takes the fused kernel where torch has one. With
 * `--bare-fused-adamw` the loop takes it too, and the ratio is the orchestration's alone.
 *
 * @module
 */
import { runOrThrow } from "./peer.ts";
import * as E from "fp-ts/lib/Either.js";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { median, type PositiveInt, withDefaults } from "../base/mod.ts";
import { initialSnapshot } from "../checkpoint/mod.ts";
import { memoryStream } from "../data/mod.ts";
import {
  createTorchEngine,
  findTorchPython,
  type TorchPython,
  writeExchange,
} from "../effects/mod.ts";
import {
  type MicroBatch,
  type StepHyper,
  stepHyper,
  type StepReport,
  STEPS_AHEAD,
  TorchCodec,
  TrainingCodec,
} from "../pipeline/mod.ts";
import { benchShape } from "./train_bench.ts";

/** The loop peer, beside this file. */
const BARE_LOOP = new URL("./bare_loop_torch.py", import.meta.url).pathname;

/** One (shape, process count): both sides' median tokens/s and their ratio. */
export interface TorchEngineBenchRow {
  /** [d, L, V, T, B]. */
  readonly shape: readonly number[];
  readonly nproc: number;
  /** Torch threads per process. */
  readonly threads: number;
  readonly engineTokensPerSec: number;
  readonly bareTokensPerSec: number;
  /** engine / bare, of the two medians. */
  readonly ratio: number;
  /**
   * Each round's own engine / bare (the two sides ran back to back): their median, least and
   * largest. The spread is the machine's noise at this row; a median of paired ratios also
   * cancels a load that drifts across rounds.
   */
  readonly roundRatios: { readonly median: number; readonly min: number; readonly max: number };
  /** Each round's tokens/s, in order (engine, bare). */
  readonly rounds: readonly { readonly engine: number; readonly bare: number }[];
  /** The largest |engine − bare| step loss over every round. */
  readonly lossGap: number;
}

/** Options of {@link benchTorchEngine}. */
export interface TorchEngineBenchOptions {
  /** [d, L, V, T, B] per case. */
  readonly shapes: readonly (readonly number[])[];
  /** Timed steps per round (after {@link WARMUP} untimed ones). */
  readonly steps: number;
  readonly rounds: number;
  /** Process counts; default 1 and 2. */
  readonly procs?: readonly number[];
  /** The interpreter (default: the torch engine's discovery, `.venv-ref` first). */
  readonly python?: string | undefined;
  /**
   * The loop's AdamW: torch's default (false: on a CPU its per-tensor loop, what nanoGPT
   * takes there) or its fused kernel (true: what the engine takes where torch has one, so the
   * ratio shows the orchestration alone).
   */
  readonly bareFusedAdamW?: boolean;
  /** One line per round as it ends. */
  readonly progress?: (line: string) => void;
}

/** Untimed steps before the clock starts on either side (allocation, first-use imports). */
export const WARMUP = 2;

/** The learning rate both sides step at (constant: the schedule is not what is measured). */
const LR = 3e-4;

/** Random tokens below `vocab`, from a fixed seed (xorshift32), enough that rows rarely repeat. */
function tokenFile(vocab: number, count: number): Uint16Array | Int32Array {
  const out = vocab <= 65_536 ? new Uint16Array(count) : new Int32Array(count);
  let x = 2463534242;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) % vocab;
  }
  return out;
}

/** Start offsets of step `i`'s rows: the rule bare_loop_torch.py's get_batch follows. */
export function rowStarts(i: number, batch: number, seq: number, tokens: number): number[] {
  const span = tokens - seq - 1;
  return Array.from({ length: batch }, (_, r) => ((i * batch + r) * seq) % span);
}

function stepBatch(
  tokens: Uint16Array | Int32Array,
  i: number,
  batch: number,
  seq: number,
): MicroBatch {
  const starts = rowStarts(i, batch, seq, tokens.length);
  const ids = new Int32Array(batch * seq);
  const next = new Int32Array(batch * seq);
  starts.forEach((s, r) => {
    ids.set(tokens.subarray(s, s + seq), r * seq);
    next.set(tokens.subarray(s + 1, s + 1 + seq), r * seq);
  });
  return { tokens: ids, targets: next, batch, seq, window: { split: "train", starts } };
}

/** Interpreter and its torch, for the bench's header and the engine's options. */
export async function benchPython(
  python: string | undefined,
): Promise<E.Either<string, TorchPython>> {
  const found = await findTorchPython(python);
  return E.isLeft(found) ? E.left(found.left.message) : E.right(found.right);
}

interface Case {
  readonly dir: string;
  readonly shape: readonly number[];
  readonly tokens: Uint16Array | Int32Array;
  readonly hyper: StepHyper;
}

/** `steps` steps of the engine after the warm-up: tokens/s and every step's loss. */
async function engineRound(
  c: Case,
  py: TorchPython,
  nproc: number,
  threads: number,
  steps: number,
): Promise<{ tokensPerSec: number; losses: number[] }> {
  const [d, L, V, T, B] = c.shape as [number, number, number, number, number];
  const shape = benchShape(d, L, V, T);
  const engine = createTorchEngine({
    settings: withDefaults(TorchCodec, { nproc: nproc as PositiveInt }),
    python: py.python,
    torchVersion: py.version,
    workDir: path.join(c.dir, `engine-${nproc}`),
    tokens: {
      train: memoryStream(c.tokens),
      validation: memoryStream(c.tokens.subarray(0, T + 1)),
    },
    threads,
  });
  const fail = (what: string, message: string): never => {
    throw new Error(
      `torch engine bench, shape [${c.shape}], ${nproc} process(es): ${what}: ${message}`,
    );
  };
  try {
    const loaded = await engine.load(shape, initialSnapshot(shape, L, 1))();
    if (E.isLeft(loaded)) fail("load", loaded.left.message);
    let state = E.isRight(loaded) ? loaded.right : fail("load", "no state");
    const inFlight: Promise<E.Either<{ message: string }, StepReport>>[] = [];
    const losses: number[] = [];
    const take = async () => {
      const r = await inFlight.shift()!;
      if (E.isLeft(r)) fail("step", r.left.message);
      if (E.isRight(r)) losses.push(r.right.loss);
    };
    let start = 0;
    for (let i = 0; i < WARMUP + steps; i++) {
      if (i === WARMUP) {
        // The warm-up's reports are in before the clock starts.
        while (inFlight.length > 0) await take();
        start = performance.now();
      }
      const sent = await engine.stepAhead!(state, [stepBatch(c.tokens, i, B, T)], c.hyper)();
      if (E.isLeft(sent)) fail("step", sent.left.message);
      if (E.isRight(sent)) {
        state = sent.right.state;
        inFlight.push(sent.right.report);
      }
      if (inFlight.length >= STEPS_AHEAD) await take();
    }
    while (inFlight.length > 0) await take();
    const seconds = (performance.now() - start) / 1000;
    engine.dispose(state);
    return { tokensPerSec: (steps * B * T) / seconds, losses };
  } finally {
    await engine.shutdown?.();
  }
}

/** The bare loop's own reading of the same steps. */
async function bareRound(
  c: Case,
  py: TorchPython,
  nproc: number,
  threads: number,
  steps: number,
  fusedAdamW: boolean,
): Promise<{ tokensPerSec: number; losses: number[] }> {
  const [, , , T, B] = c.shape;
  const h = c.hyper;
  const args = [
    BARE_LOOP,
    ...["--init", path.join(c.dir, "init"), "--tokens", path.join(c.dir, "train.bin")],
    ...["--dtype", c.tokens instanceof Uint16Array ? "uint16" : "uint32"],
    ...["--batch", String(B), "--seq", String(T), "--steps", String(steps)],
    ...["--warmup", String(WARMUP), "--nproc", String(nproc), "--threads", String(threads)],
    ...["--lr", String(h.lr), "--beta1", String(h.beta1), "--beta2", String(h.beta2)],
    ...["--eps", String(h.eps), "--weight-decay", String(h.weightDecay), "--clip", String(h.clip)],
    ...(fusedAdamW ? ["--fused-adamw"] : []),
  ];
  const { lastLine: last } = await runOrThrow("bare_loop_torch.py", py.python, args, {
    OMP_NUM_THREADS: String(threads),
  });
  const parsed = JSON.parse(last) as { tokensPerSec?: unknown; losses?: unknown };
  if (typeof parsed.tokensPerSec !== "number" || !Array.isArray(parsed.losses)) {
    throw new Error(`bare_loop_torch.py printed no result: ${last.slice(0, 300)}`);
  }
  return { tokensPerSec: parsed.tokensPerSec, losses: parsed.losses as number[] };
}

/** Runs the bench (see the module doc); rows in shape order, then process count. */
export async function benchTorchEngine(
  o: TorchEngineBenchOptions,
): Promise<{ python: TorchPython; rows: TorchEngineBenchRow[] }> {
  const found = await benchPython(o.python);
  if (E.isLeft(found)) throw new Error(found.left);
  const py = found.right;
  const cores = navigator.hardwareConcurrency;
  const rows: TorchEngineBenchRow[] = [];
  for (const dims of o.shapes) {
    if (dims.length !== 5 || dims.some((x) => !Number.isInteger(x) || x <= 0)) {
      throw new Error(`torch engine bench: shape [${dims}] is not five positive integers`);
    }
    const [d, L, V, T, B] = dims as [number, number, number, number, number];
    const dir = await Deno.makeTempDir({ prefix: "step-torch-bench-" });
    try {
      const tokens = tokenFile(V, Math.max(1 << 20, (WARMUP + o.steps) * B * T + T + 1));
      const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
      await Deno.writeFile(path.join(dir, "train.bin"), bytes);
      const shape = benchShape(d, L, V, T);
      const init = await writeExchange(
        path.join(dir, "init"),
        initialSnapshot(shape, L, 1),
        shape,
      )();
      if (E.isLeft(init)) throw new Error(init.left.message);
      const hyper = stepHyper(withDefaults(TrainingCodec, {}), LR);
      const c: Case = { dir, shape: dims, tokens, hyper };
      for (const nproc of o.procs ?? [1, 2]) {
        if (B % nproc !== 0) {
          throw new Error(`torch engine bench: ${nproc} processes do not divide batch ${B}`);
        }
        const threads = Math.max(1, Math.floor(cores / nproc));
        const rounds: { engine: number; bare: number }[] = [];
        let lossGap = 0;
        for (let r = 0; r < o.rounds; r++) {
          // Alternating which side goes first cancels a drift in the machine's load.
          const first = r % 2 === 0 ? "engine" : "bare";
          const run = (side: string) =>
            side === "engine"
              ? engineRound(c, py, nproc, threads, o.steps)
              : bareRound(c, py, nproc, threads, o.steps, o.bareFusedAdamW ?? false);
          const a = await run(first);
          const b = await run(first === "engine" ? "bare" : "engine");
          const [engine, bare] = first === "engine" ? [a, b] : [b, a];
          if (engine.losses.length !== bare.losses.length) {
            throw new Error(
              `torch engine bench: ${engine.losses.length} engine losses, ${bare.losses.length} bare`,
            );
          }
          engine.losses.forEach((l, i) => {
            lossGap = Math.max(lossGap, Math.abs(l - bare.losses[i]!));
          });
          rounds.push({ engine: engine.tokensPerSec, bare: bare.tokensPerSec });
          o.progress?.(
            `  [${dims}] ${nproc} proc round ${r + 1}: engine ${engine.tokensPerSec.toFixed(0)}, ` +
              `bare ${bare.tokensPerSec.toFixed(0)} tokens/s`,
          );
        }
        const engineTokensPerSec = median(rounds.map((x) => x.engine));
        const bareTokensPerSec = median(rounds.map((x) => x.bare));
        const paired = rounds.map((x) => x.engine / x.bare);
        rows.push({
          shape: dims,
          nproc,
          threads,
          engineTokensPerSec,
          bareTokensPerSec,
          ratio: engineTokensPerSec / bareTokensPerSec,
          roundRatios: {
            median: median(paired),
            min: Math.min(...paired),
            max: Math.max(...paired),
          },
          rounds,
          lossGap,
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  return { python: py, rows };
}

/** The table's header line. */
export const TORCH_ENGINE_TABLE_HEADER =
  "shape [d, L, V, T, B]      procs × threads   engine tok/s   bare tok/s   engine/bare" +
  "   per round: median (min–max)   loss gap";

/** One row of the table. */
export function torchEngineBenchLine(r: TorchEngineBenchRow): string {
  return `${`[${r.shape.join(", ")}]`.padEnd(26)} ${`${r.nproc} × ${r.threads}`.padEnd(17)} ${
    r.engineTokensPerSec.toFixed(0).padStart(12)
  } ${r.bareTokensPerSec.toFixed(0).padStart(12)} ${r.ratio.toFixed(3).padStart(13)} ${
    `${r.roundRatios.median.toFixed(3)} (${r.roundRatios.min.toFixed(3)}–${
      r.roundRatios.max.toFixed(3)
    })`.padStart(30)
  } ${r.lossGap.toExponential(1).padStart(10)}`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      shapes: { type: "string", default: "128,4,256,128,8;256,4,4096,256,8" },
      steps: { type: "string", default: "20" },
      rounds: { type: "string", default: "3" },
      procs: { type: "string", default: "1,2" },
      python: { type: "string" },
      "bare-fused-adamw": { type: "boolean", default: false },
    },
  });
  const shapes = values.shapes.split(";").filter((p) => p.trim() !== "").map((p) =>
    p.split(",").map(Number)
  );
  const steps = Number(values.steps);
  const rounds = Number(values.rounds);
  const procs = values.procs.split(",").map(Number);
  for (
    const [name, n] of [
      ["--steps", steps],
      ["--rounds", rounds],
      ...procs.map((p) => ["--procs", p] as const),
    ] as const
  ) {
    if (!Number.isInteger(n) || n < 1) {
      console.error(`torch_engine_bench: ${name} must be a positive integer, got ${n}`);
      Deno.exit(2);
    }
  }
  const { python, rows } = await benchTorchEngine({
    shapes,
    steps,
    rounds,
    procs,
    python: values.python,
    bareFusedAdamW: values["bare-fused-adamw"],
    progress: (l) => console.log(l),
  });
  console.log(
    `torch ${python.version} (${python.python}), median of ${rounds} rounds of ${steps} steps; ` +
      `the loop's AdamW: ${values["bare-fused-adamw"] ? "fused" : "torch's default"}`,
  );
  console.log(TORCH_ENGINE_TABLE_HEADER);
  for (const r of rows) console.log(torchEngineBenchLine(r));
}
