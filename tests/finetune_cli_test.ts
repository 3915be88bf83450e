/**
 * `deno task finetune` end to end on tiny models: the held-out response loss drops (on a
 * synthetic Alpaca file, and on a slice of the shared Alpaca sample when `../shared` is there),
 * the loss counts exactly the response tokens, an interrupted run resumes to the same weights,
 * and bad input is refused with a message naming the file, record or flag, writing nothing.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertAlmostEquals, assertEquals, assertStringIncludes } from "./assert.ts";
import { main } from "../cli/finetune.ts";
import { main as mtbenchMain } from "../cli/mtbench.ts";
import { momentName } from "../checkpoint/mod.ts";
import { parseModelAnswers } from "../data/mod.ts";
import { createEngine, type FinetuneReport, loadModel, runDirStore } from "../effects/mod.ts";
import { isAdapterName, type LlamaShape, loraNames, projectionWeight } from "../base/mod.ts";
import { alpacaPrompt, byteTokenizer, encodeAlpaca } from "../data/mod.ts";
import * as tf from "@tensorflow/tfjs-core";
import {
  disposeParams,
  evalLoss,
  exportParams,
  forwardLogits,
  initParams,
} from "../kernels/mod.ts";
import { baseSnapshot } from "../effects/_finetune_prepare.ts";
import { accountModel, padExamples } from "../pipeline/mod.ts";
import { capture, type Captured } from "./cli_capture.ts";
import { finetuneMetrics, ofType } from "./metrics.ts";
import { BYTES_FILES } from "./tiny_model.ts";

const SHARED = new URL("../../shared/data/alpaca/alpaca_en_demo.json", import.meta.url).pathname;
const hasShared = (() => {
  try {
    return Deno.statSync(SHARED).isFile;
  } catch {
    return false;
  }
})();

function shape(layers: number, maxSeqLen: number): LlamaShape {
  return {
    hidden: 32,
    intermediate: 64,
    heads: 2,
    kvHeads: 2,
    layers,
    vocab: 257,
    tiedEmbeddings: false,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxSeqLen,
  };
}

/** A base model with random weights in `dir/base/final` (byte tokeniser recorded). */
async function writeBase(dir: string, s: LlamaShape): Promise<string> {
  assert(E.isRight(await createEngine("auto")()));
  const params = initParams(s, s.layers, 7);
  const records = await exportParams(params);
  disposeParams(params);
  const saved = await runDirStore(`${dir}/base`, BYTES_FILES).saveFinal({
    params: records,
    moments: [],
    meta: { trainable: [], loraScale: 1, adamStep: 0 },
  }, s)();
  assert(E.isRight(saved));
  return `${dir}/base/final`;
}

const COLOURS: readonly [string, string][] = [
  ["grass", "Green."],
  ["the sky", "Blue."],
  ["snow", "White."],
  ["coal", "Black."],
  ["a lemon", "Yellow."],
  ["a tomato", "Red."],
  ["an orange", "Orange."],
  ["a plum", "Purple."],
];

/** Synthetic Alpaca records: with and without `input`, so both templates are trained. */
function synthetic(n: number): unknown[] {
  return Array.from({ length: n }, (_, i) => {
    const [thing, colour] = COLOURS[i % COLOURS.length]!;
    return i % 2 === 0
      ? { instruction: "Name the colour of the object.", input: thing, output: colour }
      : {
        instruction: `What colour is ${thing}?`,
        output: `${colour} It is ${colour.toLowerCase()}`,
      };
  });
}

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "finetune-cli-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function run(...args: string[]): Promise<Captured> {
  return capture((a) => main(a), args);
}

async function report(out: string): Promise<FinetuneReport> {
  return JSON.parse(await Deno.readTextFile(`${out}/report.json`));
}

const MT_QUESTIONS = new URL("../../shared/data/mt-bench/question.jsonl", import.meta.url).pathname;

