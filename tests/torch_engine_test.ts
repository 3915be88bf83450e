/**
 * The torch engine against the tfjs engine, on this machine's CPU (gloo), with PyTorch 2.13 from
 * the reference environment (`tests/reference_python.ts`) where there is one, else the torch
 * discovery finds: the same stage graph, initial weights and batches give the same per-step
 * losses over a `train` node and a `continue` node with ReLoRA merges (also on Debian's torch
 * 1.13 where it is installed beside it); two DDP processes and two FSDP processes (started by
 * torchrun) equal one at the same global batch, FSDP holding one shard per rank; a two-process
 * run killed with SIGKILL mid-stage resumes to the uninterrupted losses; two nodes on one machine
 * (torchrun each) equal one node. Skipped, with a message, where no Python imports torch (the
 * trainer's seeded generator and pruning are checked with NumPy alone, `relora_py_test.ts`).
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { TINY_SHAPE } from "./tiny_model.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { capture } from "./cli_capture.ts";
import { REFERENCE_HINT, referencePython } from "./reference_python.ts";
import { main } from "../cli/run.ts";
import {
  findTorchPython,
  freeMasterPort,
  startSession,
  torchRelease,
  type TorchSession,
} from "../effects/torch_launch.ts";
import { evalCommand, saveCommand, stepCommand } from "../effects/torch_protocol.ts";
import { readExchange, writeExchange } from "../effects/torch_snapshot.ts";
import { writeTokenFiles } from "../effects/torch_data.ts";
import { withDefaults } from "../base/mod.ts";
import { type EngineSnapshot, initialSnapshot } from "../checkpoint/mod.ts";
import { memoryStream } from "../data/mod.ts";
import { stopAtCheckpoint } from "./kill_run.ts";
import { ofType, runMetrics } from "./metrics.ts";
import {
  type RunMetric,
  type StepHyper,
  stepHyper,
  TorchCodec,
  TrainingCodec,
} from "../pipeline/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
// PyTorch 2.13 from the reference environment where there is one, else what discovery finds
// (Debian's 1.13 at /usr/bin/python3, say); every run below names it in training.torch.python.
const REF = await referencePython(["torch", "numpy"]);
const found = await findTorchPython(REF);
const NO_TORCH = E.isLeft(found) ? found.left.message : undefined;
if (NO_TORCH !== undefined) {
  console.warn(`torch engine tests skipped: ${NO_TORCH}`);
}
const PYTHON = E.isRight(found) ? found.right.python : undefined;
const TORCH2 = E.isRight(found) && (torchRelease(found.right.version)?.[0] ?? 0) >= 2;
/** Whether `fully_shard` imports: the FSDP checks run, else they run as DDP (and say so). */
const FSDP = E.isRight(found) && found.right.fsdp;
if (E.isRight(found) && !FSDP) {
  console.warn(
    `torch engine FSDP checks skipped: torch ${found.right.version} in ${found.right.python} ` +
      `has no fully_shard (${REFERENCE_HINT})`,
  );
}
/** Debian's torch 1.x where it is installed beside the torch above: the engine still runs on it. */
const OLD = await (async () => {
  const debian = await findTorchPython("/usr/bin/python3");
  if (E.isLeft(debian) || debian.right.python === PYTHON) return undefined;
  return (torchRelease(debian.right.version)?.[0] ?? 0) < 2 ? debian.right : undefined;
})();
/** The interpreters the engine's checks run on: the torch above, and Debian's 1.x beside it. */
const INTERPRETERS = [
  ["", PYTHON, E.isRight(found) ? found.right.version : ""],
  [` (Debian's torch ${OLD?.version})`, OLD?.python, OLD?.version ?? ""],
] as const;
const LOSS_TOLERANCE = 1e-4;

