import fc from "fast-check";
import { assert, assertEquals } from "../tests/assert.ts";
import { largestWithin } from "./memory_fit.ts";

/** The answer by looking at every size: the independent computation the search must match. */
function bruteForce(peakOf: (n: number) => number, limit: number, cap: number) {
  let size = 0;
  for (let n = 1; n <= cap; n++) if (peakOf(n) <= limit) size = n;
  return size;
}

Deno.test("largestWithin finds what a scan of every size finds, for any nondecreasing peak", () => {
  fc.assert(
    fc.property(
      // A nondecreasing peak: a start and nonnegative steps, flat stretches included.
      fc.integer({ min: 0, max: 1000 }),
      fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 300 }),
      fc.integer({ min: 0, max: 20000 }),
      (start, steps, limit) => {
        const peaks = [start];
        for (const s of steps) peaks.push(peaks[peaks.length - 1]! + s);
        const cap = peaks.length;
        const peakOf = (n: number) => peaks[n - 1]!;
        const got = largestWithin(peakOf, limit, cap);
        const want = bruteForce(peakOf, limit, cap);
        assertEquals(got.size, want);
        if (want > 0) assertEquals(got.peak, peakOf(want));
        assertEquals(got.capped, want === cap);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("largestWithin evaluates no size above twice the answer and about 2·log2 sizes", () => {
  const asked: number[] = [];
  const r = largestWithin((n) => (asked.push(n), 10 * n), 1234, 100_000);
  assertEquals(r.size, 123);
  assert(Math.max(...asked) <= 2 * 123 + 1, `asked ${asked}`);
  assert(asked.length <= 2 * Math.ceil(Math.log2(123)) + 2, `asked ${asked.length} sizes`);
});

Deno.test("largestWithin: nothing fits, the cap fits, and a cap that is not a positive integer", () => {
  assertEquals(largestWithin((n) => 100 + n, 50, 10), { size: 0, capped: false });
  assertEquals(largestWithin((n) => n, 50, 10), { size: 10, peak: 10, capped: true });
  for (const cap of [0, 1.5, NaN]) {
    let threw = false;
    try {
      largestWithin((n) => n, 50, cap);
    } catch (e) {
      threw = e instanceof RangeError && e.message.includes("cap");
    }
    assert(threw, `cap ${cap}`);
  }
});
