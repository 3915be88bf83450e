import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import fc from "fast-check";
import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { decodeWith, oneOf } from "./codec.ts";
import { field, OFF_BY_DEFAULT, optional, required, section, withDefaults } from "./section.ts";
import { Fraction, PositiveInt } from "./brands.ts";

const Inner = section("outer.inner", {
  depth: field(PositiveInt, 3),
  mode: field(oneOf("mode", ["fast", "slow"]), "fast"),
});

const Outer = section("outer", {
  name: required(t.string),
  steps: field(PositiveInt, 200),
  ratio: field(Fraction, 0.25),
  fused: OFF_BY_DEFAULT,
  chunk: optional(PositiveInt),
  inner: field(Inner, {}),
});

function decoded(doc: unknown): t.TypeOf<typeof Outer> {
  const r = decodeWith(Outer, doc);
  assert(E.isRight(r), JSON.stringify(r));
  return r.right;
}

Deno.test("section() applies every default, nested ones too, in declaration order", () => {
  const s = decoded({ inner: { mode: "slow" }, name: "a" });
  assertEquals(Object.keys(s), ["name", "steps", "ratio", "fused", "inner"]);
  assertEquals(
    s,
    {
      name: "a",
      steps: 200,
      ratio: 0.25,
      fused: false,
      inner: { depth: 3, mode: "slow" },
    } as unknown as typeof s,
  );
  assertEquals(decoded({ name: "b", chunk: 64, fused: true }).chunk, 64);
});

Deno.test("section() names the path of every bad value, and of an unknown field", () => {
  assertEquals(
    decodeWith(Outer, { name: "a", steps: 0, inner: { depth: 1.5 } }),
    E.left([
      "steps: expected a positive integer (got 0)",
      "inner.depth: expected a positive integer (got 1.5)",
    ]),
  );
  assertEquals(
    decodeWith(Outer, { name: "a", inner: { mdoe: "slow" } }),
    E.left(['inner.mdoe: unknown field "mdoe" (known: depth, mode) (got "slow")']),
  );
  // A key that names an Object property is still a field the section does not know.
  assertEquals(
    decodeWith(Outer, { name: "a", toString: 1 }),
    E.left([
      'toString: unknown field "toString" (known: name, steps, ratio, fused, chunk, inner) (got 1)',
    ]),
  );
  assertEquals(
    decodeWith(Outer, { steps: 5 }),
    E.left(["name: expected a string (missing)"]),
  );
  assertEquals(
    decodeWith(Outer, [1]),
    E.left([
      "(root): expected a mapping with fields name, steps, ratio, fused, chunk, inner (got [1])",
    ]),
  );
});

Deno.test("section() refuses, where it is declared, a default its own codec refuses", () => {
  assertThrows(() => section("bad", { steps: field(PositiveInt, 0) }));
});

Deno.test("section() encodes in declaration order, without unset fields, and decodes it back", () => {
  const s = decoded({ inner: {}, chunk: 8, name: "a" });
  const doc = Outer.encode(s);
  assertEquals(Object.keys(doc), ["name", "steps", "ratio", "fused", "chunk", "inner"]);
  assertEquals(decoded(doc), s);
  assert(Outer.is(s));
  assert(!Outer.is({ name: "a" }), "a document missing defaulted fields is not settings");
});

Deno.test("section(): any subset of the fields decodes to the given values and the defaults", () => {
  const doc = fc.record({
    name: fc.string(),
    steps: fc.integer({ min: 1, max: 1e6 }),
    ratio: fc.double({ min: 0, max: 1, noNaN: true }),
    fused: fc.boolean(),
    chunk: fc.integer({ min: 1, max: 1e6 }),
    inner: fc.record({ depth: fc.integer({ min: 1, max: 99 }) }, { requiredKeys: [] }),
  }, { requiredKeys: ["name"] });
  fc.assert(fc.property(doc, (d) => {
    const s = decoded(d);
    const given = d as Record<string, unknown>;
    const fallback: Record<string, unknown> = { steps: 200, ratio: 0.25, fused: false };
    for (const k of ["steps", "ratio", "fused"]) {
      assertEquals((s as Record<string, unknown>)[k], given[k] ?? fallback[k]);
    }
    assertEquals(s.chunk, given.chunk as typeof s.chunk);
    assertEquals(s.inner.depth as number, d.inner?.depth ?? 3);
    assertEquals(s.inner.mode, "fast");
    assertEquals(decoded(Outer.encode(s)), s);
  }));
});

Deno.test("withDefaults() fills what a decoded value leaves out and copies nothing else", () => {
  const node = { op: "inner", id: "n1", depth: 7 as PositiveInt };
  assertEquals(withDefaults(Inner, node), { depth: 7, mode: "fast" } as never);
  assertEquals(withDefaults(Inner, undefined), { depth: 3, mode: "fast" } as never);
});