function graph(torch: Record<string, unknown> = {}): unknown {
  return {
    version: 1,
    name: "torch-parity",
    model: {
      hidden: 32,
      intermediate: 64,
      heads: 4,
      kvHeads: 2,
      layers: 3,
      vocab: 257,
      maxSeqLen: 32,
    },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 4,
      batchTokens: 128,
      lr: 0.01,
      warmup: 3,
      evalEvery: 5,
      evalBatches: 2,
      checkpointEvery: 3,
      logEvery: 5,
      seed: 5,
      torch: { python: PYTHON, ...torch },
    },
    data: { source: "builtin", builtinBytes: 30000, cacheDir: `${ROOT}.cache/tokens` },
    nodes: [
      { op: "train", id: "s1.train", layers: 2, steps: 10 },
      { op: "grow", id: "s2.grow", add: 1 },
      {
        op: "attachPET",
        id: "s2.pet",
        kind: "relora",
        rank: 4,
        alpha: 8,
        resetEvery: 4,
        restartWarmup: 1,
        pruneRatio: 0.9,
      },
      { op: "continue", id: "s2.continue", steps: 10 },
    ],
  };
}

async function writeGraph(dir: string, torch: Record<string, unknown> = {}): Promise<string> {
  const path = `${dir}/graph.yaml`;
  await Deno.writeTextFile(path, YAML.stringify(graph(torch)));
  return path;
}

/** Every loss of a run (train steps, then evaluations), with where it was taken. */
function losses(ms: readonly RunMetric[]): { at: string; value: number }[] {
  return ms.flatMap((m) =>
    m.type === "train"
      ? [{ where: `train ${m.node} ${m.step}`, value: m.loss ?? NaN }]
      : m.type === "eval"
      ? [{ where: `eval ${m.node} `, value: m.valLoss }]
      : []
  ).map((x, i) => ({ at: `${i}: ${x.where}`, value: x.value }));
}

/** Asserts every loss within `tolerance` of `want`'s and prints the largest difference. */
function assertSameLosses(
  got: readonly RunMetric[],
  want: readonly RunMetric[],
  tolerance: number,
  what = "losses",
): number {
  const a = losses(got);
  const b = losses(want);
  assertEquals(a.map((x) => x.at), b.map((x) => x.at));
  let largest = 0;
  for (const [i, x] of a.entries()) {
    const d = Math.abs(x.value - b[i]!.value);
    assert(d <= tolerance, `${x.at}: ${x.value} vs ${b[i]!.value} (differ by ${d})`);
    largest = Math.max(largest, d);
  }
  console.log(`${what}: ${a.length} losses, largest difference ${largest} (bound ${tolerance})`);
  return largest;
}

async function run(...args: string[]) {
  return await capture((a) => main(a), args);
}

/**
 * A trainer (one rank) on `python` started from `start`, written under `dir` with 64 zero tokens
 * per split; it must start.
 */
async function tinySession(
  dir: string,
  python: string,
  version: string,
  start: EngineSnapshot,
): Promise<TorchSession> {
  const shape = { ...TINY_SHAPE, maxSeqLen: 16 };
  const init = `${dir}/in`;
  assert(E.isRight(await writeExchange(init, start, shape)()));
  const streams = {
    train: memoryStream(new Uint16Array(64)),
    validation: memoryStream(new Uint16Array(64)),
  };
  assert(E.isRight(await writeTokenFiles(`${dir}/data`, streams)()));
  const started = await startSession({
    python,
    torchVersion: version,
    settings: withDefaults(TorchCodec, {}),
    init,
    schema: `${dir}/protocol.schema.json`,
    data: `${dir}/data`,
    threads: 1,
  });
  assert(E.isRight(started), E.isLeft(started) ? started.left.message : "");
  return started.right;
}

/** A torch-engine run of the graph with `torch` settings into `dir/out`; it must succeed. */
async function torchRun(dir: string, out: string, torch: Record<string, unknown> = {}) {
  const r = await run(await writeGraph(dir, torch), "--out", `${dir}/${out}`, "--engine", "torch");
  assertEquals(r.code, 0, r.err);
  return r;
}

