/**
 * The built-in grammar's vocabulary (private to `data/`). Changing any list
 * changes the corpus: bump `BUILTIN_CORPUS_VERSION` in `builtin_corpus.ts`.
 *
 * @module
 */

/** Singular or plural. */
export type Num = "sg" | "pl";
/** The numbers a determiner allows. */
export type Allowed = Num | "any";

// Word lists. Plural nouns are separate words, so the noun decides the number.
export const NOUNS: ReadonlyArray<readonly [string, string]> = [
  ["cat", "cats"],
  ["dog", "dogs"],
  ["child", "children"],
  ["bird", "birds"],
  ["farmer", "farmers"],
  ["teacher", "teachers"],
  ["king", "kings"],
  ["queen", "queens"],
  ["river", "rivers"],
  ["garden", "gardens"],
  ["house", "houses"],
  ["sailor", "sailors"],
  ["horse", "horses"],
  ["letter", "letters"],
  ["window", "windows"],
  ["mountain", "mountains"],
  ["village", "villages"],
  ["doctor", "doctors"],
  ["mouse", "mice"],
  ["wolf", "wolves"],
  ["fox", "foxes"],
  ["story", "stories"],
  ["city", "cities"],
  ["friend", "friends"],
  ["baker", "bakers"],
  ["stone", "stones"],
  ["ship", "ships"],
  ["song", "songs"],
  ["lamp", "lamps"],
  ["book", "books"],
  ["road", "roads"],
  ["forest", "forests"],
  ["merchant", "merchants"],
  ["woman", "women"],
  ["man", "men"],
  ["boat", "boats"],
  ["bridge", "bridges"],
  ["clock", "clocks"],
  ["tree", "trees"],
  ["island", "islands"],
];
export const ADJECTIVES = [
  "old",
  "small",
  "big",
  "young",
  "quiet",
  "red",
  "green",
  "brave",
  "happy",
  "tired",
  "clever",
  "gentle",
  "dark",
  "bright",
  "wooden",
  "golden",
  "hungry",
  "lonely",
  "ancient",
  "silver",
];
/** [singular, base/plural] forms. */
export const TRANSITIVE: ReadonlyArray<readonly [string, string]> = [
  ["sees", "see"],
  ["finds", "find"],
  ["loves", "love"],
  ["follows", "follow"],
  ["carries", "carry"],
  ["watches", "watch"],
  ["helps", "help"],
  ["builds", "build"],
  ["remembers", "remember"],
  ["visits", "visit"],
  ["opens", "open"],
  ["sells", "sell"],
  ["hears", "hear"],
  ["chases", "chase"],
  ["keeps", "keep"],
  ["draws", "draw"],
];
export const INTRANSITIVE: ReadonlyArray<readonly [string, string]> = [
  ["sleeps", "sleep"],
  ["sings", "sing"],
  ["waits", "wait"],
  ["laughs", "laugh"],
  ["runs", "run"],
  ["rests", "rest"],
  ["wanders", "wander"],
  ["dreams", "dream"],
];
export const ADVERBS = ["often", "never", "always", "slowly", "quietly", "rarely"];
export const PREPOSITIONS = ["with", "near", "under", "behind", "beside", "across"];
export const SUBORDINATORS = ["When", "Because", "If", "While", "After"];
/** Determiners and the number they allow. */
export const DETERMINERS: ReadonlyArray<readonly [string, Allowed]> = [
  ["the", "any"],
  ["one", "sg"],
  ["this", "sg"],
  ["some", "pl"],
  ["my", "any"],
  ["every", "sg"],
  ["these", "pl"],
  ["our", "any"],
  ["two", "pl"],
  ["that", "sg"],
  ["many", "pl"],
  ["three", "pl"],
];
