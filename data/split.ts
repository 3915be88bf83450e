/**
 * Train/validation splits of tokenised documents, as views: the held-out documents and the rest
 * (each in source order), or the stream's tail. Nothing is copied: each split is a
 * {@link TokenStream} made of runs of the documents' stream, in memory or on disk alike.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import {
  type ConfigInvalid,
  configInvalid,
  deriveSeed,
  type ext,
  permutation,
} from "../base/mod.ts";
import type { TokenizedDocs } from "./token_cache.ts";
import { documentsStream, memoryStream, sliceStream, type TokenStream } from "./token_stream.ts";

/** How to split off validation data by fraction. */
export const SplitBy: ext.KeyofC<{ documents: null; tail: null; auto: null }> = t.keyof({
  documents: null,
  tail: null,
  auto: null,
});
/** See {@link SplitBy}. */
export type SplitBy = ext.TypeOf<typeof SplitBy>;

/** Tokenised documents as a stream: `docEnds[i]` is where document i ends (exclusive). */
export interface DocumentStream {
  /** Every document's tokens, each followed by the end-of-text id. */
  readonly tokens: TokenStream;
  /** End (exclusive) of each document in `tokens`, ascending. */
  readonly docEnds: ArrayLike<number>;
}

/** The result of splitting one tokenised stream. */
export interface Split {
  /** The training tokens. */
  readonly train: TokenStream;
  /** The held-out tokens. */
  readonly validation: TokenStream;
  /** How the split was made: whole documents held out, or the stream's tail. */
  readonly by: "documents" | "tail";
  /**
   * For a document split, indices of the held-out documents in source order; empty for a tail
   * split.
   */
  readonly validationDocIndices: readonly number[];
}

function asDocumentStream(docs: DocumentStream | TokenizedDocs): DocumentStream {
  return docs.tokens instanceof Uint16Array || docs.tokens instanceof Int32Array
    ? { tokens: memoryStream(docs.tokens), docEnds: docs.docEnds }
    : docs as DocumentStream;
}

/**
 * Splits tokenised documents into train and validation by a held-out fraction.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitByFraction } from "./split.ts";
 * const docs = { tokens: new Uint16Array([1, 0, 2, 0, 3, 0, 4, 0]), docEnds: new Uint32Array([2, 4, 6, 8]) };
 * const s = splitByFraction(docs, { fraction: 0.5, by: "documents" }, 1);
 * assert(s._tag === "Right" && s.right.validation.length === 4);
 * ```
 */
export function splitByFraction(
  documents: DocumentStream | TokenizedDocs,
  spec: { readonly fraction: number; readonly by?: SplitBy },
  seed: number,
): ext.Either<ConfigInvalid, Split> {
  const docs = asDocumentStream(documents);
  const { fraction } = spec;
  if (!(fraction >= 0 && fraction < 1)) {
    return E.left(configInvalid("data.validation.fraction", `must be in [0, 1), got ${fraction}`));
  }
  const n = docs.docEnds.length;
  const held = Math.round(fraction * n);
  const by = spec.by === undefined || spec.by === "auto"
    ? (held >= 2 && held < n ? "documents" : "tail")
    : spec.by;
  if (by === "tail") {
    const cut = docs.tokens.length - Math.round(fraction * docs.tokens.length);
    return E.right({
      train: sliceStream(docs.tokens, 0, cut),
      validation: sliceStream(docs.tokens, cut, docs.tokens.length),
      by,
      validationDocIndices: [],
    });
  }
  if (fraction > 0 && (held < 1 || held >= n)) {
    return E.left(
      configInvalid(
        "data.validation",
        `holding out ${fraction} of ${n} documents leaves ${held} for validation and ${
          n - held
        } for training`,
      ),
    );
  }
  // A stream id distinct from the batch shuffles', so changing one never moves the other.
  const order = permutation(n, deriveSeed(seed, 0x5ba1));
  const isHeld = new Uint8Array(n);
  for (let k = 0; k < held; k++) isHeld[order[k]!] = 1;
  const validIdx: number[] = [];
  for (let i = 0; i < n; i++) if (isHeld[i]) validIdx.push(i);
  return E.right({
    train: documentsStream(docs.tokens, docs.docEnds, isHeld.map((h) => 1 - h)),
    validation: documentsStream(docs.tokens, docs.docEnds, isHeld),
    by,
    validationDocIndices: validIdx,
  });
}
