/**
 * io-ts helpers shared by every codec: objects that reject unknown fields, unions
 * told apart by a tag field, and a reporter that turns decode errors into
 * `path: message` lines.
 *
 * A leaf module (io-ts and the byte units beside it), so `solvers/` may use it too.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import type * as ext from "./external_types.ts";
import { parseBytes } from "./units.ts";

/**
 * The codec {@link strict} builds from required fields `R` and optional fields `O`: it decodes
 * to their values and refuses any other field.
 */
export type StrictC<R extends ext.Props, O extends ext.Props> = ext.Type<
  ext.TypeOfProps<R> & ext.TypeOfPartialProps<O>,
  ext.OutputOfProps<R> & ext.OutputOfPartialProps<O>,
  unknown
>;

/**
 * The codec `t.exact(t.intersection([t.type(R), t.partial(O)]))`: required fields `R`, optional
 * fields `O`, and any other field dropped while decoding (where {@link strict} refuses it).
 */
export type ExactObjectC<R extends ext.Props, O extends ext.Props> = ext.ExactC<
  ext.IntersectionC<[ext.TypeC<R>, ext.PartialC<O>]>
>;

/**
 * The codec `t.readonly(t.intersection([t.type(R), t.partial(O)]))`: a record with required
 * fields `R` and optional fields `O`, read-only once decoded (the shape of the records STEP writes
 * and reads back: metrics, progress, protocol values).
 */
export type ReadonlyObjectC<R extends ext.Props, O extends ext.Props> = ext.ReadonlyC<
  ext.IntersectionC<[ext.TypeC<R>, ext.PartialC<O>]>
>;

/**
 * An object codec with required and optional fields that rejects any field it
 * does not know, so a typo in a config is an error instead of a silent default.
 */
export function strict<R extends ext.Props, O extends ext.Props>(
  name: string,
  required: R,
  optional: O,
): StrictC<R, O> {
  const inner = t.intersection([t.type(required), t.partial(optional)]);
  const known = new Set([...Object.keys(required), ...Object.keys(optional)]);
  return new t.Type(
    name,
    (u): u is ext.TypeOfProps<R> & ext.TypeOfPartialProps<O> => inner.is(u),
    (u, c) => {
      if (!isMapping(u)) {
        return t.failure(u, c, `expected a mapping with fields ${[...known].join(", ")}`);
      }
      {
        const unknown = Object.keys(u).filter((k) => !known.has(k));
        if (unknown.length > 0) {
          const first = unknown[0] ?? "";
          return t.failure(
            (u as Record<string, unknown>)[first],
            t.appendContext(c, first, t.unknown, (u as Record<string, unknown>)[first]),
            `unknown field "${first}" (known: ${[...known].join(", ")})`,
          );
        }
      }
      // Optional fields written as `undefined` would break exactOptionalPropertyTypes downstream.
      return E.map(dropUndefined)(inner.validate(u, c)) as ext.Validation<
        ext.TypeOfProps<R> & ext.TypeOfPartialProps<O>
      >;
    },
    (a) => dropUndefined(inner.encode(a)) as ext.OutputOfProps<R> & ext.OutputOfPartialProps<O>,
  );
}

function dropUndefined<A>(a: A): A {
  if (typeof a !== "object" || a === null || Array.isArray(a)) return a;
  return Object.fromEntries(
    Object.entries(a as Record<string, unknown>).filter(([, v]) => v !== undefined),
  ) as A;
}

/** A string enum codec from a readonly list of literals. */
export function oneOf<const L extends readonly [string, ...string[]]>(
  name: string,
  values: L,
): ext.Type<L[number], L[number], unknown> {
  const set = new Set<string>(values);
  return new t.Type<L[number], L[number], unknown>(
    name,
    (u): u is L[number] => typeof u === "string" && set.has(u),
    (u, c) =>
      typeof u === "string" && set.has(u)
        ? t.success(u as L[number])
        : t.failure(u, c, `expected one of ${values.map((v) => `"${v}"`).join(", ")}`),
    t.identity,
  );
}

function pathWithIndices(context: ext.Context): string {
  const parts: string[] = [];
  for (let i = 1; i < context.length; i++) {
    const entry = context[i];
    const parent = context[i - 1];
    if (entry === undefined || parent === undefined) continue;
    // Intersections and unions add numbered members that are not part of the document's path;
    // only arrays own numeric keys.
    const numeric = /^\d+$/.test(entry.key);
    const isIndex = parent.type instanceof t.ArrayType ||
      parent.type instanceof t.ReadonlyArrayType;
    if (entry.key !== "" && (!numeric || isIndex)) {
      parts.push(numeric ? `[${entry.key}]` : entry.key);
    }
  }
  return parts.join(".").replaceAll(".[", "[");
}

const FRIENDLY: Readonly<Record<string, string>> = {
  PositiveInt: "a positive integer",
  NonNegativeInt: "a non-negative integer",
  PositiveNumber: "a positive number",
  Fraction: "a number between 0 and 1",
  number: "a number",
  string: "a string",
  boolean: "true or false",
};

function describeType(name: string | undefined): string {
  if (name === undefined) return "a value";
  return FRIENDLY[name] ?? name;
}