for (const [label, python, version] of INTERPRETERS) {
  Deno.test({
    name:
      `torch engine${label}: losses equal the tfjs cpu backend's over a train node and a continue node with ReLoRA merges`,
    ignore: python === undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      const file = await writeGraph(dir, { python });
      const tfjs = await run(file, "--out", `${dir}/tfjs`);
      assertEquals(tfjs.code, 0, tfjs.err);
      const torch = await run(file, "--out", `${dir}/torch`, "--engine", "torch");
      assertEquals(torch.code, 0, torch.err);
      assertStringIncludes(torch.out, `Backend: torch ${version} `);
      const [a, b] = [await runMetrics(`${dir}/torch`), await runMetrics(`${dir}/tfjs`)];
      // 20 steps and 4 evaluations (every 5 steps and at each stage's end), both sides of growth.
      assertEquals(losses(a).length, 24);
      assertSameLosses(a, b, LOSS_TOLERANCE, `torch ${version} against tfjs`);
      const [ma, mb] = [ofType(a, "merge"), ofType(b, "merge")];
      assertEquals(ma.length, 2);
      for (const [i, m] of ma.entries()) {
        const pruned = m.prunedFraction;
        assert(Math.abs(pruned - (mb[i]?.prunedFraction ?? NaN)) < 1e-3, `pruned ${pruned}`);
      }
      const report = async (d: string) => JSON.parse(await Deno.readTextFile(`${d}/report.json`));
      const [ra, rb] = [await report(`${dir}/torch`), await report(`${dir}/tfjs`)];
      // State by role, each engine reading its own tensors where the step peaks.
      assert(
        ra.stages.every((s: { accountedState?: { total: number } }) =>
          (s.accountedState?.total ?? 0) > 0
        ),
      );
      assertEquals(
        ra.stages.map((s: Record<string, unknown>) => s.accountedState),
        rb.stages.map((s: Record<string, unknown>) => s.accountedState),
      );
      for (const key of ["layers", "trainableParams", "frozenParams", "adapterParams"]) {
        assertEquals(
          ra.stages.map((s: Record<string, number>) => s[key]),
          rb.stages.map((s: Record<string, number>) => s[key]),
        );
      }
      assert(Math.abs(ra.mergedValLoss - rb.mergedValLoss) <= LOSS_TOLERANCE);
      // The trainer's own peak, read from the OS, is in every stage record.
      for (const s of ra.stages) assert(s.measuredPeakBytes > 0, JSON.stringify(s));
      await Deno.remove(dir, { recursive: true });
    },
  });
}

/** A tensor of the test graph's model: its rows (dimension 0, which FSDP shards) and columns. */
type Tensor = readonly [rows: number, cols: number];

/** One decoder layer of the test graph's model (hidden 32, 4 heads, 2 KV heads, intermediate 64). */
const LAYER: readonly Tensor[] = [
  [32, 32], // q_proj
  [16, 32], // k_proj
  [16, 32], // v_proj
  [32, 32], // o_proj
  [64, 32], // gate_proj
  [64, 32], // up_proj
  [32, 64], // down_proj
  [32, 1], // input_layernorm
  [32, 1], // post_attention_layernorm
];
/** ReLoRA r = 4 on one layer's seven projections: A [r, in] and B [out, r]. */
const ADAPTERS: readonly Tensor[] = LAYER.slice(0, 7).flatMap(([out, inp]) => [[4, inp], [out, 4]]);
/** Embedding and LM head (vocabulary 257, untied), final norm. */
const OUTER: readonly Tensor[] = [[257, 32], [257, 32], [32, 1]];

/**
 * The model state by role that the largest rank holds when FSDP shards every tensor over
 * `world` ranks as `fully_shard` does (dimension 0 cut by `torch.chunk`: rank 0 holds
 * ceil(rows / world) rows, the most), float32, in both stages of the test graph (2 layers all
 * trained; then 3 layers, the grown one trained, the first two frozen under ReLoRA adapters).
 */
function shardedState(world: number): Record<string, number>[] {
  const bytes = (ts: readonly Tensor[]) =>
    ts.reduce((sum, [rows, cols]) => sum + Math.ceil(rows / world) * cols * 4, 0);
  const stage = (trained: number, frozen: number, adapted: number) => {
    const roles = {
      trainableWeights: bytes(trained === 2 ? [...OUTER, ...LAYER, ...LAYER] : LAYER),
      frozen: frozen === 0 ? 0 : bytes([...OUTER, ...LAYER, ...LAYER]),
      adapters: bytes(Array.from({ length: adapted }, () => ADAPTERS).flat()),
    };
    const gradients = roles.trainableWeights + roles.adapters;
    const state = { ...roles, gradients, optimizer: 2 * gradients };
    const held = roles.trainableWeights + roles.adapters + roles.frozen;
    return { ...state, total: held + gradients + state.optimizer };
  };
  return [stage(2, 0, 0), stage(1, 2, 2)];
}

