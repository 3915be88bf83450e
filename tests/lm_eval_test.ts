/**
 * EleutherAI's lm-evaluation-harness judges `deno task eval`: a random-weight model in GPT-2's
 * vocabulary is exported (`deno task ckpt export`), and `lm_eval` (0.4.13, the `hf` model type,
 * cpu, float32, batch size 1, no network) runs it through task YAMLs that read the
 * `../shared/data` files (`dataset_path: json`) — PIQA, ARC-Easy, WikiText-2 (the harness's own
 * detokeniser and `process_results`), a prompt ending in a newline, and over-long
 * continuations. Its per-item log-likelihoods, `acc`/`acc_norm` and rolling perplexity equal what
 * `deno task eval --items` writes on the same items. `tests/py/lmeval_check.py` is the client
 * side. Skipped with a message where the reference environment or ../shared/data is missing.
 */
import * as E from "fp-ts/lib/Either.js";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "./assert.ts";
import { main as evalMain } from "../cli/eval.ts";
import { main as ckptMain } from "../cli/ckpt.ts";
import type { LlamaShape } from "../base/llama_shape.ts";
import { tokenizerFiles } from "../checkpoint/mod.ts";
import { gpt2Tokenizer } from "../data/mod.ts";
import { runDirStore } from "../effects/run_dir.ts";
import { readRecords } from "../evals/mod.ts";
import { disposeParams, exportParams, initBackend, initParams } from "../kernels/mod.ts";
import { capture } from "./cli_capture.ts";
import { referencePython } from "./reference_python.ts";
import { withTempDir } from "./tiny_model.ts";

const SHARED = fileURLToPath(new URL("../../shared/data", import.meta.url));
const CHECK = fileURLToPath(new URL("./py/lmeval_check.py", import.meta.url));
const haveShared = await Deno.stat(SHARED).then((s) => s.isDirectory, () => false);
if (!haveShared) console.log(`skipped: lm_eval_test reads ${SHARED}, which is absent`);
const PYTHON = haveShared ? await referencePython(["lm_eval", "transformers"]) : undefined;

/** Items per multiple-choice task on both sides. */
const LIMIT = 20;
/** WikiText articles on both sides (each rolls over some 60 windows). */
const WIKI_DOCS = 3;
/**
 * Per-item log-likelihood tolerance, nats: 1e-4 per 100 nats of log-likelihood, at least 1e-4
 * (both sides sum float32 log-probabilities of some 10 nats each; a document's sum of thousands
 * of tokens is held to a relative 1e-4 instead).
 */
const TOL = 1e-4;
const tolerance = (ll: number) => TOL * Math.max(1, Math.abs(ll) / 100);

/** Small, so that WikiText's articles roll over many windows and a long target overflows one. */
const SHAPE: LlamaShape = {
  hidden: 32,
  intermediate: 64,
  heads: 4,
  kvHeads: 2,
  layers: 2,
  vocab: 50257,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 64,
};

/** The harness's task YAMLs, reading local JSON lines files (`dataset_path: json`). */
function yamlTask(name: string, data: string, body: string): string {
  return `task: ${name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: ${JSON.stringify(data)}
test_split: test
${body}`;
}

const MC_METRICS = `metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
`;

interface ChoiceRow {
  readonly task: string;
  readonly item: number;
  readonly logprobs: number[];
  readonly gold: number;
  readonly logprob: number;
  readonly greedy: boolean;
  readonly words: number;
  readonly bytes: number;
  readonly tokens: number;
}

interface Client {
  readonly versions: Record<string, unknown>;
  readonly tasks: Record<string, {
    metrics: Record<string, number>;
    items: {
      doc_id: number;
      logprobs: number[];
      greedy: boolean[];
      acc: number;
      acc_norm: number;
      logprob: number;
      words: number;
      bytes: number;
    }[];
  }>;
  readonly pairs: { logprob?: number; greedy?: boolean; error?: string }[];
  readonly seconds: Record<string, number>;
}