/** Renders one line per decode error: `field.path: message (got value)`. */
export function reportErrors(errors: ext.Errors): string[] {
  const lines = errors.map((e) => {
    const path = pathWithIndices(e.context) || "(root)";
    const last = e.context[e.context.length - 1];
    const expected = e.message ?? `expected ${describeType(last?.type.name)}`;
    const got = e.value === undefined ? "missing" : `got ${JSON.stringify(e.value)}`;
    return `${path}: ${expected} (${got})`;
  });
  return [...new Set(lines)];
}

/** Decodes or returns the report lines. */
export function decodeWith<A, O>(
  codec: ext.Type<A, O, unknown>,
  u: unknown,
): ext.Either<string[], A> {
  return E.mapLeft(reportErrors)(codec.decode(u));
}

/**
 * A non-negative integer, unbranded: for records the program itself writes and reads back
 * (progress, counters), where arithmetic on the value must stay a plain number.
 */
export const Count: ext.Type<number, number, unknown> = new t.Type<number, number, unknown>(
  "NonNegativeInt",
  (u): u is number => typeof u === "number" && Number.isInteger(u) && u >= 0,
  (u, c) => typeof u === "number" && Number.isInteger(u) && u >= 0 ? t.success(u) : t.failure(u, c),
  t.identity,
);

const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * A plain file name (letters, digits, `.`, `_`, `-`; no separators, not `.` or `..`): a
 * config's `name` becomes a folder under `runs/`, and must not point anywhere else.
 */
export const FileName: ext.Type<string, string, unknown> = new t.Type<string, string, unknown>(
  "FileName",
  (u): u is string => typeof u === "string" && PLAIN_NAME.test(u),
  (u, c) =>
    typeof u === "string" && PLAIN_NAME.test(u) ? t.success(u) : t.failure(
      u,
      c,
      "expected a plain file name (letters, digits, '.', '_', '-'; no '/' and not starting with '.')",
    ),
  t.identity,
);

/**
 * A positive size in bytes, written as a number or as people write sizes ("24GB", "16 GiB");
 * decodes to bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { ByteSize } from "./codec.ts";
 * assert.deepEqual(ByteSize.decode("1.5GB"), E.right(1.5e9));
 * assert(E.isLeft(ByteSize.decode("lots")));
 * ```
 */
export const ByteSize: ext.Type<number, number, unknown> = new t.Type<number, number, unknown>(
  "ByteSize",
  (u): u is number => typeof u === "number" && Number.isFinite(u) && u > 0,
  (u, c) => {
    const bytes = typeof u === "number" ? u : typeof u === "string" ? parseBytes(u) : undefined;
    return bytes !== undefined && Number.isFinite(bytes) && bytes > 0
      ? t.success(bytes)
      : t.failure(
        u,
        c,
        `cannot read ${
          JSON.stringify(u)
        } as a size (write e.g. "24GB", "16GiB" or a number of bytes)`,
      );
  },
  t.identity,
);

/**
 * The codec {@link tagged} builds from its members `C`: it decodes to the union of their values
 * (and encodes their outputs).
 */
export type TaggedC<C extends Readonly<Record<string, ext.Mixed>>> = ext.Type<
  ext.TypeOf<C[keyof C]>,
  ext.OutputOf<C[keyof C]>,
  unknown
>;

/** Whether `u` is a mapping: an object that is neither null nor an array. */
export function isMapping(u: unknown): u is Readonly<Record<string, unknown>> {
  return typeof u === "object" && u !== null && !Array.isArray(u);
}

/**
 * A union of object codecs told apart by the string field `key` (`op` of a stage node, `type` of
 * a metrics record): a value is decoded by its own member only, so its errors name that member's
 * fields instead of every member's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import * as t from "io-ts";
 * import { decodeWith, tagged } from "./codec.ts";
 * const Shape = tagged("shape", "kind", {
 *   square: t.type({ kind: t.literal("square"), side: t.number }),
 *   circle: t.type({ kind: t.literal("circle"), radius: t.number }),
 * });
 * assert(E.isRight(Shape.decode({ kind: "circle", radius: 1 })));
 * assert.deepEqual(decodeWith(Shape, { kind: "circle", side: 1 }), E.left(["radius: expected a number (missing)"]));
 * assert(E.isLeft(Shape.decode({ kind: "toString" })));
 * ```
 */
export function tagged<C extends Readonly<Record<string, ext.Mixed>>>(
  name: string,
  key: string,
  members: C,
): TaggedC<C> {
  const tags = Object.keys(members);
  const memberOf = (u: unknown): ext.Mixed | undefined => {
    const tag = isMapping(u) ? u[key] : undefined;
    return typeof tag === "string" && Object.hasOwn(members, tag) ? members[tag] : undefined;
  };
  return new t.Type<ext.TypeOf<C[keyof C]>, ext.OutputOf<C[keyof C]>, unknown>(
    name,
    (u): u is ext.TypeOf<C[keyof C]> => memberOf(u)?.is(u) ?? false,
    (u, c) => {
      const member = memberOf(u);
      if (member === undefined) {
        const expected = `expected one of ${tags.join(", ")}`;
        if (!isMapping(u)) {
          return t.failure(u, c, `expected a mapping with a "${key}" (${expected})`);
        }
        const tag = u[key];
        return t.failure(
          tag,
          t.appendContext(c, key, t.string, tag),
          `unknown ${key} ${JSON.stringify(tag)}: ${expected}`,
        );
      }
      return member.validate(u, c);
    },
    (a) => memberOf(a)!.encode(a),
  );
}