/**
 * The end of the instruction-tuning path: MT-Bench answers from the fine-tuned model, as
 * FastChat's `model_answer` JSONL, read back record by record.
 */
async function answersFrom(model: string, questions: string, dir: string, limit: number) {
  const out = `${dir}/answers/sft.jsonl`;
  const notes: string[] = [];
  const io = { write: () => {}, line: () => {}, note: (l: string) => notes.push(l) };
  const code = await mtbenchMain([
    model,
    "--questions",
    questions,
    "--out",
    out,
    "--limit",
    String(limit),
    "--max-tokens",
    "32",
    "--backend",
    "auto",
  ], io);
  assertEquals(code, 0, notes.join("\n"));
  const text = await Deno.readTextFile(out);
  const back = parseModelAnswers(text, out);
  assert(E.isRight(back), E.isLeft(back) ? back.left.message : "");
  assertEquals(back.right.length, limit);
  for (const a of back.right) {
    assertEquals(a.model_id, "sft");
    assertEquals(a.choices.length, 1);
    assertEquals(a.choices[0]!.turns.length, 2);
    assert(a.choices[0]!.turns.every((t) => typeof t === "string"));
  }
  return back.right;
}

const FAST = ["--backend", "auto", "--lr", "3e-3", "--warmup", "3", "--log-every", "100"];

Deno.test({
  name: "finetune lowers the held-out response loss of a tiny model on synthetic Alpaca records",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDir(async (dir) => {
      const base = await writeBase(dir, shape(2, 256));
      await Deno.writeTextFile(`${dir}/colours.json`, JSON.stringify(synthetic(48)));
      const r = await run(
        base,
        "--data",
        `${dir}/colours.json`,
        "--out",
        `${dir}/sft`,
        ...FAST,
        "--epochs",
        "10",
        "--eval-examples",
        "8",
      );
      assertEquals(r.code, 0, r.err);
      assertStringIncludes(r.out, "Held-out response loss before fine-tuning");
      const rep = await report(`${dir}/sft`);
      assertEquals(rep.examples, { train: 40, heldOut: 8, dropped: 0, truncated: 0 });
      assertEquals(rep.steps, 50);
      assert(rep.heldOut !== null);
      // Random weights start near ln 257 = 5.55 nats; the responses are a few short words.
      assert(rep.heldOut.before > 5, JSON.stringify(rep.heldOut));
      assert(rep.heldOut.after < rep.heldOut.before - 1.5, JSON.stringify(rep.heldOut));
      // The fine-tuned model opens for evaluation and generation with the base's tokeniser.
      const loaded = await loadModel(`${dir}/sft/final`)();
      assert(E.isRight(loaded));
      assertEquals([loaded.right.tokenizer.name, loaded.right.model.shape.maxSeqLen], [
        "bytes",
        256,
      ]);
      loaded.right.dispose();
      // ... and answers MT-Bench-style questions (two turns each) into a valid answer file.
      const questions = `${dir}/question.jsonl`;
      await Deno.writeTextFile(
        questions,
        [
          { question_id: 1, category: "writing", turns: ["What colour is grass?", "And snow?"] },
          { question_id: 2, category: "stem", turns: ["Name the colour of coal.", "Why?"] },
        ].map((q) => JSON.stringify(q)).join("\n") + "\n",
      );
      const answers = await answersFrom(`${dir}/sft/final`, questions, dir, 2);
      assertEquals(answers.map((a) => a.question_id), [1, 2]);
    }),
});

