/**
 * The JSON-lines protocol between the torch engine and its trainer (`torch_engine/trainer.py`):
 * every command and every reply as a codec. Commands are built here and nowhere else; the
 * trainer checks each one it receives against {@link commandSchema}, the JSON Schema read off
 * {@link CommandCodec} (`codec_schema.ts`) that each launch writes beside its exchange
 * directories, so both sides hold one declaration. Replies are decoded here: one that does not
 * fit its codec fails the command as `KernelFailed`, naming the field.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { Count, type KernelFailed, kernelFailed, reportErrors } from "../base/mod.ts";
import {
  AccountedStateCodec,
  type MicroBatch,
  type StepHyper,
  StepHyperCodec,
} from "../pipeline/mod.ts";
import { closed, Integer, type JsonSchema, jsonSchema } from "./codec_schema.ts";

/** A micro-batch as windows of the token files the ranks memory-map (`torch_data.ts`). */
const WindowRowsCodec = closed(t.type({
  rows: Count,
  seq: Count,
  split: t.keyof({ train: null, validation: null }),
  /** Row k is `split[starts[k] .. starts[k] + seq]`, inputs then targets shifted by one. */
  starts: t.readonlyArray(Count),
}));

/** A micro-batch as its ids (evaluation sets outside the run's splits); a target < 0 is not scored. */
const IdRowsCodec = closed(t.type({
  rows: Count,
  seq: Count,
  tokens: t.readonlyArray(Count),
  targets: t.readonlyArray(Integer),
}));

const BatchesProps = {
  batches: t.readonlyArray(t.union([WindowRowsCodec, IdRowsCodec])),
  /** Rows per forward pass on a rank. */
  microBatch: Count,
};

/** One optimizer step over the global batch (each rank reads its share of the rows). */
export const StepCommandCodec = closed(t.type({
  op: t.literal("step"),
  hyper: closed(StepHyperCodec),
  ...BatchesProps,
}));
/** Mean cross-entropy over batches. */
export const EvalCommandCodec = closed(t.type({ op: t.literal("eval"), ...BatchesProps }));
/** ReLoRA's merge, re-initialisation from `seed` and moment pruning. */
export const ResetCommandCodec = closed(t.type({
  op: t.literal("reset"),
  pruneRatio: t.number,
  seed: Count,
}));
/** Weights, moments and step into the exchange directory `dir` (this node's own path). */
export const SaveCommandCodec = closed(t.type({ op: t.literal("save"), dir: t.string }));
/**
 * The model of the exchange directory `dir` (this node's own path) replaces the launch's: the
 * next stage runs in the same processes, without a new interpreter, import and process group.
 */
export const LoadCommandCodec = closed(t.type({ op: t.literal("load"), dir: t.string }));
/** The ranks exit; no reply. */
export const ExitCommandCodec = closed(t.type({ op: t.literal("exit") }));

/** Every command the trainer takes. */
export const CommandCodec = t.union([
  StepCommandCodec,
  EvalCommandCodec,
  ResetCommandCodec,
  SaveCommandCodec,
  LoadCommandCodec,
  ExitCommandCodec,
]);
/** A command, as written on the wire. */
export type Command = t.OutputOf<typeof CommandCodec>;

/** The schema as a JSON Schema document: its dialect and title, then the constraints. */
export type SchemaDocument = JsonSchema & { readonly $schema: string; readonly title: string };

let schema: SchemaDocument | undefined;

/** The JSON Schema the trainer checks every command against, read off {@link CommandCodec}. */
export function commandSchema(): SchemaDocument {
  schema ??= {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "A command to STEP's torch trainer (effects/torch_protocol.ts)",
    ...jsonSchema(CommandCodec),
  };
  return schema;
}

/** The rows of a micro-batch in a command: their start offsets when it has them, else their ids. */
function rowsOf(b: MicroBatch): t.OutputOf<typeof BatchesProps.batches>[number] {
  return b.window === undefined
    ? { rows: b.batch, seq: b.seq, tokens: [...b.tokens], targets: [...b.targets] }
    : { rows: b.batch, seq: b.seq, split: b.window.split, starts: b.window.starts };
}

function batchesOf(batches: readonly MicroBatch[]) {
  return {
    batches: batches.map(rowsOf),
    microBatch: Math.max(1, ...batches.map((b) => b.batch)),
  };
}

/** The `step` command: `hyper` travels as the engine was given it. */
export function stepCommand(
  hyper: StepHyper,
  batches: readonly MicroBatch[],
): t.OutputOf<typeof StepCommandCodec> {
  return { op: "step", hyper, ...batchesOf(batches) };
}

/** The `eval` command. */
export function evalCommand(batches: readonly MicroBatch[]): t.OutputOf<typeof EvalCommandCodec> {
  return { op: "eval", ...batchesOf(batches) };
}

/** The `reset` command. */
export function resetCommand(
  spec: { readonly pruneRatio: number; readonly seed: number },
): t.OutputOf<typeof ResetCommandCodec> {
  return { op: "reset", pruneRatio: spec.pruneRatio, seed: spec.seed };
}

