/**
 * The probabilistic grammar behind the built-in corpus (private to `data/`).
 *
 * The grammar is a small program that makes a sequence of *picks*. Each pick
 * chooses one option from a table of (text, weight) and emits the text. Two
 * rules make every document uniquely decodable into the picks that made it:
 *
 * 1. every option's text is exactly one *lexeme* — `(" " | "\n\n")? letters`
 *    or one punctuation mark — except the end-of-document option, whose text
 *    is empty and which is chosen exactly when the input is exhausted;
 * 2. within one table the texts are distinct.
 *
 * A letters-lexeme is always followed by a space, newline or punctuation, so
 * lexing the concatenated text gives back exactly the emitted lexemes; the
 * program's control flow depends only on earlier picks, so reading the
 * lexemes one by one replays the picks. Hence P(text) = Π p(pick) and the
 * exact negative log-likelihood of a document is the sum of −log p over its
 * picks. `scoreDocument` does that replay (and proves decodability on any
 * sample by reproducing the generator's NLL).
 *
 * Dependencies that a language model has to learn: subject–verb agreement
 * across adjectives, adverbs and relative clauses; "Does/Do" questions taking
 * the base verb and ending in "?"; pronouns ("It"/"They", "it"/"they") agreeing
 * with an earlier subject; subordinate clauses closed by a comma; paragraph
 * breaks; and Zipf-distributed word choice.
 *
 * @module
 */
import {
  ADJECTIVES,
  ADVERBS,
  type Allowed,
  DETERMINERS,
  INTRANSITIVE,
  NOUNS,
  type Num,
  PREPOSITIONS,
  SUBORDINATORS,
  TRANSITIVE,
} from "./_lexicon.ts";

/** One pick's options: texts, their probabilities and −log p. */
export interface ChoiceTable {
  readonly key: string;
  readonly texts: readonly string[];
  readonly cumulative: Float64Array;
  readonly nll: Float64Array;
  readonly index: ReadonlyMap<string, number>;
}

/** Makes the picks: by sampling (generation) or by reading text (scoring). */
export interface Chooser {
  pick(table: ChoiceTable): number;
}

/** The option text meaning "the document ends here". */
export const END = "";

const ADJECTIVE_SET: ReadonlySet<string> = new Set(ADJECTIVES);
const ADVERB_SET: ReadonlySet<string> = new Set(ADVERBS);
const SINGULAR_NOUNS: ReadonlySet<string> = new Set(NOUNS.map(([sg]) => sg));
const TRANSITIVE_SET: ReadonlySet<string> = new Set(TRANSITIVE.flat());
const SUBORDINATOR_SET: ReadonlySet<string> = new Set(SUBORDINATORS);
const DETERMINER_NUMBER: ReadonlyMap<string, Allowed> = new Map(DETERMINERS);

/** Zipf-like weight of the item at `rank` (0-based). */
function zipf(rank: number): number {
  return 1 / (rank + 1.5);
}

function capitalise(w: string): string {
  return w.charAt(0).toUpperCase() + w.slice(1);
}

function makeTable(key: string, options: ReadonlyArray<readonly [string, number]>): ChoiceTable {
  const total = options.reduce((s, [, w]) => s + w, 0);
  const cumulative = new Float64Array(options.length);
  const nll = new Float64Array(options.length);
  const index = new Map<string, number>();
  let acc = 0;
  options.forEach(([text, w], i) => {
    if (index.has(text)) throw new Error(`grammar table ${key}: option "${text}" appears twice`);
    index.set(text, i);
    acc += w / total;
    cumulative[i] = acc;
    nll[i] = -Math.log(w / total);
  });
  cumulative[options.length - 1] = 1;
  return { key, texts: options.map(([t]) => t), cumulative, nll, index };
}

/** Options `words` with total weight `mass`, split Zipf-wise, each text prefixed. */
function spread(words: readonly string[], mass: number, prefix: string): Array<[string, number]> {
  const z = words.reduce((s, _, i) => s + zipf(i), 0);
  return words.map((w, i) => [prefix + w, (mass * zipf(i)) / z]);
}

function allows(allowed: Allowed, n: Num): boolean {
  return allowed === "any" || allowed === n;
}

/** Builds each table once, on first use (nothing runs at import). */
const tables = new Map<string, ChoiceTable>();
function table(key: string, build: () => ReadonlyArray<readonly [string, number]>): ChoiceTable {
  let t = tables.get(key);
  if (t === undefined) {
    t = makeTable(key, build());
    tables.set(key, t);
  }
  return t;
}

