/**
 * The TensorBoard event files a run writes, read by TensorBoard itself: `EventAccumulator` (the
 * reader behind `tensorboard --logdir`) finds every number `metrics.jsonl` has, under the tag
 * `<type>[/<set>]/<field>`, at the record's step (pre-training: `globalStep`; fine-tuning:
 * `step`) with the record's value rounded to float32 (`simple_value` is a float: the values are
 * equal to `Math.fround` of the log's exactly, a relative difference of at most 2⁻²⁴), and
 * nothing else but `train/tokensPerSecond`. Across a `kill -9` and `--resume`: the resumed
 * session's file begins with `SessionLog.START`, and what the killed session logged after its
 * checkpoint is gone from what TensorBoard shows. Every record of every file is also read with
 * TensorBoard's own TFRecord reader, which checks both masked CRC-32Cs, and our CRC-32C is
 * compared with TensorBoard's on random bytes. Turned off, a run writes no event file.
 *
 * Needs the reference Python environment (`tests/reference_python.ts`).
 */
import YAML from "yaml";
import { assert, assertEquals } from "./assert.ts";
import { main as runMain } from "../cli/run.ts";
import { main as finetuneMain } from "../cli/finetune.ts";
import { tensorboardLog } from "../effects/mod.ts";
import { maskedCrc32c } from "../store/mod.ts";
import { capture } from "./cli_capture.ts";
import { stopAtCheckpoint } from "./kill_run.ts";
import { referencePython } from "./reference_python.ts";
import { withTempDir, writeTinyModel } from "./tiny_model.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const PYTHON = await referencePython(["tensorboard"]);
const OPTS = { sanitizeOps: false, sanitizeResources: false, ignore: PYTHON === undefined };
const TOKENS_PER_SECOND = "train/tokensPerSecond";

/**
 * A two-stage STEP graph (train, grow, ReLoRA, continue, then an evaluation of a second corpus
 * when `second` names its file): every kind of pre-training record.
 */
function graph(training: Record<string, unknown>, second?: string): unknown {
  return {
    version: 1,
    name: "tb",
    model: { hidden: 16, intermediate: 32, heads: 2, layers: 3, vocab: 257, maxSeqLen: 32 },
    training: {
      backend: "cpu",
      seqLen: 16,
      microBatch: 4,
      batchTokens: 128,
      lr: 0.01,
      warmup: 3,
      evalEvery: 6,
      evalBatches: 2,
      checkpointEvery: 4,
      logEvery: 4,
      seed: 3,
      ...training,
    },
    data: { source: "builtin", builtinBytes: 30000, cacheDir: `${ROOT}.cache/tokens` },
    nodes: [
      { op: "train", id: "s1.train", layers: 2, steps: 12, scheduleSteps: 16, warmup: 3 },
      { op: "grow", id: "s2.grow", add: 1 },
      {
        op: "attachPET",
        id: "s2.pet",
        kind: "relora",
        rank: 2,
        alpha: 4,
        resetEvery: 5,
        restartWarmup: 2,
      },
      { op: "continue", id: "s2.continue", steps: 12, warmup: 2 },
      ...(second === undefined
        ? []
        : [{ op: "eval", id: "wiki", source: second, batches: 1, label: "second" }]),
    ],
  };
}

/** What TensorBoard read from a folder of event files. */
interface Read {
  /** Per file, in name order: its records, its first event's file_version, its START steps. */
  readonly files: { name: string; records: number; version: string; starts: number[] }[];
  /** EventAccumulator's scalars: tag → [step, value][] in its order. */
  readonly scalars: Record<string, [number, number][]>;
  /** TensorBoard's masked CRC-32C of each sample. */
  readonly crc: number[];
}

const READER = `
import json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow as pw

inp = json.load(sys.stdin)
folder = inp["folder"]
files = []
for name in sorted(n for n in os.listdir(folder) if "tfevents" in n):
    reader = pw.PyRecordReader_New(os.path.join(folder, name))
    records, version, starts = 0, None, []
    while True:
        try:
            reader.GetNext()  # checks the length's and the data's masked CRC-32C
        except errors.OutOfRangeError:
            break
        event = event_pb2.Event.FromString(reader.record())
        if records == 0:
            version = event.file_version
        if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
            starts.append(event.step)
        records += 1
    files.append({"name": name, "records": records, "version": version, "starts": starts})
acc = EventAccumulator(folder, size_guidance={"scalars": 0})
acc.Reload()
scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
crc = [pw.masked_crc32c(bytes(s)) for s in inp["samples"]]
print(json.dumps({"files": files, "scalars": scalars, "crc": crc}))
`;