/** Each stage's state by role in a run's report, roles in {@link shardedState}'s order. */
async function reportedState(dir: string): Promise<Record<string, number>[]> {
  const report = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
  const keys = Object.keys(shardedState(1)[0]!);
  return report.stages.map((s: { accountedState: Record<string, number> }) =>
    Object.fromEntries(keys.map((k) => [k, s.accountedState[k]]))
  );
}

Deno.test({
  name:
    "torch engine: two DDP processes and two FSDP processes (started by torchrun) equal one process at the same global batch; FSDP's state by role is one rank's shards",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await torchRun(dir, "one", { nproc: 1 });
    const two = await torchRun(dir, "two", { nproc: 2 });
    assertStringIncludes(two.out, "2 ranks");
    // One process accumulates two micro-batches; two processes take one each and all-reduce.
    const one = await runMetrics(`${dir}/one`);
    assertSameLosses(await runMetrics(`${dir}/two`), one, 1e-5, "2 DDP ranks against 1");
    // The state by role: what the test computes from the model's shapes, whole on every rank.
    assertEquals(await reportedState(`${dir}/one`), shardedState(1));
    assertEquals(await reportedState(`${dir}/two`), shardedState(1));
    if (!FSDP) return; // said at the top
    const fsdp = await torchRun(dir, "fsdp", { nproc: 2, strategy: "fsdp", launcher: "torchrun" });
    assertStringIncludes(fsdp.out, "fsdp, fp32, 2 ranks, torchrun");
    // Each rank's shards: gradients reduce-scattered, each rank updating its own rows.
    assertSameLosses(await runMetrics(`${dir}/fsdp`), one, 1e-5, "2 FSDP ranks against 1");
    const sharded = await reportedState(`${dir}/fsdp`);
    assertEquals(sharded, shardedState(2));
    for (const [i, s] of sharded.entries()) {
      assert(s.total! < 0.51 * shardedState(1)[i]!.total!, JSON.stringify(s));
    }
    await Deno.remove(dir, { recursive: true });
  },
});

function trainerProcesses(marker: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (cmd.includes("trainer.py") && cmd.includes(marker)) pids.push(Number(e.name));
    } catch {
      // Gone already.
    }
  }
  return pids;
}

