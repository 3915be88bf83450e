/**
 * io-ts helpers shared by every codec: objects that reject unknown fields, and
 * a reporter that turns decode errors into `path: message` lines.
 *
 * A leaf module (io-ts and the byte units beside it), so `solvers/` may use it too.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { parseBytes } from "./units.ts";

/**
 * An object codec with required and optional fields that rejects any field it
 * does not know, so a typo in a config is an error instead of a silent default.
 */
export function strict<R extends t.Props, O extends t.Props>(
  name: string,
  required: R,
  optional: O,
): t.Type<
  t.TypeOfProps<R> & t.TypeOfPartialProps<O>,
  t.OutputOfProps<R> & t.OutputOfPartialProps<O>,
  unknown
> {
  const inner = t.intersection([t.type(required), t.partial(optional)]);
  const known = new Set([...Object.keys(required), ...Object.keys(optional)]);
  return new t.Type(
    name,
    (u): u is t.TypeOfProps<R> & t.TypeOfPartialProps<O> => inner.is(u),
    (u, c) => {
      if (typeof u !== "object" || u === null || Array.isArray(u)) {
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
      return E.map(dropUndefined)(inner.validate(u, c)) as t.Validation<
        t.TypeOfProps<R> & t.TypeOfPartialProps<O>
      >;
    },
    (a) => dropUndefined(inner.encode(a)) as t.OutputOfProps<R> & t.OutputOfPartialProps<O>,
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
): t.Type<L[number], L[number], unknown> {
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

function pathWithIndices(context: t.Context): string {
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
export function reportErrors(errors: t.Errors): string[] {
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
export function decodeWith<A, O>(codec: t.Type<A, O, unknown>, u: unknown): E.Either<string[], A> {
  return E.mapLeft(reportErrors)(codec.decode(u));
}

/**
 * A non-negative integer, unbranded: for records the program itself writes and reads back
 * (progress, counters), where arithmetic on the value must stay a plain number.
 */
export const Count: t.Type<number, number, unknown> = new t.Type<number, number, unknown>(
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
export const FileName: t.Type<string, string, unknown> = new t.Type<string, string, unknown>(
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
export const ByteSize: t.Type<number, number, unknown> = new t.Type<number, number, unknown>(
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

// ---- settings sections: each field written once, with its codec, its default and its doc ----

/** A field the document must give. */
export interface RequiredField<C extends t.Mixed> {
  readonly codec: C;
  readonly absent: "refused";
}

/** A field the document may leave out, and then stays unset. */
export interface OptionalField<C extends t.Mixed> {
  readonly codec: C;
  readonly absent: "unset";
}

/** A field the document may leave out, and then takes `fallback` (decoded like a given value). */
export interface DefaultField<C extends t.Mixed> {
  readonly codec: C;
  readonly absent: "default";
  readonly fallback: t.OutputOf<C>;
}

/** One field of a {@link section}. */
export type SectionField = RequiredField<t.Mixed> | OptionalField<t.Mixed> | DefaultField<t.Mixed>;

/** The fields of a {@link section}, in the order they are written back. */
export type SectionFields = Readonly<Record<string, SectionField>>;

/** A field the document must give. */
export function required<C extends t.Mixed>(codec: C): RequiredField<C> {
  return { codec, absent: "refused" };
}

/** A field the document may leave out (no default: the setting stays unset). */
export function optional<C extends t.Mixed>(codec: C): OptionalField<C> {
  return { codec, absent: "unset" };
}

/**
 * A field with its default, written as a document would write it: `{}` for a nested section
 * takes that section's own defaults.
 */
export function field<C extends t.Mixed>(codec: C, fallback: t.OutputOf<C>): DefaultField<C> {
  return { codec, absent: "default", fallback };
}

/** A true/false field that is off unless the document turns it on. */
export const OFF_BY_DEFAULT: DefaultField<t.BooleanC> = {
  codec: t.boolean,
  absent: "default",
  fallback: false,
};

/** A true/false field that is on unless the document turns it off. */
export const ON_BY_DEFAULT: DefaultField<t.BooleanC> = {
  codec: t.boolean,
  absent: "default",
  fallback: true,
};

type OptionalKeys<F extends SectionFields> = {
  [K in keyof F]: F[K] extends OptionalField<t.Mixed> ? K : never;
}[keyof F];
type RequiredKeys<F extends SectionFields> = {
  [K in keyof F]: F[K] extends RequiredField<t.Mixed> ? K : never;
}[keyof F];

/** A section's settings as the program reads them: every default applied. */
export type SettingsOf<F extends SectionFields> =
  & { readonly [K in Exclude<keyof F, OptionalKeys<F>>]: t.TypeOf<F[K]["codec"]> }
  & { readonly [K in OptionalKeys<F>]?: t.TypeOf<F[K]["codec"]> };

/** A section as a document writes it: only the required fields must be there. */
export type DocumentOf<F extends SectionFields> =
  & { readonly [K in RequiredKeys<F>]: t.OutputOf<F[K]["codec"]> }
  & { readonly [K in Exclude<keyof F, RequiredKeys<F>>]?: t.OutputOf<F[K]["codec"]> };

/** Settings some of which are left out: what {@link withDefaults} completes. */
export type GivenOf<F extends SectionFields> =
  & { readonly [K in RequiredKeys<F>]: t.TypeOf<F[K]["codec"]> }
  & { readonly [K in Exclude<keyof F, RequiredKeys<F>>]?: t.TypeOf<F[K]["codec"]> };

/** The codec of a {@link section}: decoding applies the defaults; its fields stay readable. */
export interface Section<F extends SectionFields>
  extends t.Type<SettingsOf<F>, DocumentOf<F>, unknown> {
  readonly fields: F;
  /** Each defaulted field's default, decoded. */
  readonly defaults: Readonly<Record<string, unknown>>;
}

/**
 * A settings section: an object codec that refuses fields it does not know (a typo is an error,
 * not a silent default) and decodes to the settings with every default applied, so a field is
 * written once — its name, codec, default and doc comment — and its type is the codec's.
 * Encoding writes the fields in declaration order and leaves unset ones out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import * as t from "io-ts";
 * import { decodeWith, field, optional, section } from "./codec.ts";
 * import { PositiveInt } from "./brands.ts";
 * const Run = section("run", { steps: field(PositiveInt, 200), name: optional(t.string) });
 * assert.deepEqual(Run.decode({ name: "a" }), E.right({ steps: 200, name: "a" }));
 * assert.deepEqual(decodeWith(Run, { steps: 0 }), E.left(["steps: expected a positive integer (got 0)"]));
 * assert(E.isLeft(Run.decode({ step: 5 })));
 * ```
 */
export function section<const F extends SectionFields>(name: string, fields: F): Section<F> {
  const entries = Object.entries(fields);
  const known = entries.map(([k]) => k);
  const defaults: Record<string, unknown> = {};
  for (const [k, f] of entries) {
    if (f.absent !== "default") continue;
    const decoded = f.codec.decode(f.fallback);
    // A default its own codec refuses is a bug in the declaration, found when the module loads.
    if (E.isLeft(decoded)) {
      throw new Error(`Default of ${name}.${k}: ${reportErrors(decoded.left).join("; ")}`);
    }
    defaults[k] = decoded.right;
  }
  const type = new t.Type<SettingsOf<F>, DocumentOf<F>, unknown>(
    name,
    (u): u is SettingsOf<F> =>
      isMapping(u) && entries.every(([k, f]) =>
        u[k] === undefined ? f.absent === "unset" : f.codec.is(u[k])
      ) && Object.keys(u).every((k) => Object.hasOwn(fields, k)),
    (u, c) => {
      if (!isMapping(u)) {
        return t.failure(u, c, `expected a mapping with fields ${known.join(", ")}`);
      }
      const unknown = Object.keys(u).find((k) => !Object.hasOwn(fields, k));
      if (unknown !== undefined) {
        return t.failure(
          u[unknown],
          t.appendContext(c, unknown, t.unknown, u[unknown]),
          `unknown field "${unknown}" (known: ${known.join(", ")})`,
        );
      }
      const errors: t.ValidationError[] = [];
      const given: Record<string, unknown> = {};
      for (const [k, f] of entries) {
        const v = u[k];
        // A missing required field is shown to its codec, which says what it expected.
        if (v === undefined && f.absent !== "refused") continue;
        const r = f.codec.validate(v, t.appendContext(c, k, f.codec, v));
        if (E.isLeft(r)) errors.push(...r.left);
        else given[k] = r.right;
      }
      return errors.length > 0 ? t.failures(errors) : t.success(complete(entries, defaults, given));
    },
    (a) => {
      const out: Record<string, unknown> = {};
      const values = a as Readonly<Record<string, unknown>>;
      for (const [k, f] of entries) {
        if (values[k] !== undefined) out[k] = f.codec.encode(values[k]);
      }
      return out as DocumentOf<F>;
    },
  );
  return Object.assign(type, { fields, defaults });
}

function isMapping(u: unknown): u is Readonly<Record<string, unknown>> {
  return typeof u === "object" && u !== null && !Array.isArray(u);
}

function complete<A>(
  entries: readonly (readonly [string, SectionField])[],
  defaults: Readonly<Record<string, unknown>>,
  given: Readonly<Record<string, unknown>>,
): A {
  const out: Record<string, unknown> = {};
  for (const [k] of entries) {
    const v = given[k] === undefined ? defaults[k] : given[k];
    if (v !== undefined) out[k] = v;
  }
  return out as A;
}

/**
 * The one place defaults are applied: each field of `s` that `given` leaves out takes its
 * default; fields `given` has beyond the section's are not copied.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { field, section, withDefaults } from "./codec.ts";
 * import { Fraction, PositiveInt } from "./brands.ts";
 * const Pet = section("pet", { rank: field(PositiveInt, 128), pruneRatio: field(Fraction, 0.99) });
 * const node = { op: "attachPET", rank: 8 as PositiveInt };
 * assert.deepEqual(withDefaults(Pet, node), { rank: 8, pruneRatio: 0.99 });
 * ```
 */
export function withDefaults<F extends SectionFields>(
  s: Section<F>,
  given: GivenOf<F> | undefined,
): SettingsOf<F> {
  return complete(
    Object.entries(s.fields),
    s.defaults,
    (given ?? {}) as Readonly<Record<string, unknown>>,
  );
}

/** The codecs of a section's fields but `except`, as props of an object codec (a node's). */
export function fieldCodecs<F extends SectionFields, X extends keyof F>(
  s: Section<F>,
  except: readonly X[],
): { readonly [K in Exclude<keyof F, X>]: F[K]["codec"] } {
  const skip = new Set<PropertyKey>(except);
  return Object.fromEntries(
    Object.entries(s.fields).filter(([k]) => !skip.has(k)).map(([k, f]) => [k, f.codec]),
  ) as { readonly [K in Exclude<keyof F, X>]: F[K]["codec"] };
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
export function tagged<C extends Readonly<Record<string, t.Mixed>>>(
  name: string,
  key: string,
  members: C,
): t.Type<t.TypeOf<C[keyof C]>, t.OutputOf<C[keyof C]>, unknown> {
  const tags = Object.keys(members);
  const memberOf = (u: unknown): t.Mixed | undefined => {
    const tag = isMapping(u) ? u[key] : undefined;
    return typeof tag === "string" && Object.hasOwn(members, tag) ? members[tag] : undefined;
  };
  return new t.Type<t.TypeOf<C[keyof C]>, t.OutputOf<C[keyof C]>, unknown>(
    name,
    (u): u is t.TypeOf<C[keyof C]> => memberOf(u)?.is(u) ?? false,
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