async function prepare(dir: string): Promise<{ model: string; pairs: [string, string][] }> {
  // The model: random weights in GPT-2's vocabulary (merges across the prompt/choice boundary).
  const gpt2 = await gpt2Tokenizer()();
  assert(E.isRight(gpt2));
  assert(E.isRight(await initBackend("cpu")));
  const params = initParams(SHAPE, SHAPE.layers, 5);
  const records = await exportParams(params);
  disposeParams(params);
  const saved = await runDirStore(`${dir}/run`, tokenizerFiles("gpt2", gpt2.right)).saveFinal({
    params: records,
    moments: [],
    meta: { trainable: [], loraScale: 1, adamStep: 0 },
  }, SHAPE)();
  assert(E.isRight(saved));
  const exported = await capture(ckptMain, ["export", `${dir}/run/final`, `${dir}/hf`]);
  assertEquals(exported.code, 0, exported.err);

  // PIQA: the solutions and the labels file joined into one JSON lines file for the harness.
  const piqa = (await Deno.readTextFile(`${SHARED}/piqa/valid.jsonl`)).split("\n").slice(0, LIMIT);
  const labels = (await Deno.readTextFile(`${SHARED}/piqa/valid-labels.lst`)).split("\n");
  await Deno.writeTextFile(
    `${dir}/piqa.jsonl`,
    piqa.map((l, i) => JSON.stringify({ ...JSON.parse(l), label: Number(labels[i]) })).join("\n"),
  );
  // WikiText: the articles as our reader splits valid.txt, undetokenised, as the harness's
  // document-level `page` field; the harness's own detokeniser and counts run on them.
  const wiki = await readRecords(
    { data: "wikitext-2/valid.txt", format: "wikitext" },
    `${SHARED}/wikitext-2/valid.txt`,
    undefined,
  );
  assert(E.isRight(wiki));
  await Deno.writeTextFile(
    `${dir}/wiki.jsonl`,
    wiki.right.slice(0, WIKI_DOCS).map((r) => JSON.stringify({ page: r.fields.text })).join("\n"),
  );
  // Long continuations: exactly the window, the window + 1 (the harness refuses it), and a
  // context cut from the left. GPT-2 gives " x" one id each.
  const pairs: [string, string][] = [
    ["Count", " x".repeat(SHAPE.maxSeqLen)],
    ["Count", " x".repeat(SHAPE.maxSeqLen + 1)],
    ["Long context".repeat(40), " and a target"],
  ];
  await Deno.writeTextFile(
    `${dir}/long.jsonl`,
    pairs.map(([context, target]) => JSON.stringify({ context, target: target.trim() })).join(
      "\n",
    ),
  );

  await Deno.mkdir(`${dir}/tasks`);
  const arc = `${SHARED}/arc-easy/arc_easy.jsonl`;
  const tasks: Record<string, string> = {
    piqa_local: yamlTask(
      "piqa_local",
      `${dir}/piqa.jsonl`,
      `output_type: multiple_choice
doc_to_text: "Question: {{goal}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{[sol1, sol2]}}"
${MC_METRICS}`,
    ),
    arc_easy_local: yamlTask(
      "arc_easy_local",
      arc,
      `output_type: multiple_choice
doc_to_text: "{{query}}\\nAnswer:"
doc_to_target: gold
doc_to_choice: "{{choices}}"
${MC_METRICS}`,
    ),
    // The context ends in a newline, and the choice follows with no delimiter.
    arc_newline: yamlTask(
      "arc_newline",
      arc,
      `output_type: multiple_choice
doc_to_text: "{{query}}\\nAnswer:\\n"
target_delimiter: ""
doc_to_target: gold
doc_to_choice: "{{choices}}"
${MC_METRICS}`,
    ),
    wikitext_local: yamlTask(
      "wikitext_local",
      `${dir}/wiki.jsonl`,
      `output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: !function wikitext_local.wikitext_detokenizer
process_results: !function wikitext_local.process_results
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
`,
    ),
  };
  for (const [name, text] of Object.entries(tasks)) {
    await Deno.writeTextFile(`${dir}/tasks/${name}.yaml`, text);
  }
  await Deno.writeTextFile(
    `${dir}/tasks/wikitext_local.py`,
    "from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer\n",
  );
  // Ours: the same newline-ended prompt and the long pairs, as task files.
  await Deno.writeTextFile(
    `${dir}/arc_newline.yaml`,
    `name: arc_newline
kind: multiple_choice
reader: { data: ${JSON.stringify(arc)} }
prompt: "{query}\\nAnswer:\\n"
choices: "{choices}"
gold: "{gold}"
delimiter: ""
`,
  );
  await Deno.writeTextFile(
    `${dir}/long.yaml`,
    `name: long
kind: last_word
reader: { data: long.jsonl }
context: "{context}"
target: "{target}"
`,
  );
  return { model: `${dir}/hf`, pairs };
}

