import fc from "fast-check";
import { assert, assertEquals } from "../tests/assert.ts";
import { byteTokenizer, type Tokenizer } from "../data/mod.ts";
import { encodePair, pairRequest, rollingWindows } from "./requests.ts";

Deno.test("rolling windows score every id exactly once, each after the ids that precede it", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 200 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 40 }),
      (n, window, strideRaw) => {
        const stride = Math.min(strideRaw, window);
        // Ids are their own positions, so a window's context is checkable position by position.
        const ids = Int32Array.from({ length: n }, (_, i) => 1000 + i);
        const windows = rollingWindows(ids, 7, window, stride);
        const seen = new Array<number>(n).fill(0);
        for (const w of windows) {
          assertEquals(w.tokens.length, w.targets.length);
          assert(w.tokens.length <= window);
          for (let j = 0; j < w.targets.length; j++) {
            const t = w.targets[j]!;
            if (t < 0) continue;
            const pos = t - 1000;
            seen[pos]!++;
            // The input at j is the id just before the target (or end-of-text for the first id).
            assertEquals(w.tokens[j], pos === 0 ? 7 : 1000 + pos - 1);
            // After the first window, each target has at least window − stride ids of context.
            if (w !== windows[0]) assert(j >= window - stride, `context ${j} < ${window - stride}`);
          }
        }
        assert(seen.every((c) => c === 1), `every id once: ${seen}`);
        if (n > 0 && stride === window) assertEquals(windows.length, Math.ceil(n / window));
      },
    ),
  );
});

Deno.test("a smaller stride gives every later id at least window − stride ids of context", () => {
  const ids = Int32Array.from({ length: 100 }, (_, i) => i + 1);
  for (const w of rollingWindows(ids, 0, 16, 4).slice(1)) {
    const firstScored = w.targets.findIndex((t) => t >= 0);
    assert(firstScored >= 16 - 4, `first scored position ${firstScored}`);
  }
});

Deno.test("pairRequest keeps the continuation and cuts the context from the left", () => {
  const r = pairRequest({
    context: Int32Array.of(1, 2, 3, 4, 5),
    continuation: Int32Array.of(6, 7),
  }, 4);
  assertEquals([...r.tokens], [3, 4, 5, 6]);
  assertEquals([...r.targets], [-1, -1, 6, 7]);
  const long = pairRequest({
    context: Int32Array.of(1),
    continuation: Int32Array.of(2, 3, 4, 5, 6),
  }, 3);
  assertEquals([...long.targets], [4, 5, 6], "an over-long continuation is scored on its tail");
});

Deno.test("encodePair moves the context's trailing whitespace to the continuation; empty context is the prefix", () => {
  const tok = byteTokenizer();
  const p = encodePair(tok, "ab  ", "c");
  assertEquals([...p.context], [97, 98]);
  assertEquals([...p.continuation], [32, 32, 99]);
  // Python's rstrip(): a newline, a tab and U+0085 move too (scored); U+FEFF stays.
  const n = encodePair(tok, "ab\n\t\u0085", "c");
  assertEquals([...n.context], [97, 98]);
  assertEquals([...n.continuation], [10, 9, 0xc2, 0x85, 99]);
  assertEquals([...encodePair(tok, "ab\ufeff", "c").context], [97, 98, 0xef, 0xbb, 0xbf]);
  const e = encodePair(tok, "", "x");
  assertEquals([...e.context], [256]);
  // A tokeniser whose config prepends BOS: the harness's prefix_token_id is BOS.
  assertEquals([...encodePair({ ...tok, bos: 300 }, "", "x").context], [300]);
  assertEquals([...encodePair({ ...tok, bos: 300 }, "a", "x").context], [97]);
  // With a merging tokeniser the continuation is the whole string's ids after the context's.
  const merging: Tokenizer = {
    name: "pairs",
    vocabSize: 300,
    eot: 299,
    encode: (s) =>
      Int32Array.from(
        s.match(/.{1,2}/g) ?? [],
        (x) => x.length === 2 ? 200 + x.charCodeAt(1) % 90 : x.charCodeAt(0) % 90,
      ),
    decode: () => "",
    hfFiles: () => byteTokenizer().hfFiles(),
  };
  const m = encodePair(merging, "abc", "d");
  assertEquals([...m.continuation], [
    ...merging.encode("abcd").slice(merging.encode("abc").length),
  ]);
});