Deno.test({
  name:
    "torch engine: a two-process FSDP run (DDP where torch has no FSDP) killed with SIGKILL mid-stage resumes to the uninterrupted losses",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    // The checkpoint holds whole tensors: FSDP gathers its shards to save, and shards again on
    // resume (torch.distributed.tensor.distribute_tensor for the Adam moments).
    const file = await writeGraph(dir, { nproc: 2, strategy: FSDP ? "fsdp" : "ddp" });
    const whole = await run(file, "--out", `${dir}/whole`, "--engine", "torch");
    assertEquals(whole.code, 0, whole.err);

    // A checkpoint in the continue node (index 3) after its first merge, then kill -9.
    const { at: killedAt } = await stopAtCheckpoint(
      [file, "--out", `${dir}/killed`, "--engine", "torch"],
      `${dir}/killed`,
      { nodeIndex: 3, minStep: 5 },
    );
    assert(killedAt > 0, "the run never reached a checkpoint in stage 2");
    // The ranks see their orchestrator's connection close and exit on their own.
    for (let i = 0; i < 100 && trainerProcesses(`${dir}/killed/`).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals(trainerProcesses(`${dir}/killed/`), []);

    const resumed = await run(file, "--out", `${dir}/killed`, "--engine", "torch", "--resume");
    assertEquals(resumed.code, 0, resumed.err);
    assertStringIncludes(resumed.out, "Resumed at node");
    const report = JSON.parse(await Deno.readTextFile(`${dir}/killed/report.json`));
    assert(
      report.resumedFrom >= killedAt,
      `resumed from ${report.resumedFrom}, killed at ${killedAt}`,
    );
    assertSameLosses(
      await runMetrics(`${dir}/killed`),
      await runMetrics(`${dir}/whole`),
      1e-6,
      `${FSDP ? "FSDP" : "DDP"} resumed after kill -9 against uninterrupted`,
    );
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "torch engine: a rank killed with SIGKILL mid-stage fails the run (exit 5, naming the trainer) and --resume reproduces the losses",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await writeGraph(dir, { nproc: 2 });
    await torchRun(dir, "whole", { nproc: 2 });
    const out = `${dir}/rank`;
    const killed: number[] = [];
    const stopped = await stopAtCheckpoint(
      [file, "--out", out, "--engine", "torch"],
      out,
      { nodeIndex: 3, minStep: 5 },
      () => {
        // One rank of the live launch, not the run.
        const rank = trainerProcesses(`${out}/`)[0];
        if (rank !== undefined) {
          Deno.kill(rank, "SIGKILL");
          killed.push(rank);
        }
      },
    );
    assert(stopped.at > 0, "the run never reached a checkpoint in stage 2");
    assertEquals(killed.length, 1);
    assertEquals(stopped.code, 5, stopped.stderr);
    assertStringIncludes(stopped.stderr, "PyTorch trainer stopped");
    // The other rank is stopped with it.
    assertEquals(trainerProcesses(`${out}/`), []);
    const resumed = await run(file, "--out", out, "--engine", "torch", "--resume");
    assertEquals(resumed.code, 0, resumed.err);
    assertSameLosses(await runMetrics(out), await runMetrics(`${dir}/whole`), 1e-6);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "torch engine: a tfjs run killed mid-stage resumes on the torch engine to the tfjs losses",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await writeGraph(dir);
    const whole = await run(file, "--out", `${dir}/whole`);
    assertEquals(whole.code, 0, whole.err);
    const { at: killedAt } = await stopAtCheckpoint(
      [file, "--out", `${dir}/moved`],
      `${dir}/moved`,
      { nodeIndex: 3, minStep: 5 },
    );
    assert(killedAt > 0, "the run never reached a checkpoint in stage 2");
    // The checkpoint (weights, adapters, Adam moments, data position) is engine-neutral.
    const resumed = await run(file, "--out", `${dir}/moved`, "--engine", "torch", "--resume");
    assertEquals(resumed.code, 0, resumed.err);
    assertStringIncludes(resumed.out, "Backend: torch");
    assertSameLosses(
      await runMetrics(`${dir}/moved`),
      await runMetrics(`${dir}/whole`),
      LOSS_TOLERANCE,
    );
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "torch engine: discovery takes the newest torch (the reference environment's over Debian's 1.13)",
  ignore: OLD === undefined || REF === undefined,
  fn: async () => {
    for (const order of [[OLD!.python, REF!], [REF!, OLD!.python]]) {
      const got = await findTorchPython(undefined, order);
      assert(E.isRight(got), E.isLeft(got) ? got.left.message : "");
      assertEquals(got.right.python, REF);
      assert(got.right.fsdp, `${got.right.version} has no fully_shard`);
    }
  },
});

Deno.test({
  name: "torch engine: an interpreter without torch is a named error saying what to install",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const file = await writeGraph(dir, { python: "/nonexistent/python3" });
    const r = await run(file, "--out", `${dir}/out`, "--engine", "torch");
    assertEquals(r.code, 2, r.err);
    assertStringIncludes(r.err, "training.torch.python");
    assertStringIncludes(r.err, "python3-torch");
    // Nothing was written: the engine is checked before the run directory is opened.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["graph.yaml"]);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "torch engine: two nodes (one `deno task run --node-rank` each, torchrun on each) equal one node with two ranks",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await torchRun(dir, "single", { nproc: 2 });
    // Two "nodes" on this machine: each orchestrator starts torchrun (--nnodes 2, its own
    // --node_rank), which starts its one rank; they meet at node 0's static rendezvous. With
    // torch 1.x, whose torchrun fails at start, `auto` spawns the rank with torchrun's variables.
    // FSDP where torch has it: the model is sharded across the two nodes.
    const file = await writeGraph(dir, {
      nproc: 1,
      nnodes: 2,
      master: `127.0.0.1:${freeMasterPort()}`,
      strategy: FSDP ? "fsdp" : "ddp",
    });
    const node = (rank: number) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `${ROOT}cli/run.ts`,
          file,
          "--out",
          `${dir}/node${rank}`,
          "--engine",
          "torch",
          "--node-rank",
          String(rank),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const [n0, n1] = await Promise.all([node(0), node(1)]);
    const text = (o: Deno.CommandOutput) => new TextDecoder().decode(o.stderr);
    assert(n0.success && n1.success, `${text(n0)}\n${text(n1)}`);
    const said = new TextDecoder().decode(n0.stdout);
    assertStringIncludes(said, `2 ranks on 2 nodes, ${TORCH2 ? "torchrun" : "spawned"}`);
    const want = await runMetrics(`${dir}/single`);
    const how = `${FSDP ? "FSDP" : "DDP"} on 2 nodes`;
    assertSameLosses(
      await runMetrics(`${dir}/node0`),
      want,
      1e-6,
      `${how}, node 0, against 1 node`,
    );
    assertSameLosses(
      await runMetrics(`${dir}/node1`),
      want,
      1e-6,
      `${how}, node 1, against 1 node`,
    );
    // Each node holds the whole model (DDP), or gathers it to save (FSDP): both write the same
    // final weights.
    const final = (d: string) => Deno.readFile(`${dir}/${d}/final/model.safetensors`);
    assertEquals(await final("node0"), await final("node1"));
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "torch engine: bf16 autocast trains within 1e-2 of fp32, and differs from it",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await torchRun(dir, "fp32");
    const bf16 = await torchRun(dir, "bf16", { precision: "bf16" });
    assertStringIncludes(bf16.out, "bf16");
    const a = losses(await runMetrics(`${dir}/bf16`));
    const b = losses(await runMetrics(`${dir}/fp32`));
    const gaps = a.map((x, i) => Math.abs(x.value - b[i]!.value));
    console.log(`bf16 against fp32: largest gap ${Math.max(...gaps)} (bound 1e-2)`);
    assert(Math.max(...gaps) < 1e-2, `largest gap ${Math.max(...gaps)}`);
    assert(Math.max(...gaps) > 1e-6, "bf16 gave fp32's losses: autocast did not run");
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "torch engine: settings this torch cannot serve are refused before training, by field",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    if (E.isLeft(found)) return;
    const dir = await Deno.makeTempDir();
    const refusals: [Record<string, unknown>, string][] = [
      [{ nproc: 3 }, "training.torch.nproc"], // 8 sequences per step over 3 ranks
      [{ nnodes: 2 }, "training.torch.master"],
      [{ nodeRank: 1 }, "training.torch.nodeRank"],
    ];
    if (!found.right.fsdp) refusals.push([{ strategy: "fsdp" }, "training.torch.strategy"]);
    // Debian's 1.13 beside a newer torch: FSDP is refused there, naming the version needed.
    if (OLD !== undefined) {
      refusals.push([{ strategy: "fsdp", python: OLD.python }, "PyTorch ≥ 2.6"]);
    }
    if (found.right.cudaDevices === 0) refusals.push([{ device: "cuda" }, "training.torch.device"]);
    for (const [torch, field] of refusals) {
      const r = await run(await writeGraph(dir, torch), "--out", `${dir}/out`, "--engine", "torch");
      assertEquals(r.code, 2, `${JSON.stringify(torch)}: ${r.err}`);
      assertStringIncludes(r.err, field);
      assertEquals((await Deno.stat(`${dir}/out`).catch(() => undefined))?.isDirectory, undefined);
    }
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "torch engine: the trainer answers commands sent together in order, and refuses one that does not fit the protocol, naming the field, failing those behind it",
  ignore: NO_TORCH !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    assert(E.isRight(found));
    const dir = await Deno.makeTempDir({ prefix: "step-torch-protocol-" });
    const shape = { ...TINY_SHAPE, maxSeqLen: 16 };
    try {
      const session = await tinySession(
        dir,
        found.right.python,
        found.right.version,
        initialSnapshot(shape, 1, 3),
      );
      try {
        const batch = {
          tokens: Int32Array.from([1, 2, 3, 4]),
          targets: Int32Array.from([2, 3, 4, 5]),
          batch: 1,
          seq: 4,
        };
        const evaluated = await session.request(evalCommand([batch]));
        assert(E.isRight(evaluated), E.isLeft(evaluated) ? evaluated.left.message : "");
        // A byte model at initialisation: close to ln 257 nats/token.
        assert(Math.abs(evaluated.right.loss - Math.log(257)) < 0.5, `${evaluated.right.loss}`);
        const hyper = stepHyper(withDefaults(TrainingCodec, {}), 1e-3);
        const { clip: _, ...noClip } = hyper;
        const malformed = { ...stepCommand(noClip as StepHyper, [batch]) };
        // Sent together, as the training loop sends steps ahead: the replies come back in
        // order, the refused command fails in its turn, and every command behind it fails too.
        const replies = await Promise.all([
          session.request(stepCommand(hyper, [batch])),
          session.request(stepCommand(hyper, [batch])),
          session.request(malformed),
          session.request(stepCommand(hyper, [batch])),
        ]);
        const [first, second, refused, behind] = replies;
        assert(E.isRight(first) && E.isRight(second), JSON.stringify(replies));
        // The second step trained on the same row after the first one's update.
        assert(second.right.loss < first.right.loss, JSON.stringify(replies));
        assert(E.isLeft(refused), "a step without a clip was taken");
        assertStringIncludes(refused.left.message, "CommandRefused");
        assertStringIncludes(refused.left.message, "hyper.clip: expected a number (missing)");
        assert(E.isLeft(behind), "a step behind a refused one was taken");
        assertEquals(behind.left.message, refused.left.message);
      } finally {
        await session.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const [label, python, version] of INTERPRETERS) {
  Deno.test({
    name:
      `torch engine${label}: a step whose loss is not finite is skipped (weights, moments and the update count stay), the next finite one updates`,
    ignore: python === undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "step-torch-skip-" });
      const shape = { ...TINY_SHAPE, maxSeqLen: 16 };
      const POISON = 7;
      try {
        // Token 7's embedding row is infinite: a row that reads it has a NaN loss, one that
        // does not is finite (the row gets no gradient, and stays as it is).
        const start = initialSnapshot(shape, 1, 3);
        const params = start.params.map((p) => {
          if (p.name !== "model.embed_tokens.weight") return p;
          const data = Float32Array.from(p.data);
          data.fill(Infinity, POISON * shape.hidden, (POISON + 1) * shape.hidden);
          return { ...p, data };
        });
        assert(params.some((p) => p.data.includes(Infinity)), "no embedding row was poisoned");
        const session = await tinySession(dir, python!, version, { ...start, params });
        const row = (tokens: number[]) => ({
          tokens: Int32Array.from(tokens),
          targets: Int32Array.from(tokens.map((t) => t + 1)),
          batch: 1,
          seq: tokens.length,
        });
        const hyper = stepHyper(withDefaults(TrainingCodec, {}), 1e-2);
        const readBack = async (name: string) => {
          const back = await readExchange(`${dir}/${name}`)();
          assert(E.isRight(back), E.isLeft(back) ? back.left.message : "");
          return back.right;
        };
        try {
          // Sent together, as the training loop sends steps ahead.
          const [poisoned, clean] = await Promise.all([
            session.request(stepCommand(hyper, [row([1, POISON, 3, 4])])),
            session.request(saveCommand(`${dir}/after-skip`)),
          ]);
          assert(E.isRight(poisoned) && E.isRight(clean), JSON.stringify([poisoned, clean]));
          assert(poisoned.right.skipped, `not skipped: ${JSON.stringify(poisoned.right)}`);
          assert(!Number.isFinite(poisoned.right.loss), `loss ${poisoned.right.loss}`);
          const skipped = await readBack("after-skip");
          assertEquals(skipped.meta.adamStep, 0);
          const byName = new Map(skipped.params.map((p) => [p.name, p.data]));
          for (const p of params) assertEquals(byName.get(p.name), p.data, p.name);
          for (const m of skipped.moments) {
            assert(m.data.every((x) => x === 0), `moment ${m.name} moved on a skipped step`);
          }
          const [finite, saved] = await Promise.all([
            session.request(stepCommand(hyper, [row([1, 2, 3, 4])])),
            session.request(saveCommand(`${dir}/after-update`)),
          ]);
          assert(E.isRight(finite) && E.isRight(saved), JSON.stringify([finite, saved]));
          assert(!finite.right.skipped && Number.isFinite(finite.right.loss));
          assert(Number.isFinite(finite.right.gradNorm) && finite.right.gradNorm > 0);
          const updated = await readBack("after-update");
          assertEquals(updated.meta.adamStep, 1);
          const moved = updated.params.find((p) => p.name === "model.norm.weight")!;
          const before = params.find((p) => p.name === "model.norm.weight")!;
          assert(moved.data.some((x, i) => x !== before.data[i]), "a finite step moved nothing");
        } finally {
          await session.close();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name:
    "torch engine: with a fused AdamW (torch ≥ 2.4), a step reads no tensor value on the host; its reply reads them",
  ignore: PYTHON === undefined || !TORCH2,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "step-torch-reads-" });
    const shape = { ...TINY_SHAPE, maxSeqLen: 16 };
    try {
      const init = `${dir}/in`;
      assert(E.isRight(await writeExchange(init, initialSnapshot(shape, 2, 3), shape)()));
      const streams = {
        train: memoryStream(Uint16Array.from({ length: 64 }, (_, i) => (i * 7) % 200)),
        validation: memoryStream(new Uint16Array(64)),
      };
      assert(E.isRight(await writeTokenFiles(`${dir}/data`, streams)()));
      const hyper = stepHyper(withDefaults(TrainingCodec, {}), 1e-2);
      const batch = {
        tokens: new Int32Array(8),
        targets: new Int32Array(8),
        batch: 2,
        seq: 4,
        window: { split: "train" as const, starts: [0, 20] },
      };
      const command = JSON.stringify(stepCommand({ ...hyper, clip: 0.01 }, [batch]));
      // Every way Python code reads a tensor's value to the host (on a GPU, each waits for the
      // kernels queued before it), counted while two steps run, then restored for the replies;
      // and torch's own op for a read, counted by its profiler, outside the optimizer's kernel.
      const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(`${ROOT}torch_engine`)})
import torch, trainer
s = trainer.Session(trainer.parse_args(["--init", sys.argv[1], "--data", sys.argv[2],
    "--control", "127.0.0.1:1", "--protocol", "unused", "--threads", "1"]))
cmd = json.loads(sys.argv[3])
ready = [s.prepare(cmd), s.prepare(cmd)]
names = ["item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__"]
saved = {n: getattr(torch.Tensor, n) for n in names}
reads = []
def counting(n):
    def read(self, *a, **k):
        reads.append(n)
        return saved[n](self, *a, **k)
    return read
for n in names:
    setattr(torch.Tensor, n, counting(n))
try:
    # The profiler sees the reads made inside torch's C++ too: each is an _local_scalar_dense.
    with torch.profiler.profile() as prof:
        replies = [s.step(cmd, p) for p in ready]
finally:
    for n, f in saved.items():
        setattr(torch.Tensor, n, f)
def within(e, name):
    while e is not None:
        if e.name == name:
            return True
        e = e.cpu_parent
    return False
# The fused AdamW's CPU kernel reads its step counters (CPU memory); on CUDA they stay there.
reads += [e.name for e in prof.events()
          if e.name == "aten::_local_scalar_dense" and not within(e, "aten::_fused_adamw_")]
ops = len(prof.events())
print(json.dumps({"fused": s.skips_on_device, "reads": reads, "ops": ops,
                  "replies": [r() for r in replies], "adamStep": s.adam_step}))
`;
      const out = await new Deno.Command(PYTHON!, {
        args: ["-c", script, init, `${dir}/data`, command],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(out.stderr);
      assert(out.success, err);
      const got = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
      assert(got.fused, `torch ${E.isRight(found) ? found.right.version : ""} took the loop AdamW`);
      assertEquals(got.reads, []);
      assert(got.ops > 100, `the profiler saw ${got.ops} ops in two steps`);
      const [first, second] = got.replies;
      assert(!first.skipped && !second.skipped, JSON.stringify(got.replies));
      // Clipped hard (0.01), the same rows' loss still falls after one update.
      assert(second.loss < first.loss, JSON.stringify(got.replies));
      assert(first.gradNorm > 0.01, `norm ${first.gradNorm}: the clip did not bind`);
      assertEquals(got.adamStep, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