Deno.test({
  name: "finetune lowers the held-out response loss on a slice of the shared Alpaca sample" +
    (hasShared ? "" : ` (skipped: ${SHARED} is absent)`),
  ignore: !hasShared,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDir(async (dir) => {
      const base = await writeBase(dir, shape(2, 256));
      const r = await run(
        base,
        "--data",
        SHARED,
        "--out",
        `${dir}/sft`,
        ...FAST,
        "--limit",
        "64",
        "--eval-examples",
        "12",
      );
      assertEquals(r.code, 0, r.err);
      const rep = await report(`${dir}/sft`);
      // Prompts of the sample run from 156 to over 1,000 bytes: those beyond 256 are dropped.
      assertEquals(rep.examples.train + rep.examples.heldOut + rep.examples.dropped, 64);
      assert(rep.examples.dropped > 0 && rep.examples.train >= 24, JSON.stringify(rep.examples));
      assert(rep.heldOut !== null);
      assert(rep.heldOut.after < rep.heldOut.before - 0.3, JSON.stringify(rep.heldOut));
      assert(rep.lastLoss !== null && rep.firstLoss !== null && rep.lastLoss < rep.firstLoss);
      // End to end: the fine-tuned model answers the first MT-Bench questions, both turns.
      const answers = await answersFrom(`${dir}/sft/final`, MT_QUESTIONS, dir, 3);
      assertEquals(answers.map((a) => a.question_id), [81, 82, 83]);
    }),
});

Deno.test({
  name: "the fine-tuning loss is the mean cross-entropy over the response tokens only",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const engine = await createEngine("auto")();
    assert(E.isRight(engine));
    const s = shape(1, 300);
    const tok = byteTokenizer();
    const records = [
      { instruction: "Name the colour of the object.", input: "grass", output: "Green." },
      { instruction: "Say hello.", output: "Hello there, friend!" },
      { instruction: "Count to three.", input: "", output: "One, two, three." },
    ];
    const examples = records.map((r) => encodeAlpaca(r, { tokenizer: tok, maxSeqLen: 300 })!);
    const params = initParams(s, 1, 3);
    const model = { shape: s, params, loraScale: 1 };
    // Independently: each record unpadded and unmasked, the response positions found from the
    // prompt's length, the cross-entropy of those positions in float64.
    let sum = 0;
    let count = 0;
    for (const r of records) {
      const prompt = tok.encode(alpacaPrompt(r));
      const seq = Int32Array.from([...prompt, ...tok.encode(r.output), tok.eot]);
      const logits = forwardLogits(model, {
        tokens: seq.slice(0, -1),
        batch: 1,
        seq: seq.length - 1,
      });
      const rows = (await logits.array()) as number[][];
      logits.dispose();
      for (let i = prompt.length - 1; i < seq.length - 1; i++) {
        const row = rows[i]!;
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
        sum += lse - row[seq[i + 1]!]!;
        count++;
      }
    }
    assertEquals(count, examples.reduce((n, x) => n + x.responseTokens, 0));
    const arrays = await exportParams(params);
    disposeParams(params);
    const zeros = (k: "m" | "v") =>
      arrays.map((a) => ({
        ...a,
        name: momentName(k, a.name),
        data: new Float32Array(a.data.length),
      }));
    const state = await engine.right.load(s, {
      params: arrays,
      moments: [...zeros("m"), ...zeros("v")],
      meta: { trainable: arrays.map((a) => a.name), loraScale: 1, adamStep: 0 },
    })();
    assert(E.isRight(state));
    // Padded into one batch of 3 rows and into micro-batches of 2 + 1: the same mean.
    const batches = padExamples(examples, { microBatch: 2, pad: tok.eot });
    assertEquals(batches.map((b) => b.batch), [2, 1]);
    const evaluated = await engine.right.evaluate(
      state.right,
      padExamples(examples, { microBatch: 3, pad: 0 }),
    )();
    assert(E.isRight(evaluated));
    assertAlmostEquals(evaluated.right, sum / count, 1e-4);
    const stepped = await engine.right.step(state.right, batches, {
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0,
      clip: 1,
      recompute: "none",
    })();
    assert(E.isRight(stepped));
    assertAlmostEquals(stepped.right.loss, sum / count, 1e-4);
    engine.right.dispose(stepped.right.state);
  },
});

