/**
 * A JSON Schema read off an io-ts codec, so that a program in another language can check a
 * record against the codec TypeScript decodes it with (the torch trainer checks every command
 * of `torch_protocol.ts` this way). It covers the combinators the protocol is written in:
 * objects (`type`, `partial`, their intersections, {@link closed}), arrays, unions, literals,
 * `keyof`, number, string, boolean, null, and the integer leaves {@link Integer} and `Count`.
 * A codec outside that set is a programmer's error, thrown when the schema is first built.
 *
 * @module
 */
import * as t from "io-ts";
import { Count, isMapping } from "../base/mod.ts";

/** The subset of JSON Schema (draft 2020-12) a codec becomes. */
export type JsonSchema =
  | { readonly type: "number" | "string" | "boolean" | "null" }
  | { readonly type: "integer"; readonly minimum?: number }
  | { readonly const: string | number | boolean }
  | { readonly enum: readonly string[] }
  | { readonly type: "array"; readonly items: JsonSchema }
  | { readonly anyOf: readonly JsonSchema[] }
  | ObjectSchema;

/** An object's fields; `additionalProperties: false` when the codec refuses others. */
export interface ObjectSchema {
  readonly type: "object";
  readonly properties: Readonly<Record<string, JsonSchema>>;
  readonly required: readonly string[];
  readonly additionalProperties?: false;
}

/** An integer of either sign, unbranded (a token target of -1 is "not scored"). */
export const Integer: t.Type<number, number, unknown> = new t.Type<number, number, unknown>(
  "Integer",
  (u): u is number => typeof u === "number" && Number.isInteger(u),
  (u, c) => typeof u === "number" && Number.isInteger(u) ? t.success(u) : t.failure(u, c),
  t.identity,
);

/** Leaves whose constraint io-ts cannot show (their predicate is a function). */
const LEAVES: ReadonlyMap<t.Mixed, JsonSchema> = new Map<t.Mixed, JsonSchema>([
  [Count, { type: "integer", minimum: 0 }],
  [Integer, { type: "integer" }],
]);

/** The io-ts classes this module reads (the `_tag` every built-in combinator carries). */
type Tagged =
  | t.InterfaceType<t.Props>
  | t.PartialType<t.Props>
  | t.IntersectionType<t.Mixed[]>
  | t.UnionType<t.Mixed[]>
  | t.ExactType<t.Mixed>
  | t.ReadonlyType<t.Mixed>
  | t.ArrayType<t.Mixed>
  | t.ReadonlyArrayType<t.Mixed>
  | t.LiteralType<string | number | boolean>
  | t.KeyofType<Record<string, unknown>>
  | t.NumberType
  | t.StringType
  | t.BooleanType
  | t.NullType;

const TAGS: ReadonlySet<string> = new Set<Tagged["_tag"]>([
  "InterfaceType",
  "PartialType",
  "IntersectionType",
  "UnionType",
  "ExactType",
  "ReadonlyType",
  "ArrayType",
  "ReadonlyArrayType",
  "LiteralType",
  "KeyofType",
  "NumberType",
  "StringType",
  "BooleanType",
  "NullType",
]);

/** `codec` as one of the classes read here; another (a brand, a hand-written type) is refused. */
function tagged(codec: t.Mixed): Tagged {
  const tag = (codec as { readonly _tag?: unknown })._tag;
  if (typeof tag !== "string" || !TAGS.has(tag)) {
    throw new Error(`No JSON Schema for codec "${codec.name}": give it one in codec_schema.ts`);
  }
  return codec as Tagged;
}

/**
 * The JSON Schema of `codec`: what it accepts, field by field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as t from "io-ts";
 * import { closed, jsonSchema } from "./codec_schema.ts";
 * assert.deepEqual(jsonSchema(closed(t.type({ op: t.literal("save"), dir: t.string }))), {
 *   type: "object",
 *   properties: { op: { const: "save" }, dir: { type: "string" } },
 *   required: ["op", "dir"],
 *   additionalProperties: false,
 * });
 * ```
 */
export function jsonSchema(codec: t.Mixed): JsonSchema {
  const leaf = LEAVES.get(codec);
  if (leaf !== undefined) return leaf;
  const c = tagged(codec);
  switch (c._tag) {
    case "NumberType":
      return { type: "number" };
    case "StringType":
      return { type: "string" };
    case "BooleanType":
      return { type: "boolean" };
    case "NullType":
      return { type: "null" };
    case "LiteralType":
      return { const: c.value };
    case "KeyofType":
      return { enum: Object.keys(c.keys) };
    case "ArrayType":
    case "ReadonlyArrayType":
      return { type: "array", items: jsonSchema(c.type) };
    case "UnionType":
      return { anyOf: c.types.map(jsonSchema) };
    case "ReadonlyType":
      return jsonSchema(c.type);
    case "ExactType":
      return { ...objectSchema(c.type), additionalProperties: false };
    case "InterfaceType":
    case "PartialType":
    case "IntersectionType":
      return objectSchema(c);
  }
}

/** The fields of an object codec (an intersection's members merged). */
function objectSchema(codec: t.Mixed): ObjectSchema {
  const c = tagged(codec);
  switch (c._tag) {
    case "InterfaceType":
    case "PartialType":
      return {
        type: "object",
        properties: Object.fromEntries(
          Object.entries(c.props).map(([k, v]) => [k, jsonSchema(v)]),
        ),
        required: c._tag === "InterfaceType" ? Object.keys(c.props) : [],
      };
    case "IntersectionType": {
      const parts = c.types.map(objectSchema);
      return {
        type: "object",
        properties: Object.assign({}, ...parts.map((p) => p.properties)),
        required: parts.flatMap((p) => p.required),
      };
    }
    case "ReadonlyType":
      return objectSchema(c.type);
    default:
      throw new Error(`Codec "${codec.name}" is not an object of fields`);
  }
}

/**
 * `codec`, refusing fields it does not know (io-ts's `exact` strips them): a record with a field
 * the reader does not know was written for another version of the protocol. Encoding leaves
 * unknown fields out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import * as t from "io-ts";
 * import { closed } from "./codec_schema.ts";
 * const Save = closed(t.type({ dir: t.string }));
 * assert(E.isRight(Save.decode({ dir: "/tmp" })));
 * assert(E.isLeft(Save.decode({ dir: "/tmp", dri: "/tmp" })));
 * assert.deepEqual(Save.encode({ dir: "/a", extra: 1 } as { dir: string }), { dir: "/a" });
 * ```
 */
export function closed<C extends t.Mixed>(
  codec: C,
): t.ExactType<C, t.TypeOf<C>, t.OutputOf<C>, unknown> {
  const known = Object.keys(objectSchema(codec).properties);
  const has = (k: string) => known.includes(k);
  const unknownField = (u: unknown) =>
    isMapping(u) ? Object.keys(u).find((k) => !has(k)) : undefined;
  return new t.ExactType<C, t.TypeOf<C>, t.OutputOf<C>, unknown>(
    `Closed<${codec.name}>`,
    (u): u is t.TypeOf<C> => codec.is(u) && unknownField(u) === undefined,
    (u, c) => {
      const extra = unknownField(u);
      if (extra === undefined) return codec.validate(u, c);
      const v = (u as Readonly<Record<string, unknown>>)[extra];
      return t.failure(
        v,
        t.appendContext(c, extra, t.unknown, v),
        `unknown field "${extra}" (known: ${known.join(", ")})`,
      );
    },
    (a) =>
      codec.encode(
        Object.fromEntries(Object.entries(a as Record<string, unknown>).filter(([k]) => has(k))),
      ),
    codec,
  );
}
