/**
 * The torch trainer's ReLoRA helpers (`torch_engine/relora.py`, NumPy only) against this
 * side's: the seeded generator's fresh LoRA A (`base/init_values.ts`, `base/prng.ts`) bit for
 * bit, and the moment pruning's masks (`kernels/relora.ts`), ties and rounding of the kept
 * count included. Needs only a Python with NumPy (CI installs python3-numpy), not torch.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "./assert.ts";
import { createRng, loraAValues } from "../base/mod.ts";
import { initBackend, pruneByMagnitude } from "../kernels/mod.ts";

const RELORA = new URL("../torch_engine", import.meta.url).pathname;
const CANDIDATES = ["python3", "/usr/bin/python3"];

async function numpyPython(): Promise<string | undefined> {
  for (const python of CANDIDATES) {
    try {
      const out = await new Deno.Command(python, {
        args: ["-c", "import numpy"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (out.success) return python;
    } catch {
      // Not installed.
    }
  }
  return undefined;
}

const PYTHON = await numpyPython();
if (PYTHON === undefined) {
  console.warn(`relora.py checks skipped: none of ${CANDIDATES.join(", ")} imports numpy`);
}

/** Runs `code` with relora.py importable, `input` as JSON on stdin; returns its JSON output. */
async function python(code: string, input: unknown): Promise<unknown> {
  const child = new Deno.Command(PYTHON!, {
    args: ["-c", `import json, sys; sys.path.insert(0, ${JSON.stringify(RELORA)})\n${code}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const out = await child.output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test({
  name: "relora.py draws the same fresh LoRA A as loraAValues, bit for bit",
  ignore: PYTHON === undefined,
  fn: async () => {
    const cases = [
      { inputs: 24, rank: 5, seed: 4242424242, name: "model.layers.3.mlp.down_proj.lora_A" },
      { inputs: 7, rank: 1, seed: 0, name: "model.layers.0.self_attn.q_proj.lora_A" },
      { inputs: 64, rank: 8, seed: 123456, name: "model.layers.12.self_attn.v_proj.lora_A" },
    ];
    const got = await python(
      `from relora import kaiming_a
cases = json.load(sys.stdin)
# [r, in] in HF layout; ours is [in, r].
print(json.dumps([[float(x) for x in kaiming_a(c["inputs"], c["rank"], c["seed"], c["name"]).T.reshape(-1)] for c in cases]))`,
      cases,
    ) as number[][];
    cases.forEach((c, i) => {
      assertEquals(got[i], [...loraAValues(c.inputs, c.rank, c.seed, c.name)], c.name);
    });
  },
});

Deno.test({
  name:
    "relora.py prunes moments with the masks pruneByMagnitude keeps, ties and rounding included",
  ignore: PYTHON === undefined,
  fn: async () => {
    assert(E.isRight(await initBackend("cpu")));
    const rng = createRng(17);
    // Values from a few levels, so many entries tie at the threshold.
    const tied = Array.from({ length: 60 }, () => Math.round(8 * rng.nextFloat() - 4) / 4);
    const smooth = Array.from({ length: 33 }, () => 2 * rng.nextFloat() - 1);
    const cases = [
      // n·(1 − ratio) = 7.5: JavaScript's Math.round and relora.py both keep 8.
      { key: [0.5, -4, 0.1, 3, -0.2, 2, 0, 1, -1, 0.3], ratio: 0.25 },
      { key: [0.5, -4, 0.1, 3, -0.2, 2, 0, 1, -1, 0.3], ratio: 0.7 },
      { key: [1, -1], ratio: 0.75 },
      { key: tied, ratio: 0.9 },
      { key: tied, ratio: 0.5 },
      { key: smooth, ratio: 0.99 },
      { key: smooth, ratio: 0 },
      { key: smooth, ratio: 1 },
    ];
    const got = await python(
      `import numpy as np
from relora import prune_mask
cases = json.load(sys.stdin)
print(json.dumps([prune_mask(np.array(c["key"], dtype=np.float32), c["ratio"]).tolist() for c in cases]))`,
      cases,
    ) as boolean[][];
    for (const [i, c] of cases.entries()) {
      const key = tf.tensor1d(c.key);
      const ones = tf.onesLike(key);
      const { pruned: [kept], zeros } = await pruneByMagnitude(key, c.ratio, [ones]);
      const want = Array.from(await kept!.data()).map((x) => x === 1);
      tf.dispose([key, ones, kept!]);
      assertEquals(got[i], want, `case ${i} (ratio ${c.ratio})`);
      assertEquals(want.filter((k) => !k).length, zeros);
    }
  },
});