async function client(request: unknown, cache: string): Promise<Client> {
  const child = new Deno.Command(PYTHON!, {
    args: [CHECK],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: {
      HF_HUB_OFFLINE: "1",
      HF_DATASETS_OFFLINE: "1",
      TOKENIZERS_PARALLELISM: "false",
      // The JSON files' Arrow cache goes to the test's folder, not the user's.
      HF_DATASETS_CACHE: cache,
    },
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(request)));
  await w.close();
  const out = await child.output();
  const err = new TextDecoder().decode(out.stderr);
  assert(out.success, `lmeval_check.py failed:\n${err.slice(-4000)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Ours, with `--items`: rows by task. */
async function ours(
  dir: string,
  model: string,
  taskFile: string,
  tasks: string,
  n: number,
): Promise<{ json: Record<string, Record<string, number>>; rows: ChoiceRow[] }> {
  const args = [model, "--limit", String(n), "--json", "--items", `${dir}/items.jsonl`];
  const r = await capture(evalMain, [
    ...args,
    ...(tasks === "" ? [] : ["--tasks", tasks, "--data-dir", SHARED]),
    ...(taskFile === "" ? [] : ["--task-file", taskFile]),
  ]);
  assertEquals(r.code, 0, r.err);
  const rows = (await Deno.readTextFile(`${dir}/items.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l) as ChoiceRow
  );
  return { json: JSON.parse(r.out).tasks, rows };
}