/** TensorBoard's reading of the event files in `folder`, and its CRCs of `samples`. */
async function tensorboardRead(folder: string, samples: readonly Uint8Array[] = []): Promise<Read> {
  const child = new Deno.Command(PYTHON!, {
    args: ["-c", READER],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(
    new TextEncoder().encode(JSON.stringify({ folder, samples: samples.map((s) => [...s]) })),
  );
  await writer.close();
  const out = await child.output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * The scalars a `metrics.jsonl` text holds, written out from the documented rule: every number
 * of a record but its step, tagged `<type>[/<set>]/<field>` (`/` into nested objects), booleans
 * as 0 and 1, at `globalStep` (pre-training) or `step` (fine-tuning).
 */
function expectedScalars(text: string): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  for (const line of text.split("\n").filter((l) => l !== "")) {
    const r = JSON.parse(line) as Record<string, unknown>;
    const pretraining = "globalStep" in r;
    const step = (pretraining ? r.globalStep : r.step) as number;
    const prefix = typeof r.set === "string" ? `${r.type}/${r.set}` : `${r.type}`;
    const add = (tag: string, v: unknown): void => {
      if (typeof v === "number" || typeof v === "boolean") {
        const list = out.get(tag) ?? [];
        list.push([step, Number(v)]);
        out.set(tag, list);
      } else if (v !== null && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) add(`${tag}/${k}`, x);
      }
    };
    for (const [k, v] of Object.entries(r)) {
      if (k === "type" || k === "set" || k === "globalStep" || (!pretraining && k === "step")) {
        continue;
      }
      add(`${prefix}/${k}`, v);
    }
  }
  return out;
}

/**
 * Asserts TensorBoard's scalars are exactly the log's (values as float32), plus tokens/s on
 * train steps; returns the largest relative difference from the log's double and the count.
 */
function assertSameScalars(
  read: Read,
  metricsText: string,
): { readonly largest: number; readonly compared: number } {
  const expected = expectedScalars(metricsText);
  const { [TOKENS_PER_SECOND]: rates, ...rest } = read.scalars;
  assertEquals(Object.keys(rest).sort(), [...expected.keys()].sort());
  let largest = 0;
  let compared = 0;
  for (const [tag, points] of expected) {
    const got = rest[tag]!;
    const want = points.map(([s, v]): [number, number] => [s, Math.fround(v)]);
    assertEquals(got, want, tag);
    for (const [i, [, v]] of points.entries()) {
      largest = Math.max(largest, v === 0 ? Math.abs(got[i]![1]) : Math.abs(got[i]![1] / v - 1));
      compared++;
    }
  }
  assert(rates !== undefined && rates.length > 0, "train/tokensPerSecond is missing");
  const trainSteps = new Set((expected.get("train/loss") ?? []).map(([s]) => s));
  for (const [s, v] of rates) assert(trainSteps.has(s) && Number.isFinite(v) && v > 0, `${s}`);
  return { largest, compared };
}

function eventFiles(folder: string): string[] {
  try {
    return [...Deno.readDirSync(folder)].map((e) => e.name).filter((n) => n.includes("tfevents"))
      .sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** Every name under `dir`, recursively. */
function allNames(dir: string): string[] {
  return [...Deno.readDirSync(dir)].flatMap((e) =>
    e.isDirectory ? [e.name, ...allNames(`${dir}/${e.name}`)] : [e.name]
  );
}

Deno.test({
  ...OPTS,
  name:
    "run: EventAccumulator reads every scalar of metrics.jsonl at its step, across kill -9 and --resume",
  fn: () =>
    withTempDir("tensorboard-", async (dir) => {
      const file = `${dir}/g.yaml`;
      await Deno.writeTextFile(
        `${dir}/second.txt`,
        "The second corpus, a few lines long.\n".repeat(40),
      );
      await Deno.writeTextFile(file, YAML.stringify(graph({}, `${dir}/second.txt`)));
      const out = `${dir}/run`;
      const { at } = await stopAtCheckpoint([file, "--out", out], out, {
        nodeIndex: 3,
        minStep: 1,
      });
      assert(at > 12, `killed at global step ${at}`);
      // What a session killed after its checkpoint leaves: a record past the checkpoint, in the
      // log and in an event file, with a loss no step gives. The resumed session writes it again.
      const state = JSON.parse(await Deno.readTextFile(`${out}/checkpoint/state.json`));
      const lines = (await Deno.readTextFile(`${out}/metrics.jsonl`)).split("\n").filter((l) =>
        l !== ""
      );
      const last = JSON.parse(lines.at(-1)!);
      const stale = {
        type: "train",
        node: "s2.continue",
        stage: 2,
        step: 99,
        loss: 1e6,
        lr: 1,
        gradNorm: 1,
        tokens: 1,
        memoryBytes: 1,
        globalStep: last.globalStep + 1,
      } as const;
      await Deno.writeTextFile(`${out}/metrics.jsonl`, JSON.stringify(stale) + "\n", {
        append: true,
      });
      tensorboardLog(`${out}/tensorboard`, { print: () => {} }).record(stale);
      assert(lines.length + 1 > state.progress.metrics);

      const resumed = await capture(runMain, [file, "--out", out, "--resume"]);
      assertEquals(resumed.code, 0, resumed.err);
      const files = eventFiles(`${out}/tensorboard`);
      assertEquals(files.length, 3, files.join(", "));

      const samples = [
        new Uint8Array(0),
        new Uint8Array(32),
        ...[1, 7, 8, 300].map((n) => crypto.getRandomValues(new Uint8Array(n))),
      ];
      const read = await tensorboardRead(`${out}/tensorboard`, samples);
      assertEquals(read.crc, samples.map((s) => maskedCrc32c(s)));
      assertEquals(read.files.map((f) => f.name), files);
      for (const f of read.files) assertEquals(f.version, "brain.Event:2", f.name);
      // The killed and the stale sessions began fresh; the resumed one at the first step it
      // writes again, which dropped what the others logged from there on.
      const firstRewritten = JSON.parse(lines[state.progress.metrics] ?? JSON.stringify(stale));
      assertEquals(read.files.map((f) => f.starts), [[], [], [firstRewritten.globalStep]]);
      const metrics = await Deno.readTextFile(`${out}/metrics.jsonl`);
      assert(!metrics.includes('"loss":1000000'));
      const { largest, compared } = assertSameScalars(read, metrics);
      for (const tag of ["train/loss", "train/lr", "train/gradNorm", "eval/valLoss"]) {
        assert(tag in read.scalars, tag);
      }
      for (const tag of ["stage/measuredPeakBytes", "stage/predictedPeakBytes", "grow/layers"]) {
        assert(tag in read.scalars, tag);
      }
      assert("merge/prunedFraction" in read.scalars && "eval/second/valLoss" in read.scalars);
      console.log(
        `${compared} scalars of ${Object.keys(read.scalars).length - 1} tags equal; largest ` +
          `relative difference from metrics.jsonl's doubles ${largest.toExponential(2)} ` +
          `(float32: at most ${(2 ** -24).toExponential(2)})`,
      );
      assert(largest <= 2 ** -24);
    }),
});

Deno.test({
  // Needs no Python: it runs wherever the other tests do.
  sanitizeOps: false,
  sanitizeResources: false,
  name: "run: training.tensorboard: false writes no event file",
  fn: () =>
    withTempDir("tensorboard-off-", async (dir) => {
      const g = graph({ tensorboard: false }) as Record<string, unknown>;
      const nodes = [{ op: "train", id: "t", layers: 3, steps: 2 }];
      await Deno.writeTextFile(`${dir}/g.yaml`, YAML.stringify({ ...g, nodes }));
      const r = await capture(runMain, [`${dir}/g.yaml`, "--out", `${dir}/run`]);
      assertEquals(r.code, 0, r.err);
      assert(await Deno.stat(`${dir}/run/metrics.jsonl`).then(() => true));
      assertEquals(
        allNames(`${dir}/run`).filter((n) => n.includes("tfevents") || n === "tensorboard"),
        [],
      );
    }),
});

/** Synthetic Alpaca records. */
function alpaca(n: number): string {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      instruction: `What colour is thing ${i % 4}?`,
      output: ["Green.", "Blue.", "White.", "Black."][i % 4],
    })).join("\n");
}

