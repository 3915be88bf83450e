import * as tf from "@tensorflow/tfjs-core";
import { assert, assertEquals } from "../tests/assert.ts";
import { backendTest } from "./_test_util.ts";
import { forwardLogits, type Model } from "./model.ts";
import { disposeParams, initParams } from "./params.ts";
import { scoreRequests, type ScoringRequest } from "./scoring.ts";

const SHAPE = {
  hidden: 16,
  intermediate: 32,
  heads: 4,
  kvHeads: 2,
  layers: 2,
  vocab: 23,
  tiedEmbeddings: false,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxSeqLen: 24,
};

/** Weights large enough that the next-token distributions are far from uniform. */
function sharpModel(seed: number): Model {
  const base = initParams(SHAPE, SHAPE.layers, seed);
  const params = new Map<string, tf.Tensor>();
  for (const [name, t] of base) {
    params.set(name, name.endsWith("norm.weight") ? t.clone() : tf.mul(t, 25));
  }
  disposeParams(base);
  return { shape: SHAPE, params, loraScale: 1 };
}

/**
 * The independent computation: each scored position's distribution from its own forward pass
 * over the prefix alone (batch 1, no padding), normalised in float64.
 */
async function tokenByToken(model: Model, r: ScoringRequest) {
  let logprob = 0;
  let greedy = true;
  let tokens = 0;
  for (let i = 0; i < r.tokens.length; i++) {
    const target = r.targets[i]!;
    if (target < 0) continue;
    const logits = forwardLogits(model, { tokens: r.tokens.slice(0, i + 1), batch: 1, seq: i + 1 });
    const all = await logits.data();
    logits.dispose();
    const row = Array.from(all.slice(i * SHAPE.vocab, (i + 1) * SHAPE.vocab), Number);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
    logprob += row[target]! - lse;
    if (row.indexOf(max) !== target) greedy = false;
    tokens++;
  }
  return { logprob, greedy, tokens };
}

function request(seed: number, length: number, scored: number): ScoringRequest {
  const tokens = new Int32Array(length);
  const targets = new Int32Array(length).fill(-1);
  let x = seed * 7919 + 1;
  const next = () => (x = (x * 48271) % 2147483647) % SHAPE.vocab;
  for (let i = 0; i < length; i++) tokens[i] = next();
  for (let i = length - scored; i < length; i++) {
    targets[i] = i + 1 < length ? tokens[i + 1]! : next();
  }
  return { tokens, targets };
}

backendTest(
  "scoreRequests equals a token-by-token float64 computation, across padding and batches",
  async () => {
    const model = sharpModel(3);
    const before = tf.memory().numTensors;
    const requests = [
      request(1, 5, 2),
      request(2, 24, 24),
      request(3, 1, 1),
      request(4, 13, 6),
      request(5, 9, 0),
    ];
    // A greedy request: targets are the model's own argmax, so `greedy` must be true.
    const probe = request(6, 8, 0);
    const logits = forwardLogits(model, { tokens: probe.tokens, batch: 1, seq: 8 });
    const argmax = await tf.tidy(() => tf.argMax(logits, 1)).data();
    logits.dispose();
    requests.push({ tokens: probe.tokens, targets: Int32Array.from(argmax) });
    const afterSetup = tf.memory().numTensors;
    for (const batch of [1, 3, 8]) {
      const got = await scoreRequests(model, requests, { batch });
      for (let i = 0; i < requests.length; i++) {
        const want = await tokenByToken(model, requests[i]!);
        assertEquals(got[i]!.tokens, want.tokens, `request ${i}`);
        assert(
          Math.abs(got[i]!.logprob - want.logprob) <= 1e-4 * Math.max(1, want.tokens),
          `request ${i} batch ${batch}: ${got[i]!.logprob} vs ${want.logprob}`,
        );
        assertEquals(got[i]!.greedy, want.greedy, `request ${i} batch ${batch} greedy`);
      }
      assert(got[5]!.greedy && got[5]!.tokens === 8, "the argmax request is greedy");
      assert(got[1]!.logprob < -5, "sharp weights give a non-trivial log-likelihood");
    }
    assertEquals(tf.memory().numTensors, afterSetup, "scoring leaks no tensor");
    disposeParams(model.params);
    assert(tf.memory().numTensors <= before, "weights freed");
  },
);

backendTest("scoreRequests refuses malformed requests by index", async () => {
  const model = sharpModel(4);
  try {
    for (
      const [bad, why] of [
        [{ tokens: Int32Array.of(1, 2), targets: Int32Array.of(1) }, "Request 1: 2 tokens and 1"],
        [
          { tokens: new Int32Array(25), targets: new Int32Array(25) },
          "exceed the model's maxSeqLen",
        ],
      ] as const
    ) {
      let message = "";
      try {
        await scoreRequests(model, [request(1, 3, 1), bad]);
      } catch (e) {
        message = String(e);
      }
      assert(message.includes(why), message);
    }
  } finally {
    disposeParams(model.params);
  }
});
