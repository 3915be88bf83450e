/**
 * Whether an engine snapshot (a checkpoint read back) fits the model before any tensor is
 * built: every parameter present with its shape, moments for every trainable name in its
 * shape, GaLore's moments and projectors in their projected shapes. Both engines check every
 * `load` with it.
 *
 * @module
 */
import { type LlamaShape, paramShapes } from "../base/mod.ts";
import { depthOf, type GaloreMeta, momentName, projectorName } from "../checkpoint/mod.ts";
import { projectedShape, projectorShape } from "../kernels/mod.ts";
import type { EngineSnapshot, NamedArray } from "../pipeline/mod.ts";

/** Checks a snapshot against the model shape before any tensor is built. */
export function snapshotProblem(shape: LlamaShape, snap: EngineSnapshot): string | undefined {
  const byName = new Map(snap.params.map((p) => [p.name, p]));
  for (const [name, dims] of paramShapes(shape, depthOf(snap.params.map((p) => p.name)))) {
    const p = byName.get(name);
    if (p === undefined) return `parameter "${name}" is missing`;
    if (p.shape.join() !== dims.join()) {
      return `parameter "${name}" has shape [${p.shape}], the model needs [${dims}]`;
    }
    if (p.data.length !== dims.reduce((a, b) => a * b, 1)) {
      return `parameter "${name}" has ${p.data.length} values`;
    }
  }
  const moments = new Map(snap.moments.map((m) => [m.name, m]));
  const projected = new Set(snap.meta.galore?.targets ?? []);
  for (const n of snap.meta.trainable) {
    const p = byName.get(n);
    if (p === undefined) return `trainable "${n}" is not a parameter`;
    for (const kind of ["m", "v"] as const) {
      const m = moments.get(momentName(kind, n));
      if (m === undefined) return `Adam moments of "${n}" are missing`;
      // GaLore's targets have theirs in projected shape (checked below).
      if (!projected.has(n) && !fits(m, p.shape)) {
        return `Adam moment "${m.name}" has shape [${m.shape}], its parameter [${p.shape}]`;
      }
    }
  }
  return snap.meta.galore === undefined
    ? undefined
    : galoreProblem(snap.meta.galore, byName, moments, new Set(snap.meta.trainable));
}

/** Whether `a` has the shape `dims` and as many values. */
function fits(a: NamedArray | undefined, dims: readonly number[]): boolean {
  return a !== undefined && a.shape.join() === dims.join() &&
    a.data.length === dims.reduce((x, y) => x * y, 1);
}

/** GaLore's part of a snapshot: targets are trainable matrices, moments and projectors fit them. */
function galoreProblem(
  g: GaloreMeta,
  params: ReadonlyMap<string, NamedArray>,
  moments: ReadonlyMap<string, NamedArray>,
  trainable: ReadonlySet<string>,
): string | undefined {
  for (const n of g.targets) {
    const p = params.get(n);
    if (p === undefined || !trainable.has(n) || p.shape.length !== 2) {
      return `GaLore target "${n}" is not a trainable matrix`;
    }
    const want = projectedShape(p.shape, g.rank);
    for (const kind of ["m", "v"] as const) {
      const m = moments.get(momentName(kind, n))!;
      if (!fits(m, want)) {
        return `GaLore moment "${m.name}" has shape [${m.shape}], rank ${g.rank} needs [${want}]`;
      }
    }
    const proj = moments.get(projectorName(n));
    const pShape = projectorShape(p.shape, g.rank);
    if (proj !== undefined && !fits(proj, pShape)) {
      return `GaLore projector "${proj.name}" has shape [${proj.shape}], it needs [${pShape}]`;
    }
    // No projector is valid: every decomposition so far may have failed.
  }
  const stray = [...moments.keys()].find((k) =>
    k.startsWith(projectorName("")) && !g.targets.includes(k.slice(projectorName("").length))
  );
  return stray === undefined ? undefined : `projector "${stray}" belongs to no GaLore target`;
}