Deno.test({
  ...OPTS,
  name:
    "finetune: EventAccumulator reads its metrics across --stop-after and --resume; --no-tensorboard writes none",
  fn: () =>
    withTempDir("tensorboard-sft-", async (dir) => {
      const base = await writeTinyModel(`${dir}/base`);
      await Deno.writeTextFile(`${dir}/a.jsonl`, alpaca(20));
      const args = [base, "--data", `${dir}/a.jsonl`, "--backend", "cpu", "--batch", "3"];
      args.push("--epochs", "1", "--eval-examples", "2", "--warmup", "2");
      const out = `${dir}/sft`;
      const cut = await capture(finetuneMain, [...args, "--out", out, "--stop-after", "3"]);
      assertEquals(cut.code, 0, cut.err);
      const resumed = await capture(finetuneMain, [...args, "--out", out, "--resume"]);
      assertEquals(resumed.code, 0, resumed.err);
      const read = await tensorboardRead(`${out}/tensorboard`);
      assertEquals(read.files.length, 2);
      const metrics = await Deno.readTextFile(`${out}/metrics.jsonl`);
      const { [TOKENS_PER_SECOND]: none, ...rest } = read.scalars;
      assertEquals(none, undefined);
      const expected = expectedScalars(metrics);
      assertEquals(Object.keys(rest).sort(), [...expected.keys()].sort());
      for (const [tag, points] of expected) {
        assertEquals(rest[tag], points.map(([s, v]) => [s, Math.fround(v)]), tag);
      }
      assert("eval/held-out/loss" in rest && "train/loss" in rest);

      const off = await capture(finetuneMain, [...args, "--out", `${dir}/off`, "--no-tensorboard"]);
      assertEquals(off.code, 0, off.err);
      assertEquals(allNames(`${dir}/off`).filter((n) => n.includes("tfevents")), []);
    }),
});
