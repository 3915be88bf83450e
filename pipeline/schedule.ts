/**
 * Learning-rate schedules as pure functions of the step: linear warmup into a
 * cosine with a floor (each STEP stage has its own, re-warming to the stage-1
 * peak), and ReLoRA's "jagged cosine": after every adapter merge the LR is
 * re-warmed from 0 over a few steps back onto the stage's cosine.
 *
 * @module
 */

/** A warmup + cosine schedule. */
export interface CosineSchedule {
  /** Peak learning rate, reached at the end of warmup. */
  readonly peakLr: number;
  /** Warmup steps (linear from peakLr/warmup at step 0 to peakLr). */
  readonly warmup: number;
  /** Total length of the schedule in steps (warmup included). */
  readonly length: number;
  /** Floor as a fraction of the peak (0.1 in ReLoRA's reference). */
  readonly minRatio: number;
}

/** ReLoRA restarts within a stage. */
export interface Restarts {
  /** Merge-and-reset period in steps (the first merge happens after this many steps). */
  readonly every: number;
  /** Steps of linear re-warm from 0 after each merge. */
  readonly warmup: number;
  /**
   * Re-warm at step 0 too: the stage continues a schedule begun before it (ReLoRA after its
   * warm start), and attaching the adapters reset the optimizer there, like a merge.
   */
  readonly atStart?: boolean;
}

/**
 * LR at 0-based step `step` of a warmup + cosine schedule. During warmup the
 * LR grows linearly, (step + 1)/warmup × peakLr, so step 0 already moves;
 * afterwards it follows half a cosine from the peak down to minRatio × peakLr at
 * `length`, and stays at the floor beyond.
 */
export function cosineLr(s: CosineSchedule, step: number): number {
  if (step < s.warmup) return (s.peakLr * (step + 1)) / s.warmup;
  const decay = Math.max(1, s.length - s.warmup);
  const progress = Math.min(1, (step - s.warmup) / decay);
  const floor = s.minRatio * s.peakLr;
  return floor + (s.peakLr - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** True when a ReLoRA merge happens before `step` (after steps every, 2·every, …). */
export function isRestartStep(r: Restarts, step: number): boolean {
  return step > 0 && step % r.every === 0;
}

/**
 * ReLoRA's jagged cosine: the stage's cosine, multiplied after each restart
 * by a linear ramp k/warmup over the `warmup` steps that follow it, so the LR
 * restarts from exactly 0 at the merge and climbs back onto the cosine.
 * `offset` steps of the cosine were spent before the stage (ReLoRA's warm start).
 */
export function jaggedLr(
  s: CosineSchedule,
  r: Restarts,
  step: number,
  offset: number = 0,
): number {
  const base = cosineLr(s, step + offset);
  if ((step < r.every && !(r.atStart ?? false)) || r.warmup === 0) return base;
  const since = step % r.every;
  return since < r.warmup ? (base * since) / r.warmup : base;
}
