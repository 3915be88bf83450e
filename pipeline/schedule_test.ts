import { assertAlmostEquals, assertEquals } from "../tests/assert.ts";
import { cosineLr, isRestartStep, jaggedLr } from "./schedule.ts";

const S = { peakLr: 1e-3, warmup: 10, length: 110, minRatio: 0.1 };

Deno.test("cosineLr() warms up linearly, peaks, halves at mid-decay and ends on the floor", () => {
  assertAlmostEquals(cosineLr(S, 0), 1e-4, 1e-15);
  assertAlmostEquals(cosineLr(S, 4), 5e-4, 1e-15);
  assertAlmostEquals(cosineLr(S, 10), 1e-3, 1e-15);
  // Mid-decay: floor + (peak − floor)/2 = 1e-4 + 4.5e-4.
  assertAlmostEquals(cosineLr(S, 60), 5.5e-4, 1e-15);
  assertAlmostEquals(cosineLr(S, 110), 1e-4, 1e-15);
  assertAlmostEquals(cosineLr(S, 500), 1e-4, 1e-15);
  // A quarter into the decay: cos(π/4) closed form.
  assertAlmostEquals(cosineLr(S, 35), 1e-4 + 9e-4 * 0.5 * (1 + Math.SQRT1_2), 1e-15);
});

Deno.test("jaggedLr() restarts from 0 after each merge and rejoins the cosine", () => {
  const R = { every: 40, warmup: 4 };
  for (let s = 0; s < 40; s++) assertEquals(jaggedLr(S, R, s), cosineLr(S, s));
  assertEquals(jaggedLr(S, R, 40), 0);
  assertAlmostEquals(jaggedLr(S, R, 41), cosineLr(S, 41) / 4, 1e-18);
  assertAlmostEquals(jaggedLr(S, R, 43), (cosineLr(S, 43) * 3) / 4, 1e-18);
  assertEquals(jaggedLr(S, R, 44), cosineLr(S, 44));
  assertEquals(jaggedLr(S, R, 80), 0);
  assertEquals(jaggedLr(S, R, 84), cosineLr(S, 84));
});

Deno.test("isRestartStep() marks multiples of the period, never step 0", () => {
  const R = { every: 5, warmup: 1 };
  assertEquals([0, 4, 5, 9, 10, 11].map((s) => isRestartStep(R, s)), [
    false,
    false,
    true,
    false,
    true,
    false,
  ]);
});

Deno.test("jaggedLr() with an offset follows one cosine and re-warms at the stage's start", () => {
  const s = { peakLr: 1, warmup: 4, length: 40, minRatio: 0.1 };
  const r = { every: 10, warmup: 3, atStart: true };
  // Step k of a stage begun at step 8 of the schedule is step k + 8 of the cosine.
  assertAlmostEquals(jaggedLr(s, { ...r, warmup: 0 }, 5, 8), cosineLr(s, 13), 1e-12);
  assertEquals(jaggedLr(s, r, 0, 8), 0);
  assertAlmostEquals(jaggedLr(s, r, 2, 8), (cosineLr(s, 10) * 2) / 3, 1e-12);
  assertAlmostEquals(jaggedLr(s, r, 3, 8), cosineLr(s, 11), 1e-12);
  assertAlmostEquals(jaggedLr(s, r, 11, 8), cosineLr(s, 19) / 3, 1e-12);
  // Without atStart the first ramp is the first merge's.
  assertAlmostEquals(jaggedLr(s, { ...r, atStart: false }, 0, 8), cosineLr(s, 8), 1e-12);
});
