/**
 * Branded numeric codecs: once a value is decoded as `PositiveInt`, code past
 * the decoder never checks it again.
 *
 * @module
 */
import * as t from "io-ts";

interface PositiveIntBrand {
  readonly PositiveInt: unique symbol;
}
/** An integer ≥ 1. */
export type PositiveInt = t.Branded<number, PositiveIntBrand>;
/** Codec of an integer ≥ 1. */
export const PositiveInt: t.BrandC<t.NumberC, PositiveIntBrand> = t.brand(
  t.number,
  (n): n is PositiveInt => Number.isInteger(n) && n >= 1,
  "PositiveInt",
);

interface NonNegativeIntBrand {
  readonly NonNegativeInt: unique symbol;
}
/** An integer ≥ 0. */
export type NonNegativeInt = t.Branded<number, NonNegativeIntBrand>;
/** Codec of an integer ≥ 0. */
export const NonNegativeInt: t.BrandC<t.NumberC, NonNegativeIntBrand> = t.brand(
  t.number,
  (n): n is NonNegativeInt => Number.isInteger(n) && n >= 0,
  "NonNegativeInt",
);

interface PositiveNumberBrand {
  readonly PositiveNumber: unique symbol;
}
/** A finite number > 0. */
export type PositiveNumber = t.Branded<number, PositiveNumberBrand>;
/** Codec of a finite number > 0. */
export const PositiveNumber: t.BrandC<t.NumberC, PositiveNumberBrand> = t.brand(
  t.number,
  (n): n is PositiveNumber => Number.isFinite(n) && n > 0,
  "PositiveNumber",
);

interface FractionBrand {
  readonly Fraction: unique symbol;
}
/** A number in [0, 1]. */
export type Fraction = t.Branded<number, FractionBrand>;
/** Codec of a number in [0, 1]. */
export const Fraction: t.BrandC<t.NumberC, FractionBrand> = t.brand(
  t.number,
  (n): n is Fraction => Number.isFinite(n) && n >= 0 && n <= 1,
  "Fraction",
);
