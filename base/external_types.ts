/**
 * The io-ts and fp-ts types that STEP's exported signatures name, gathered so the public API
 * names them as `ext.Type`, `ext.Either`, `ext.TaskEither`, …: the `ext.` says the type is a
 * package's, documented there. Values (`t.string`, `E.right`) are imported from the packages
 * themselves.
 *
 * Marked internal because its contents are documented by their packages: `deno doc --lint`
 * (Deno 2.9) would otherwise call every such type private, and re-exporting the types plainly
 * does not help, since the packages' doc comments hold only tags (`@since`), which the lint
 * counts as missing. References that pass through this module are not checked; nothing else
 * is exempt.
 *
 * @module
 * @internal
 */
export type { Either } from "fp-ts/lib/Either.js";
export type { TaskEither } from "fp-ts/lib/TaskEither.js";
export type { ReaderTaskEither } from "fp-ts/lib/ReaderTaskEither.js";
export type {
  ArrayC,
  BooleanC,
  BrandC,
  Branded,
  Context,
  Errors,
  ExactC,
  IntersectionC,
  KeyofC,
  Mixed,
  NumberC,
  OutputOf,
  OutputOfPartialProps,
  OutputOfProps,
  PartialC,
  Props,
  ReadonlyC,
  StringC,
  Type,
  TypeC,
  TypeOf,
  TypeOfPartialProps,
  TypeOfProps,
  UnionC,
  Validation,
  ValidationError,
} from "io-ts";
