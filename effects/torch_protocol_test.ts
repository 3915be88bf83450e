import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import {
  decodeReply,
  ReadyReplyCodec,
  ResetReplyCodec,
  StepReplyCodec,
  WireNumber,
} from "./torch_protocol.ts";

const STATE = {
  trainableWeights: 400,
  gradients: 400,
  optimizer: 800,
  frozen: 100,
  adapters: 0,
  total: 1700,
};

Deno.test("decodeReply() reads a step's reply, NaN and infinities sent as strings", () => {
  const line = JSON.stringify({
    ok: true,
    loss: "NaN",
    gradNorm: "Infinity",
    skipped: true,
    state: STATE,
    peak: { processBytes: 5e6 },
  });
  const got = decodeReply(line, StepReplyCodec, '"step"');
  assert(E.isRight(got) && got.right.kind === "reply");
  const r = got.right.reply;
  assert(Number.isNaN(r.loss));
  assertEquals([r.gradNorm, r.skipped, r.state, r.peak], [Infinity, true, STATE, {
    processBytes: 5e6,
  }]);
});

Deno.test("decodeReply() fails a malformed reply as KernelFailed naming the command and field", () => {
  const { gradients: _, ...partial } = STATE;
  const line = JSON.stringify({
    ok: true,
    loss: 2,
    gradNorm: 1,
    skipped: false,
    state: partial,
    peak: {},
  });
  const got = decodeReply(line, StepReplyCodec, '"step"');
  assert(E.isLeft(got));
  assertEquals(got.left._tag, "KernelFailed");
  assertStringIncludes(got.left.message, 'malformed reply to "step": state.gradients: ');
  const merged = decodeReply(
    '{"ok": true, "merged": 1.5, "prunedFraction": 0.9}',
    ResetReplyCodec,
    '"reset"',
  );
  assert(E.isLeft(merged));
  assertStringIncludes(merged.left.message, "merged: expected a non-negative integer (got 1.5)");
  const unreadable = decodeReply("{ok", ReadyReplyCodec, "start-up");
  assert(E.isLeft(unreadable));
  assertStringIncludes(unreadable.left.message, "unreadable reply: {ok");
});

Deno.test("decodeReply() tells a failure from a reply, whatever the command", () => {
  const line = '{"ok": false, "error": "CommandRefused: hyper.clip", "trace": "..."}';
  assertEquals(
    decodeReply(line, StepReplyCodec, '"step"'),
    E.right({
      kind: "failed" as const,
      error: "CommandRefused: hyper.clip",
    }),
  );
});

Deno.test("WireNumber writes NaN and infinities as the strings it reads", () => {
  for (const n of [NaN, Infinity, -Infinity, 0, -2.5]) {
    const back = WireNumber.decode(JSON.parse(JSON.stringify(WireNumber.encode(n))));
    assert(E.isRight(back) && Object.is(back.right, n), String(n));
  }
  assert(E.isLeft(WireNumber.decode("1.5")));
});
