/**
 * The `training.torch:` section: how the torch engine launches PyTorch for each
 * `train`/`continue` node (`effects/torch_engine.ts`). Plain data; the launch itself is the
 * effect layer's.
 *
 * @module
 */
import * as t from "io-ts";
import { NonNegativeInt, oneOf, PositiveInt, strict } from "../base/mod.ts";

/** Training engines: TensorFlow.js in this process, or PyTorch launched per stage. */
export const ENGINES = ["tfjs", "torch"] as const;
/** An engine name. */
export type EngineName = typeof ENGINES[number];
/** Codec of an engine name. */
export const EngineCodec = oneOf("engine", ENGINES);

/** How the ranks of one node start: `torchrun`, or one process per rank started here. */
export const LAUNCHERS = ["auto", "torchrun", "spawn"] as const;

/** Codec of the `training.torch:` section. */
export const TorchCodec = strict("training.torch", {}, {
  /** Processes (ranks) per node. */
  nproc: PositiveInt,
  /** Nodes taking part (every node runs `deno task run` with its own `nodeRank`). */
  nnodes: PositiveInt,
  nodeRank: NonNegativeInt,
  /** `host:port` of node 0's rendezvous (torchrun's --master-addr/--master-port). */
  master: t.string,
  device: oneOf("device", ["cpu", "cuda"]),
  strategy: oneOf("strategy", ["ddp", "fsdp"]),
  /** `bf16`: autocast to bfloat16 with float32 weights, gradients and moments. */
  precision: oneOf("precision", ["fp32", "bf16"]),
  /** The Python interpreter that imports torch (default: the first of python3, /usr/bin/python3 that does). */
  python: t.string,
  /**
   * `auto`: own spawn on one node (Debian's torchrun is broken), `torchrun` across nodes;
   * `spawn` across nodes starts this node's ranks with RANK = nodeRank·nproc + local rank and
   * rendezvous at `master`, as torchrun's static rendezvous does.
   */
  launcher: oneOf("launcher", LAUNCHERS),
  /** CPU threads per rank (default: the machine's cores over nproc; at most the cores). */
  threads: PositiveInt,
});

/** The `training.torch:` section with defaults applied. */
export interface TorchSettings {
  readonly nproc: number;
  readonly nnodes: number;
  readonly nodeRank: number;
  /** Unset: 127.0.0.1 and a free port, on one node. */
  readonly master: string | undefined;
  readonly device: "cpu" | "cuda";
  readonly strategy: "ddp" | "fsdp";
  readonly precision: "fp32" | "bf16";
  readonly python: string | undefined;
  readonly launcher: typeof LAUNCHERS[number];
  readonly threads: number | undefined;
}

/** Defaults: one CPU process, DDP, float32. */
export const TORCH_DEFAULTS: TorchSettings = {
  nproc: 1,
  nnodes: 1,
  nodeRank: 0,
  master: undefined,
  device: "cpu",
  strategy: "ddp",
  precision: "fp32",
  python: undefined,
  launcher: "auto",
  threads: undefined,
};

/** The section with defaults applied. */
export function torchSettings(input: Partial<TorchSettings> | undefined): TorchSettings {
  return { ...TORCH_DEFAULTS, ...input };
}

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
 * import { torchProblem, torchSettings } from "./torch_settings.ts";
 * assert(torchProblem(torchSettings({ threads: 2 }), 4, { cores: 2 }) === undefined);
 * assert(torchProblem(torchSettings({ threads: 100000 }), 4, { cores: 2 })?.field === "threads");
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
