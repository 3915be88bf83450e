/**
 * Branded numeric codecs: once a value is decoded as `PositiveInt`, code past
 * the decoder never checks it again.
 *
 * @module
 */
import * as t from "io-ts";
import type * as ext from "./external_types.ts";

/** The brand that marks a number as checked to be an integer ≥ 1; it exists only in types. */
export interface PositiveIntBrand {
  /** Makes the brand unique: no other type has this key. */
  readonly PositiveInt: unique symbol;
}
/** An integer ≥ 1. */
export type PositiveInt = ext.Branded<number, PositiveIntBrand>;
/** Codec of an integer ≥ 1. */
export const PositiveInt: ext.BrandC<ext.NumberC, PositiveIntBrand> = t.brand(
  t.number,
  (n): n is PositiveInt => Number.isInteger(n) && n >= 1,
  "PositiveInt",
);

/** The brand that marks a number as checked to be an integer ≥ 0; it exists only in types. */
export interface NonNegativeIntBrand {
  /** Makes the brand unique: no other type has this key. */
  readonly NonNegativeInt: unique symbol;
}
/** An integer ≥ 0. */
export type NonNegativeInt = ext.Branded<number, NonNegativeIntBrand>;
/** Codec of an integer ≥ 0. */
export const NonNegativeInt: ext.BrandC<ext.NumberC, NonNegativeIntBrand> = t.brand(
  t.number,
  (n): n is NonNegativeInt => Number.isInteger(n) && n >= 0,
  "NonNegativeInt",
);

/** The brand that marks a number as checked to be a finite number > 0; it exists only in types. */
export interface PositiveNumberBrand {
  /** Makes the brand unique: no other type has this key. */
  readonly PositiveNumber: unique symbol;
}
/** A finite number > 0. */
export type PositiveNumber = ext.Branded<number, PositiveNumberBrand>;
/** Codec of a finite number > 0. */
export const PositiveNumber: ext.BrandC<ext.NumberC, PositiveNumberBrand> = t.brand(
  t.number,
  (n): n is PositiveNumber => Number.isFinite(n) && n > 0,
  "PositiveNumber",
);

/** The brand that marks a number as checked to be a number in [0, 1]; it exists only in types. */
export interface FractionBrand {
  /** Makes the brand unique: no other type has this key. */
  readonly Fraction: unique symbol;
}
/** A number in [0, 1]. */
export type Fraction = ext.Branded<number, FractionBrand>;
/** Codec of a number in [0, 1]. */
export const Fraction: ext.BrandC<ext.NumberC, FractionBrand> = t.brand(
  t.number,
  (n): n is Fraction => Number.isFinite(n) && n >= 0 && n <= 1,
  "Fraction",
);