// Probabilities of the structural choices (the rest is word choice).
const P_END = 0.1; // a document ends after a sentence (once it has MIN_SENTENCES)
const MIN_SENTENCES = 3;
const P_PARAGRAPH = 0.2; // a new sentence starts a new paragraph
const SENTENCE_KINDS = { statement: 0.56, pronoun: 0.14, question: 0.12, subordinate: 0.18 };

/** The first lexeme of a sentence; encodes the separator, the sentence kind and its first word. */
function startTable(docStart: boolean, canEnd: boolean, last: Num | undefined): ChoiceTable {
  return table(`start:${docStart}:${canEnd}:${last}`, () => {
    const words: Array<[string, number]> = [];
    const dets = DETERMINERS.map(([d]) => capitalise(d));
    words.push(...spread(dets, SENTENCE_KINDS.statement, ""));
    if (last !== undefined) words.push([last === "sg" ? "It" : "They", SENTENCE_KINDS.pronoun]);
    words.push(["Does", SENTENCE_KINDS.question / 2], ["Do", SENTENCE_KINDS.question / 2]);
    words.push(...spread(SUBORDINATORS, SENTENCE_KINDS.subordinate, ""));
    if (docStart) return words;
    const stay = canEnd ? 1 - P_END : 1;
    const out: Array<[string, number]> = [];
    for (const [w, p] of words) out.push([" " + w, p * stay * (1 - P_PARAGRAPH)]);
    for (const [w, p] of words) out.push(["\n\n" + w, p * stay * P_PARAGRAPH]);
    if (canEnd) out.push([END, P_END]);
    return out;
  });
}

function detTable(allowed: Allowed): ChoiceTable {
  return table(`det:${allowed}`, () =>
    spread(
      DETERMINERS.filter(([, a]) => a === "any" || allowed === "any" || a === allowed).map(([d]) =>
        d
      ),
      1,
      " ",
    ));
}

/** Adjectives (while fewer than two) or the head noun, of the allowed number. */
function nounTable(allowed: Allowed, adjectives: number): ChoiceTable {
  return table(`noun:${allowed}:${adjectives}`, () => {
    const pAdj = adjectives === 0 ? 0.3 : adjectives === 1 ? 0.12 : 0;
    const nouns: string[] = [];
    for (const [sg, pl] of NOUNS) {
      if (allows(allowed, "sg")) nouns.push(sg);
      if (allows(allowed, "pl")) nouns.push(pl);
    }
    return [...(pAdj > 0 ? spread(ADJECTIVES, pAdj, " ") : []), ...spread(nouns, 1 - pAdj, " ")];
  });
}

/**
 * What may open a verb phrase: `subject` right after a statement's subject (adverb,
 * relative " that" or verb), `free` (adverb or verb), `bare` (a verb only).
 */
type VerbStart = "subject" | "free" | "bare";

/** Start of a verb phrase, with verb forms agreeing with `n`. */
function verbTable(n: Num, start: VerbStart): ChoiceTable {
  return table(`verb:${n}:${start}`, () => {
    const form = n === "sg" ? 0 : 1;
    return [
      ...(start !== "bare" ? spread(ADVERBS, 0.14, " ") : []),
      ...(start === "subject" ? [[" that", 0.1] as [string, number]] : []),
      ...spread(TRANSITIVE.map((v) => v[form]), 0.5, " "),
      ...spread(INTRANSITIVE.map((v) => v[form]), 0.26, " "),
    ];
  });
}

/** After a verb phrase's core: end of clause, a prepositional phrase, or " and". */
function afterTable(ends: readonly string[], pp: boolean, and: boolean): ChoiceTable {
  return table(`after:${ends.join("")}:${pp}:${and}`, () => {
    const endWeights = ends.length === 2 ? [0.88, 0.12] : [1];
    return [
      ...ends.map((e, i): [string, number] => [e, 0.6 * endWeights[i]!]),
      ...(pp ? spread(PREPOSITIONS, 0.25, " ") : []),
      ...(and ? [[" and", 0.15] as [string, number]] : []),
    ];
  });
}

/** Subject of a main clause after a subordinate one: a determiner or the agreeing pronoun. */
function mainSubjectTable(previous: Num): ChoiceTable {
  return table(`main:${previous}`, () => [
    ...spread(DETERMINERS.map(([d]) => d), 0.6, " "),
    [previous === "sg" ? " it" : " they", 0.4],
  ]);
}

function nounPhrase(ch: Chooser, allowed: Allowed): Num {
  let adjectives = 0;
  for (;;) {
    const t = nounTable(allowed, adjectives);
    const i = ch.pick(t);
    const word = t.texts[i]!.slice(1);
    if (ADJECTIVE_SET.has(word)) {
      adjectives++;
      continue;
    }
    return SINGULAR_NOUNS.has(word) ? "sg" : "pl";
  }
}