Deno.test({
  name: "a base with LoRA adapters is merged into a plain model that computes the same loss",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const engine = await createEngine("auto")();
    assert(E.isRight(engine));
    const s = shape(1, 64);
    const params = new Map(initParams(s, 1, 5));
    for (const p of ["q", "down"] as const) {
      const w = projectionWeight(0, p);
      const [inDim, outDim] = params.get(w)!.shape as [number, number];
      const { a, b } = loraNames(w);
      params.set(a, tf.randomNormal([inDim, 4], 0, 0.3, "float32", 1));
      params.set(b, tf.randomNormal([4, outDim], 0, 0.3, "float32", 2));
    }
    const model = { shape: s, params, loraScale: 0.5 };
    const batch = {
      tokens: Int32Array.from({ length: 32 }, (_, i) => (i * 37) % 257),
      targets: Int32Array.from({ length: 32 }, (_, i) => (i < 10 ? -1 : (i * 37 + 37) % 257)),
      batch: 1,
      seq: 32,
    };
    const withAdapters = await evalLoss(model, [batch]);
    const plain = new Map([...params].filter(([n]) => !isAdapterName(n)));
    // The adapters change the function, so an unmerged (dropped) adapter would show.
    const without = await evalLoss({ ...model, params: plain }, [batch]);
    assert(Math.abs(without - withAdapters) > 1e-3, `${without} vs ${withAdapters}`);
    const plainParams = [...plain.values()].reduce((sum, t) => sum + t.size, 0);
    const base = await baseSnapshot({
      model,
      tokenizer: byteTokenizer(),
      tokenizerSpec: "bytes",
      tokenizerHow: "given",
      source: "memory",
      format: "step",
      dispose: () => disposeParams(params),
    });
    assert(E.isRight(base));
    const state = await engine.right.load(s, base.right)();
    assert(E.isRight(state));
    const snap = await engine.right.snapshot(state.right)();
    assert(E.isRight(snap));
    const { stats } = accountModel(snap.right.params, snap.right.meta.trainable);
    assertEquals([stats.adapterParams, stats.frozenParams], [0, 0]);
    assertEquals(stats.trainableParams, plainParams);
    const merged = await engine.right.evaluate(state.right, [batch])();
    assert(E.isRight(merged));
    assertAlmostEquals(merged.right, withAdapters, 1e-4);
    engine.right.dispose(state.right);
  },
});

async function trainLosses(out: string): Promise<(number | null)[]> {
  return ofType(await finetuneMetrics(out), "train").map((r) => r.loss);
}

Deno.test({
  name: "an interrupted fine-tuning run resumes to the uninterrupted run's weights and losses",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDir(async (dir) => {
      const base = await writeBase(dir, shape(2, 256));
      const data = `${dir}/colours.jsonl`;
      await Deno.writeTextFile(data, synthetic(30).map((r) => JSON.stringify(r)).join("\n"));
      const args = [
        base,
        "--data",
        data,
        ...FAST,
        "--batch",
        "4",
        "--micro-batch",
        "2",
        "--eval-examples",
        "6",
        "--checkpoint-every",
        "3",
      ];
      const whole = await run(...args, "--out", `${dir}/whole`);
      assertEquals(whole.code, 0, whole.err);

      const stopped = await run(...args, "--out", `${dir}/cut`, "--stop-after", "4");
      assertEquals(stopped.code, 0, stopped.err);
      assertStringIncludes(stopped.out, "Stopped after step 4 of 12");
      // The mid-run checkpoint opens on its own (shape and tokenizer beside its weights).
      const mid = await loadModel(`${dir}/cut/checkpoint`)();
      assert(E.isRight(mid), E.isLeft(mid) ? mid.left.message : "");
      assertEquals(mid.right.tokenizerSpec, "bytes");
      mid.right.dispose();
      // What a process killed after its checkpoint leaves behind: records past the checkpoint.
      await Deno.writeTextFile(`${dir}/cut/metrics.jsonl`, '{"type":"train","step":5,"loss":0}\n', {
        append: true,
      });
      const again = await run(...args, "--out", `${dir}/cut`);
      assertEquals(again.code, 2);
      assertStringIncludes(again.err, "--resume");

      const resumed = await run(...args, "--out", `${dir}/cut`, "--resume");
      assertEquals(resumed.code, 0, resumed.err);
      assertStringIncludes(resumed.out, "Resumed at step 4 of 12");
      assertEquals(await trainLosses(`${dir}/cut`), await trainLosses(`${dir}/whole`));
      assertEquals(
        await Deno.readFile(`${dir}/cut/final/model.safetensors`),
        await Deno.readFile(`${dir}/whole/final/model.safetensors`),
      );
      const [a, b] = [await report(`${dir}/whole`), await report(`${dir}/cut`)];
      assertEquals([b.heldOut, b.resumedFrom], [a.heldOut, 4]);

      const changed = await run(...args, "--out", `${dir}/cut`, "--resume", "--lr", "1e-3");
      assertEquals(changed.code, 2);
      assertStringIncludes(changed.err, "written with --lr 0.003, this command gives 0.001");
    }),
});