/** The `save` command. */
export function saveCommand(dir: string): t.OutputOf<typeof SaveCommandCodec> {
  return { op: "save", dir };
}

/** The `load` command. */
export function loadCommand(dir: string): t.OutputOf<typeof LoadCommandCodec> {
  return { op: "load", dir };
}

/** The `exit` command. */
export const EXIT_COMMAND: t.OutputOf<typeof ExitCommandCodec> = { op: "exit" };

/** A number the trainer sent: JSON has no NaN or infinities, so they travel as these strings. */
export const WireNumber: t.Type<number, number | string, unknown> = new t.Type<
  number,
  number | string,
  unknown
>(
  "WireNumber",
  (u): u is number => typeof u === "number",
  (u, c) =>
    typeof u === "number"
      ? t.success(u)
      : u === "NaN" || u === "Infinity" || u === "-Infinity"
      ? t.success(Number(u))
      : t.failure(u, c, "expected a number, or NaN, Infinity or -Infinity as a string"),
  (n) => Number.isFinite(n) ? n : String(n),
);

// The trainer's `ok` and `ready` flags.
const YES = true;
const NO = false;
const Ok = { ok: t.literal(YES) };

/** Local rank 0 is connected and the model is loaded. */
export const ReadyReplyCodec = t.type({ ...Ok, ready: t.literal(YES) });
/**
 * What a step did and held. The wire's `state` is the accounted model state (by role, read from
 * the trainer's tensors: `StepOutcome.accounted`) and its `peak` the measured one
 * (`StepOutcome.measured`); the wire keeps the trainer's names.
 */
export const StepReplyCodec = t.type({
  ...Ok,
  loss: WireNumber,
  gradNorm: WireNumber,
  skipped: t.boolean,
  state: AccountedStateCodec,
  /** CUDA: `max_memory_allocated`; CPU: the process's peak resident bytes above its start. */
  peak: t.partial({ gpuBytes: t.number, processBytes: t.number }),
});
/** Mean cross-entropy in nats/token. */
export const EvalReplyCodec = t.type({ ...Ok, loss: WireNumber });
/** What a ReLoRA restart did. */
export const ResetReplyCodec = t.type({ ...Ok, merged: Count, prunedFraction: t.number });
/** The exchange directory is written. */
export const SaveReplyCodec = t.type(Ok);
/** The model is loaded. */
export const LoadReplyCodec = t.type(Ok);
/** The command failed (the launch ends): the exception and its trace. */
export const FailedReplyCodec = t.intersection([
  t.type({ ok: t.literal(NO), error: t.string }),
  t.partial({ trace: t.string }),
]);

/** What `findTorchPython`'s probe prints: the interpreter's torch and what it can do. */
export const ProbeReplyCodec = t.type({ version: t.string, fsdp: t.boolean, cudaDevices: Count });

/** The reply each command that has one gets. */
export const REPLIES = {
  step: StepReplyCodec,
  eval: EvalReplyCodec,
  reset: ResetReplyCodec,
  save: SaveReplyCodec,
  load: LoadReplyCodec,
} as const;
/** A command that is answered. */
export type Request = Extract<Command, { readonly op: keyof typeof REPLIES }>;
/** The decoded reply to a command with `op`. */
export type ReplyTo<Op extends keyof typeof REPLIES> = t.TypeOf<(typeof REPLIES)[Op]>;

/** What one line from the trainer said. */
export type Received<A> =
  | { readonly kind: "reply"; readonly reply: A }
  | { readonly kind: "failed"; readonly error: string };

/**
 * One line from the trainer, decoded as the reply `codec` or as a failure; a line that is
 * neither is `KernelFailed` naming what was wrong with it (`what`: the command it answers).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeReply, EvalReplyCodec } from "./torch_protocol.ts";
 * const nan = decodeReply('{"ok": true, "loss": "NaN"}', EvalReplyCodec, '"eval"');
 * assert(E.isRight(nan) && nan.right.kind === "reply" && Number.isNaN(nan.right.reply.loss));
 * const bad = decodeReply('{"ok": true, "los": 2}', EvalReplyCodec, '"eval"');
 * assert(E.isLeft(bad) && bad.left.message.includes("loss"));
 * ```
 */
export function decodeReply<A>(
  line: string,
  codec: t.Type<A, unknown, unknown>,
  what: string,
): E.Either<KernelFailed, Received<A>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return E.left(kernelFailed(`PyTorch trainer sent an unreadable reply: ${line.slice(0, 200)}`));
  }
  const failed = FailedReplyCodec.decode(parsed);
  if (E.isRight(failed)) return E.right({ kind: "failed", error: failed.right.error });
  const reply = codec.decode(parsed);
  if (E.isRight(reply)) return E.right({ kind: "reply", reply: reply.right });
  return E.left(kernelFailed(
    `PyTorch trainer sent a malformed reply to ${what}: ${
      reportErrors(reply.left).join("; ")
    } — in ${line.slice(0, 200)}`,
  ));
}
