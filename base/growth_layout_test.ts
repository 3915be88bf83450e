import { assert, assertEquals } from "../tests/assert.ts";
import { grownLayout, insertionCounts } from "./growth_layout.ts";

Deno.test("insertionCounts() places new layers by placement", () => {
  assertEquals(insertionCounts(5, 2, "upper", 0), [0, 0, 0, 1, 1]);
  assertEquals(insertionCounts(5, 2, "lower", 0), [1, 1, 0, 0, 0]);
  assertEquals(insertionCounts(4, 2, "uniform", 0), [0, 1, 0, 1]);
  assertEquals(insertionCounts(3, 7, "upper", 0), [2, 2, 3]);
  const random = insertionCounts(6, 3, "random", 42);
  assertEquals(random.reduce((a, b) => a + b, 0), 3);
  assert(random.every((c) => c <= 1));
  assertEquals(insertionCounts(6, 3, "random", 42), random, "same seed, same placement");
});

Deno.test("grownLayout() interleaves new layers above the chosen ones", () => {
  assertEquals(grownLayout([0, 1, 1]), [
    { kind: "old", from: 0 },
    { kind: "old", from: 1 },
    { kind: "new", below: 1, above: 2 },
    { kind: "old", from: 2 },
    { kind: "new", below: 2, above: undefined },
  ]);
});
