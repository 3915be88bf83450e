import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { Count, oneOf, reportErrors } from "../base/mod.ts";
import { closed, Integer, jsonSchema } from "./codec_schema.ts";

Deno.test("jsonSchema() reads every combinator the protocol is written in", () => {
  const codec = t.readonly(t.intersection([
    t.type({
      n: t.number,
      s: t.string,
      b: t.boolean,
      z: t.null,
      tag: t.literal("x"),
      pick: t.keyof({ a: null, b: null }),
      counts: t.readonlyArray(Count),
      offsets: t.array(Integer),
      either: t.union([t.string, t.number]),
    }),
    t.partial({ maybe: Count }),
  ]));
  assertEquals(jsonSchema(codec), {
    type: "object",
    properties: {
      n: { type: "number" },
      s: { type: "string" },
      b: { type: "boolean" },
      z: { type: "null" },
      tag: { const: "x" },
      pick: { enum: ["a", "b"] },
      counts: { type: "array", items: { type: "integer", minimum: 0 } },
      offsets: { type: "array", items: { type: "integer" } },
      either: { anyOf: [{ type: "string" }, { type: "number" }] },
      maybe: { type: "integer", minimum: 0 },
    },
    required: ["n", "s", "b", "z", "tag", "pick", "counts", "offsets", "either"],
  });
  assertEquals(jsonSchema(closed(t.partial({ a: t.string }))), {
    type: "object",
    properties: { a: { type: "string" } },
    required: [],
    additionalProperties: false,
  });
});

function thrown(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  return "nothing thrown";
}

interface OddBrand {
  readonly Odd: unique symbol;
}

Deno.test("jsonSchema() refuses a codec whose constraint it cannot see, naming it", () => {
  const mode = t.type({ mode: oneOf("mode", ["a", "b"]) });
  assertStringIncludes(thrown(() => jsonSchema(mode)), 'No JSON Schema for codec "mode"');
  const odd = t.brand(t.number, (n): n is t.Branded<number, OddBrand> => n % 2 === 1, "Odd");
  assertStringIncludes(thrown(() => jsonSchema(odd)), 'No JSON Schema for codec "Odd"');
});

Deno.test("closed() refuses an unknown field by its path and leaves it out when encoding", () => {
  const Outer = t.type({
    inner: closed(t.intersection([t.type({ a: t.number }), t.partial({ b: t.string })])),
  });
  assert(E.isRight(Outer.decode({ inner: { a: 1, b: "x" } })));
  const d = Outer.decode({ inner: { a: 1, c: true } });
  assert(E.isLeft(d));
  assertEquals(reportErrors(d.left), ['inner.c: unknown field "c" (known: a, b) (got true)']);
  const inner = Outer.props.inner;
  assert(!inner.is({ a: 1, c: true }) && inner.is({ a: 1 }));
  assertEquals(inner.encode({ a: 1, c: true } as { a: number }), { a: 1 });
  const missing = inner.decode({});
  assert(E.isLeft(missing));
  assertStringIncludes(reportErrors(missing.left).join(), "a: expected a number (missing)");
});
