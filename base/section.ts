/**
 * Settings sections: object codecs whose fields are each written once — name, codec, default
 * and doc comment — and that decode to the settings with every default applied, so a settings
 * type is its codec's type and `withDefaults` is the one place defaults are applied.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import type * as ext from "./external_types.ts";
import { isMapping, reportErrors } from "./codec.ts";

/** A field the document must give. */
export interface RequiredField<C extends ext.Mixed> {
  /** Decodes and encodes the field's value. */
  readonly codec: C;
  /** A document without the field is refused with the codec's own message. */
  readonly absent: "refused";
}

/** A field the document may leave out, and then stays unset. */
export interface OptionalField<C extends ext.Mixed> {
  /** Decodes and encodes the field's value when it is given. */
  readonly codec: C;
  /** A document without the field decodes to settings without it. */
  readonly absent: "unset";
}

/** A field the document may leave out, and then takes `fallback` (decoded like a given value). */
export interface DefaultField<C extends ext.Mixed> {
  /** Decodes and encodes the field's value, the fallback included. */
  readonly codec: C;
  /** A document without the field decodes as if it gave `fallback`. */
  readonly absent: "default";
  /**
   * The default as a document would write it (`"24GB"`, `{}`), decoded by `codec` once, when the
   * section is built.
   */
  readonly fallback: ext.OutputOf<C>;
}

/** One field of a {@link section}. */
export type SectionField =
  | RequiredField<ext.Mixed>
  | OptionalField<ext.Mixed>
  | DefaultField<ext.Mixed>;

/** The fields of a {@link section}, in the order they are written back. */
export type SectionFields = Readonly<Record<string, SectionField>>;

/** A field the document must give. */
export function required<C extends ext.Mixed>(codec: C): RequiredField<C> {
  return { codec, absent: "refused" };
}

/** A field the document may leave out (no default: the setting stays unset). */
export function optional<C extends ext.Mixed>(codec: C): OptionalField<C> {
  return { codec, absent: "unset" };
}

/**
 * A field with its default, written as a document would write it: `{}` for a nested section
 * takes that section's own defaults.
 */
export function field<C extends ext.Mixed>(codec: C, fallback: ext.OutputOf<C>): DefaultField<C> {
  return { codec, absent: "default", fallback };
}

/** A true/false field that is off unless the document turns it on. */
export const OFF_BY_DEFAULT: DefaultField<ext.BooleanC> = {
  codec: t.boolean,
  absent: "default",
  fallback: false,
};

/** A true/false field that is on unless the document turns it off. */
export const ON_BY_DEFAULT: DefaultField<ext.BooleanC> = {
  codec: t.boolean,
  absent: "default",
  fallback: true,
};

/** The names of a section's fields that may stay unset (declared with {@link optional}). */
export type OptionalKeysOf<F extends SectionFields> = {
  [K in keyof F]: F[K] extends OptionalField<ext.Mixed> ? K : never;
}[keyof F];
/** The names of a section's fields a document must give (declared with {@link required}). */
export type RequiredKeysOf<F extends SectionFields> = {
  [K in keyof F]: F[K] extends RequiredField<ext.Mixed> ? K : never;
}[keyof F];

/** A section's settings as the program reads them: every default applied. */
export type SettingsOf<F extends SectionFields> =
  & { readonly [K in Exclude<keyof F, OptionalKeysOf<F>>]: ext.TypeOf<F[K]["codec"]> }
  & { readonly [K in OptionalKeysOf<F>]?: ext.TypeOf<F[K]["codec"]> };

/** A section as a document writes it: only the required fields must be there. */
export type DocumentOf<F extends SectionFields> =
  & { readonly [K in RequiredKeysOf<F>]: ext.OutputOf<F[K]["codec"]> }
  & { readonly [K in Exclude<keyof F, RequiredKeysOf<F>>]?: ext.OutputOf<F[K]["codec"]> };

/** Settings some of which are left out: what {@link withDefaults} completes. */
export type GivenOf<F extends SectionFields> =
  & { readonly [K in RequiredKeysOf<F>]: ext.TypeOf<F[K]["codec"]> }
  & { readonly [K in Exclude<keyof F, RequiredKeysOf<F>>]?: ext.TypeOf<F[K]["codec"]> };

/** The codec of a {@link section}: decoding applies the defaults; its fields stay readable. */
export interface Section<F extends SectionFields>
  extends ext.Type<SettingsOf<F>, DocumentOf<F>, unknown> {
  /**
   * The fields the section was built from, in declaration order: what {@link fieldCodecs} and the
   * defaults read.
   */
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
 * import { decodeWith } from "./codec.ts";
 * import { field, optional, section } from "./section.ts";
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
      const errors: ext.ValidationError[] = [];
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
 * import { field, section, withDefaults } from "./section.ts";
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

/** The codecs of the fields `F` but `X`, as props of an object codec: what {@link fieldCodecs} returns. */
export type FieldCodecs<F extends SectionFields, X extends keyof F> = {
  readonly [K in Exclude<keyof F, X>]: F[K]["codec"];
};

/** The codecs of a section's fields but `except`, as props of an object codec (a node's). */
export function fieldCodecs<F extends SectionFields, X extends keyof F>(
  s: Section<F>,
  except: readonly X[],
): FieldCodecs<F, X> {
  const skip = new Set<PropertyKey>(except);
  return Object.fromEntries(
    Object.entries(s.fields).filter(([k]) => !skip.has(k)).map(([k, f]) => [k, f.codec]),
  ) as FieldCodecs<F, X>;
}