Deno.test({
  name:
    "lm-evaluation-harness's per-item log-likelihoods, acc/acc_norm and rolling perplexity equal deno task eval's",
  ignore: PYTHON === undefined,
  fn: async () => {
    await withTempDir("step-lmeval-", async (dir) => {
      const { model, pairs } = await prepare(dir);
      const started = performance.now();
      const theirs = await client({
        folder: model,
        include: `${dir}/tasks`,
        runs: [
          { tasks: ["piqa_local", "arc_easy_local", "arc_newline"], limit: LIMIT },
          { tasks: ["wikitext_local"], limit: WIKI_DOCS },
        ],
        pairs,
      }, `${dir}/hf-datasets`);
      const pySeconds = (performance.now() - started) / 1000;
      assertEquals(theirs.versions.max_length, SHAPE.maxSeqLen);
      const oursStarted = performance.now();
      const a = await ours(dir, model, `${dir}/arc_newline.yaml`, "piqa,arc_easy", LIMIT);
      assertEquals(pairs.length, WIKI_DOCS);
      const b = await ours(dir, model, `${dir}/long.yaml`, "wikitext", WIKI_DOCS);
      const oursSeconds = (performance.now() - oursStarted) / 1000;
      const worst: Record<string, number> = {};
      const note = (k: string, d: number) => (worst[k] = Math.max(worst[k] ?? 0, d));

      // Multiple choice: every option's log-likelihood, and acc / acc_norm item by item.
      for (
        const [mine, their] of [
          ["piqa", "piqa_local"],
          ["arc_easy", "arc_easy_local"],
          ["arc_newline", "arc_newline"],
        ] as const
      ) {
        const rows = a.rows.filter((r) => r.task === mine);
        const items = theirs.tasks[their]!.items;
        assertEquals(rows.length, LIMIT);
        assertEquals(items.length, LIMIT);
        let margin = Infinity;
        for (let i = 0; i < LIMIT; i++) {
          const [m, t] = [rows[i]!, items[i]!];
          assertEquals(m.logprobs.length, t.logprobs.length, `${mine} item ${i}`);
          m.logprobs.forEach((l, j) => {
            const d = Math.abs(l - t.logprobs[j]!);
            note(`${mine} per-option loglik`, d);
            note(`${mine} per-option loglik / tolerance`, d / tolerance(l));
            assert(
              d <= tolerance(l),
              `${mine} item ${i} option ${j}: ours ${l}, lm_eval ${t.logprobs[j]}`,
            );
          });
          const sorted = [...m.logprobs].sort((x, y) => y - x);
          margin = Math.min(margin, sorted[0]! - sorted[1]!);
        }
        // A margin well above the tolerance: the argmax cannot flip within it.
        assert(margin > 10 * TOL, `${mine}: two options within ${margin} nats`);
        for (const metric of ["acc", "acc_norm"]) {
          assertEquals(
            a.json[mine]![metric],
            theirs.tasks[their]!.metrics[metric],
            `${mine} ${metric}`,
          );
        }
      }

      // Rolling perplexity: each document's log-likelihood, then word perplexity pooled.
      const docs = b.rows.filter((r) => r.task === "wikitext");
      const pages = theirs.tasks.wikitext_local!.items;
      assertEquals(docs.length, WIKI_DOCS);
      assertEquals(pages.length, WIKI_DOCS);
      for (let i = 0; i < WIKI_DOCS; i++) {
        const rel = Math.abs(docs[i]!.logprob - pages[i]!.logprob) / Math.abs(pages[i]!.logprob);
        note("wikitext per-document loglik (relative)", rel);
        assert(rel <= TOL, `document ${i}: ours ${docs[i]!.logprob}, lm_eval ${pages[i]!.logprob}`);
        assertEquals([docs[i]!.words, docs[i]!.bytes], [pages[i]!.words, pages[i]!.bytes]);
      }
      for (const metric of ["word_perplexity", "byte_perplexity", "bits_per_byte"]) {
        const [m, t] = [b.json.wikitext![metric]!, theirs.tasks.wikitext_local!.metrics[metric]!];
        const rel = Math.abs(m - t) / t;
        note(`wikitext ${metric} (relative)`, rel);
        assert(rel <= TOL, `${metric}: ours ${m}, lm_eval ${t}`);
      }

      // Long continuations: equal up to the window; beyond it the harness refuses, we score the
      // last window's tokens (documented in docs/evaluation.md).
      const long = b.rows.filter((r) => r.task === "long");
      for (const i of [0, 2]) {
        const d = Math.abs(long[i]!.logprob - theirs.pairs[i]!.logprob!);
        note("long pairs loglik", d);
        assert(
          d <= tolerance(long[i]!.logprob),
          `pair ${i}: ours ${long[i]!.logprob}, lm_eval ${theirs.pairs[i]!.logprob}`,
        );
        assertEquals(long[i]!.greedy, theirs.pairs[i]!.greedy);
      }
      assert(theirs.pairs[1]!.error?.startsWith("AssertionError"), JSON.stringify(theirs.pairs[1]));
      assertEquals(long[1]!.tokens, SHAPE.maxSeqLen);
      console.log(
        `lm_eval ${JSON.stringify(theirs.versions)} in ${pySeconds.toFixed(1)} s, ours in ${
          oursSeconds.toFixed(1)
        } s; lm_eval's phases ${JSON.stringify(theirs.seconds)}; largest differences: ${
          JSON.stringify(worst)
        }`,
      );
    });
  },
});
