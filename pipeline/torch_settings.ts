/**
 * The `training.torch:` section: how the torch engine launches PyTorch for each
 * `train`/`continue` node (`effects/torch_engine.ts`). Plain data; the launch itself is the
 * effect layer's.
 *
 * @module
 */
import * as t from "io-ts";
import {
  type ext,
  field,
  NonNegativeInt,
  ON_BY_DEFAULT,
  oneOf,
  optional,
  PositiveInt,
  type Section,
  section,
} from "../base/mod.ts";

/** Training engines: TensorFlow.js in this process, or PyTorch launched per stage. */
export const ENGINES = ["tfjs", "torch"] as const;
/** An engine name. */
export type EngineName = typeof ENGINES[number];
/** Codec of an engine name. */
export const EngineCodec: ext.Type<EngineName, EngineName, unknown> = oneOf("engine", ENGINES);

/** How the ranks of one node start: `torchrun`, or one process per rank started here. */
export const LAUNCHERS = ["auto", "torchrun", "spawn"] as const;

/** The fields of {@link TorchCodec}, each with its codec and default. */
export const TORCH_FIELDS = {
  /** Processes (ranks) per node. */
  nproc: field(PositiveInt, 1),
  /** Nodes taking part (every node runs `deno task run` with its own `nodeRank`). */
  nnodes: field(PositiveInt, 1),
  /** This node's number among the `nnodes`, from 0 (node 0 holds the rendezvous). */
  nodeRank: field(NonNegativeInt, 0),
  /** `host:port` of node 0's rendezvous (torchrun's --master-addr/--master-port); unset: 127.0.0.1 and a free port, on one node. */
  master: optional(t.string),
  /** Where the ranks hold the model: the CPU or one CUDA device per rank. */
  device: field(oneOf("device", ["cpu", "cuda"]), "cpu"),
  /** Data parallelism: DDP (a full copy per rank) or FSDP (parameters sharded across ranks). */
  strategy: field(oneOf("strategy", ["ddp", "fsdp"]), "ddp"),
  /** `bf16`: autocast to bfloat16 with float32 weights, gradients and moments. */
  precision: field(oneOf("precision", ["fp32", "bf16"]), "fp32"),
  /**
   * The Python interpreter that imports torch (unset: of the repository's `.venv-ref/bin/python`,
   * `python3` and `/usr/bin/python3`, the one with the newest torch, at least 1.13).
   */
  python: optional(t.string),
  /**
   * `auto`: own spawn on one node, `torchrun` across nodes with PyTorch ≥ 2 (spawn with 1.x:
   * Debian's 1.13 torchrun fails at start);
   * `spawn` across nodes starts this node's ranks with RANK = nodeRank·nproc + local rank and
   * rendezvous at `master`, as torchrun's static rendezvous does.
   */
  launcher: field(oneOf("launcher", LAUNCHERS), "auto"),
  /** CPU threads per rank (unset: the machine's cores over nproc; at most the cores). */
  threads: optional(PositiveInt),
  /**
   * On the CPU (Linux), each rank bound to cores of its own when this node's ranks × threads take
   * every core the process may use: a rank's helper threads then take time from that rank only,
   * and no rank migrates. Fewer ranks or threads than cores, one rank, or `false`: the OS places
   * them.
   */
  pinCores: ON_BY_DEFAULT,
};
/** The `training.torch:` section: by default one CPU process, DDP, float32. */
export const TorchCodec: Section<typeof TORCH_FIELDS> = section("training.torch", TORCH_FIELDS);
/** The `training.torch:` settings. */
export type TorchSettings = ext.TypeOf<typeof TorchCodec>;

/** Ranks in all: nproc × nnodes. */
export function worldSize(s: TorchSettings): number {
  return s.nproc * s.nnodes;
}

/** Options of {@link torchProblem}. */
export interface TorchProblemOptions {
  /**
   * Logical cores of the machine that launches the ranks. Given only where the ranks start
   * (the run's wiring): a config planned on a laptop for a larger node is not judged by the laptop.
   */
  readonly cores?: number;
}

/**
 * Problems a codec cannot see: a node rank outside the nodes, several nodes without a master,
 * a global batch the ranks cannot share evenly (`sequences` rows per optimizer step), and, when
 * `options.cores` names the machine that starts the ranks, more threads per rank than it has cores.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import { TorchCodec, torchProblem } from "./torch_settings.ts";
 * const settings = (doc: object) => E.getOrElseW(() => assert.fail("not decoded"))(TorchCodec.decode(doc));
 * assert(torchProblem(settings({ threads: 2 }), 4, { cores: 2 }) === undefined);
 * assert(torchProblem(settings({ threads: 100000 }), 4, { cores: 2 })?.field === "threads");
 * ```
 */
export function torchProblem(
  s: TorchSettings,
  sequences: number,
  options: TorchProblemOptions = {},
): { readonly field: string; readonly message: string } | undefined {
  const cores = options.cores;
  // More threads than cores buys no speed: 100000 made torch start thousands of threads that
  // spun without progress, so the bound is the machine, not the codec's "positive".
  if (s.threads !== undefined && cores !== undefined && s.threads > cores) {
    return {
      field: "threads",
      message: `${s.threads} threads per rank exceed this machine's ${cores} cores: give at most ` +
        `${cores} (or leave it out: cores / nproc)`,
    };
  }
  if (s.nodeRank >= s.nnodes) {
    return { field: "nodeRank", message: `${s.nodeRank} is not below nnodes = ${s.nnodes}` };
  }
  if (s.nnodes > 1 && s.master === undefined) {
    return { field: "master", message: `${s.nnodes} nodes need node 0's address as host:port` };
  }
  if (s.master !== undefined && !/^[^\s:]+:\d{1,5}$/.test(s.master)) {
    return { field: "master", message: `"${s.master}" is not host:port` };
  }
  const world = worldSize(s);
  if (sequences % world !== 0) {
    return {
      field: "nproc",
      message: `${world} ranks cannot share a step's ${sequences} sequences evenly ` +
        "(batchTokens / seqLen must be a multiple of nproc × nnodes)",
    };
  }
  return undefined;
}
