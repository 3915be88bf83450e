/**
 * Assertions for tests. `@std/assert` lives on JSR, which this project's
 * machines cannot reach, so tests use Node's strict assert through these names.
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Asserts a condition. */
export function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message);
}

/** Asserts deep equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Asserts |actual − expected| ≤ tolerance. */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  tolerance: number,
  message?: string,
): void {
  nodeAssert.ok(
    Math.abs(actual - expected) <= tolerance,
    message ?? `expected ${actual} to be within ${tolerance} of ${expected}`,
  );
}

/** Asserts that `text` contains `fragment`. */
export function assertStringIncludes(text: string, fragment: string, message?: string): void {
  nodeAssert.ok(text.includes(fragment), message ?? `expected "${text}" to include "${fragment}"`);
}

/** Asserts that `fn` throws. */
export function assertThrows(fn: () => unknown, message?: string): void {
  nodeAssert.throws(fn, message);
}