function determinedNounPhrase(ch: Chooser, allowed: Allowed): Num {
  const t = detTable(allowed);
  const own = detNumber(t.texts[ch.pick(t)]!.slice(1));
  return nounPhrase(ch, own === "any" ? allowed : own);
}

/** The number a determiner (any capitalisation) allows. */
function detNumber(det: string): Allowed {
  return DETERMINER_NUMBER.get(det.toLowerCase())!;
}

/** Verb phrase for a subject of number `n` ("pl" forms double as the base form). */
function verbPhrase(ch: Chooser, n: Num, ends: readonly string[], first: VerbStart): string {
  let and = true;
  let start = first;
  for (;;) {
    let t = verbTable(n, start);
    let word = t.texts[ch.pick(t)]!.slice(1);
    start = "free"; // a relative clause only follows the subject itself
    if (word === "that") {
      // Relative clause on the subject: verb (+ object), then the main verb phrase.
      const r = verbTable(n, "bare");
      const rv = r.texts[ch.pick(r)]!.slice(1);
      if (TRANSITIVE_SET.has(rv)) determinedNounPhrase(ch, "any");
      continue;
    }
    if (ADVERB_SET.has(word)) {
      t = verbTable(n, "bare");
      word = t.texts[ch.pick(t)]!.slice(1);
    }
    if (TRANSITIVE_SET.has(word)) determinedNounPhrase(ch, "any");
    let pp = true;
    for (;;) {
      const a = afterTable(ends, pp, and);
      const next = a.texts[ch.pick(a)]!;
      if (ends.includes(next)) return next;
      if (next === " and") {
        and = false;
        break; // a second verb phrase, same subject
      }
      pp = false;
      determinedNounPhrase(ch, "any");
    }
  }
}

/** One sentence; returns the number of its (last) subject, for later pronouns. */
function sentence(ch: Chooser, first: string): Num {
  const word = first.replace(/^\s+/, "");
  if (word === "It" || word === "They") {
    const n: Num = word === "It" ? "sg" : "pl";
    verbPhrase(ch, n, [".", "!"], "free");
    return n;
  }
  if (word === "Does" || word === "Do") {
    const n: Num = word === "Does" ? "sg" : "pl";
    determinedNounPhrase(ch, n);
    verbPhrase(ch, "pl", ["?"], "free");
    return n;
  }
  if (SUBORDINATOR_SET.has(word)) {
    const n = determinedNounPhrase(ch, "any");
    verbPhrase(ch, n, [","], "free");
    const m = mainSubjectTable(n);
    const subj = m.texts[ch.pick(m)]!.slice(1);
    const n2: Num = subj === "it" ? "sg" : subj === "they" ? "pl" : nounPhrase(ch, detNumber(subj));
    verbPhrase(ch, n2, [".", "!"], "free");
    return n2;
  }
  const n = nounPhrase(ch, detNumber(word));
  verbPhrase(ch, n, [".", "!"], "subject");
  return n;
}

/** Runs the grammar for one document; the picks go through `ch`. */
export function document(ch: Chooser): void {
  let last: Num | undefined;
  for (let count = 0;; count++) {
    const t = startTable(count === 0, count >= MIN_SENTENCES, last);
    const first = t.texts[ch.pick(t)]!;
    if (first === END) return;
    last = sentence(ch, first);
  }
}

const CLAUSE_ENDS: ReadonlyArray<readonly string[]> = [[".", "!"], ["?"], [","]];
const FLAGS = [false, true];

/** Every table the grammar can reach, for tests of the decodability rules. */
export function allTables(): ChoiceTable[] {
  const out: ChoiceTable[] = [];
  for (const docStart of FLAGS) {
    for (const canEnd of FLAGS) {
      for (const last of [undefined, "sg", "pl"] as const) {
        out.push(startTable(docStart, canEnd, last));
      }
    }
  }
  for (const a of ["sg", "pl", "any"] as const) {
    out.push(detTable(a));
    for (const adjectives of [0, 1, 2]) out.push(nounTable(a, adjectives));
  }
  for (const n of ["sg", "pl"] as const) {
    out.push(mainSubjectTable(n));
    for (const start of ["subject", "free", "bare"] as const) out.push(verbTable(n, start));
  }
  for (const ends of CLAUSE_ENDS) {
    for (const pp of FLAGS) for (const and of FLAGS) out.push(afterTable(ends, pp, and));
  }
  return out;
}

/** Splits text into the grammar's lexemes; `undefined` if some character fits no lexeme. */
export function lex(text: string): string[] | undefined {
  const re = /(?:\n\n| )?[A-Za-z]+|[.,!?]/y;
  const out: string[] = [];
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (m === null) return undefined;
    out.push(m[0]);
    at = re.lastIndex;
  }
  return out;
}