Deno.test({
  name:
    "finetune refuses bad input with a message naming the file, record or flag, writing nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDir(async (dir) => {
      const base = await writeBase(dir, shape(1, 256));
      const out = `${dir}/never`;
      const bad = async (file: string, text: string, ...extra: string[]) => {
        await Deno.writeTextFile(`${dir}/${file}`, text);
        return await run(
          base,
          "--data",
          `${dir}/${file}`,
          "--out",
          out,
          "--backend",
          "auto",
          ...extra,
        );
      };
      const malformed = await bad("broken.json", '[{"instruction": "a", "output": "b"},');
      assertEquals(malformed.code, 2);
      assertStringIncludes(malformed.err, `"${dir}/broken.json": not valid JSON`);
      const missing = await bad(
        "missing.jsonl",
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "input": "d"}\n',
      );
      assertEquals(missing.code, 2);
      assertStringIncludes(
        missing.err,
        `"${dir}/missing.jsonl": record 1 (line 2): "output" is missing`,
      );
      const tooLong = await bad(
        "long.json",
        JSON.stringify([{ instruction: "x".repeat(400), output: "y" }]),
      );
      assertEquals(tooLong.code, 2);
      assertStringIncludes(tooLong.err, "0 of 1 records fit the model's context of 256 tokens");
      const noData = await run(base, "--data", `${dir}/absent.json`, "--out", out);
      assertEquals(noData.code, 4);
      assertStringIncludes(noData.err, `"${dir}/absent.json": no such file`);
      // Valid data, so the missing base is what stops the run.
      await Deno.writeTextFile(`${dir}/ok.json`, JSON.stringify(synthetic(4)));
      const noBase = await run(`${dir}/nothing`, "--data", `${dir}/ok.json`, "--out", out);
      assertEquals(noBase.code, 4, noBase.err);
      assertStringIncludes(noBase.err, `${dir}/nothing`);

      for (
        const [args, text] of [
          [["--epochs", "2", "--bogus"], "Unknown option '--bogus'"],
          [["--epochs", "0"], '--epochs: expected an integer ≥ 1, got "0"'],
          [["--lr", "fast"], '--lr: expected a positive number, got "fast"'],
          [["--resume", "--force"], "--resume/--force"],
          [[], "--data: is required"],
        ] as const
      ) {
        const r = await run(
          base,
          ...(args.length === 0 ? [] : ["--data", `${dir}/broken.json`]),
          ...args,
        );
        assertEquals(r.code, 2, r.err);
        assertStringIncludes(r.err, text);
      }
      const held = await bad("two.json", JSON.stringify(synthetic(4)), "--eval-examples", "4");
      assertEquals(held.code, 2);
      assertStringIncludes(held.err, "--eval-examples: 4 held out of 4 usable examples");
      assert(!(await Deno.stat(out).then(() => true, () => false)), "nothing is written");
    }),
});
