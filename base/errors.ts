/**
 * Errors as values: every failure the project reports to a user is one of
 * these tagged records, carrying where it happened (config path, graph node,
 * file). Only the CLI turns them into text and an exit code.
 *
 * @module
 */

/** A config or graph file, or a CLI flag, failed to decode or validate. */
export interface ConfigInvalid {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "ConfigInvalid";
  /** Where: file name and/or dotted field path, e.g. `plan.yaml: model.hidden`. */
  readonly where: string;
  /** What is wrong with the value, e.g. `expected a positive integer (got 0)`. */
  readonly message: string;
}

/** The integer program or a budget has no solution. */
export interface PlanInfeasible {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "PlanInfeasible";
  /** Which constraint cannot be met, with the numbers that clash (budget, peak, depth). */
  readonly message: string;
}

/** A stage graph is inconsistent; `node` names the offending node. */
export interface GraphInvalid {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "GraphInvalid";
  /** Id of the node the check stopped at, as the graph names it. */
  readonly node: string;
  /** Why the node cannot stand where it is, e.g. a growth past the target depth. */
  readonly message: string;
}

/** The tensor engine failed (backend unavailable, kernel error). */
export interface KernelFailed {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "KernelFailed";
  /** What the engine was doing and why it failed, e.g. `Cannot start python3: …`. */
  readonly message: string;
}

/** Reading or writing a file failed (missing, unreadable, no space, locked). */
export interface IoFailed {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "IoFailed";
  /** The file or folder that could not be used. */
  readonly path: string;
  /** The operation that failed and the system's reason, e.g. `cannot read: No such file`. */
  readonly message: string;
}

/** A file was read, but what it holds is wrong: corrupt, inconsistent, or not what was expected. */
export interface ContentInvalid {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "ContentInvalid";
  /** The file whose content is wrong. */
  readonly path: string;
  /** What in the content is wrong: the field, record or byte range, and what was expected. */
  readonly message: string;
}

/** Either way a file can fail: unreadable, or readable with the wrong content. */
export type FileError = IoFailed | ContentInvalid;

/** Training produced a non-finite loss; the last good checkpoint is kept. */
export interface TrainingDiverged {
  /** Tells this failure apart from the other {@link PipelineError} members. */
  readonly _tag: "TrainingDiverged";
  /** Id of the training node that diverged. */
  readonly node: string;
  /** The step at which the non-finite value was seen. */
  readonly step: number;
  /** What was not finite (a loss, a gradient, a weight), what is kept, and what to change. */
  readonly message: string;
}

/** Everything that can go wrong in a plan or a run. */
export type PipelineError =
  | ConfigInvalid
  | PlanInfeasible
  | GraphInvalid
  | KernelFailed
  | IoFailed
  | ContentInvalid
  | TrainingDiverged;

/** Builds a {@link ConfigInvalid}. */
export function configInvalid(where: string, message: string): ConfigInvalid {
  return { _tag: "ConfigInvalid", where, message };
}

/** Builds a {@link PlanInfeasible}. */
export function planInfeasible(message: string): PlanInfeasible {
  return { _tag: "PlanInfeasible", message };
}

/** Builds a {@link GraphInvalid}. */
export function graphInvalid(node: string, message: string): GraphInvalid {
  return { _tag: "GraphInvalid", node, message };
}

/** Builds a {@link KernelFailed}. */
export function kernelFailed(message: string): KernelFailed {
  return { _tag: "KernelFailed", message };
}

/** Builds an {@link IoFailed}. */
export function ioFailed(path: string, message: string): IoFailed {
  return { _tag: "IoFailed", path, message };
}

/** Builds a {@link ContentInvalid}. */
export function contentInvalid(path: string, message: string): ContentInvalid {
  return { _tag: "ContentInvalid", path, message };
}

/** Builds a {@link TrainingDiverged}. */
export function trainingDiverged(node: string, step: number, message: string): TrainingDiverged {
  return { _tag: "TrainingDiverged", node, step, message };
}

/** Text of an unknown thrown value, for wrapping foreign failures. */
export function describeUnknown(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/** One line per error: where, then what (std's message style). */
export function renderError(e: PipelineError): string {
  switch (e._tag) {
    case "ConfigInvalid":
      return `Invalid config: ${e.where}: ${e.message}`;
    case "PlanInfeasible":
      return `No feasible plan: ${e.message}`;
    case "GraphInvalid":
      return `Invalid stage graph at node "${e.node}": ${e.message}`;
    case "KernelFailed":
      return `Engine failure: ${e.message}`;
    case "IoFailed":
      return `Cannot use "${e.path}": ${e.message}`;
    case "ContentInvalid":
      return `Invalid content in "${e.path}": ${e.message}`;
    case "TrainingDiverged":
      return `Training diverged at node "${e.node}", step ${e.step}: ${e.message}`;
  }
}

/** Exit code per tag, so scripts can tell bad input from a failed run. */
export function exitCode(e: PipelineError): number {
  switch (e._tag) {
    case "ConfigInvalid":
    case "GraphInvalid":
    case "ContentInvalid":
      return 2;
    case "PlanInfeasible":
      return 3;
    case "IoFailed":
      return 4;
    case "KernelFailed":
      return 5;
    case "TrainingDiverged":
      return 6;
  }
}
