/**
 * Runs the PyTorch peer (bench/peer_torch.py) from the benchmark, in the same
 * invocation, so ratios compare runs under the same machine load. The peer
 * is a yardstick, not part of the product.
 *
 * @module
 */

/** One shape as the peer measured it. */
export interface PeerRow {
  readonly shape: number[];
  readonly tokensPerSec: number;
  readonly stepMs: number;
  readonly loss: number;
}

/** What the peer reported, or why it did not run. */
export type PeerResult =
  | {
    readonly ran: true;
    readonly torch: string;
    readonly threads: number;
    /** Environment set for the peer's run (see {@link peerEnv}). */
    readonly env: Record<string, string>;
    readonly rows: PeerRow[];
  }
  | { readonly ran: false; readonly reason: string };

/** Options of {@link runPeer}. */
export interface PeerOptions {
  /** Python interpreter; default {@link defaultPeerPython}. */
  readonly python?: string;
  readonly steps: number;
  /** Untimed steps before them. */
  readonly warmup: number;
  readonly threads: number;
  /** Extra environment for the peer. */
  readonly env: Record<string, string>;
}

/**
 * The environment that lets PyTorch run at its best here, unless the user set
 * these already: OpenBLAS on the kernels our own loader picked (`core`, e.g.
 * SkylakeX: Debian's OpenBLAS 0.3.21 misdetects this CPU, bench/NOTES.md §1),
 * and OMP_WAIT_POLICY=PASSIVE so that torch's idle OpenMP threads sleep
 * instead of spinning on the cores OpenBLAS's threads need (3–5× on a step
 * here). `stock` leaves the environment alone.
 */
export function peerEnv(core: string | undefined, stock: boolean): Record<string, string> {
  if (stock) return {};
  const env: Record<string, string> = {};
  if (Deno.env.get("OMP_WAIT_POLICY") === undefined) env.OMP_WAIT_POLICY = "PASSIVE";
  if (core !== undefined && core !== "unknown" && Deno.env.get("OPENBLAS_CORETYPE") === undefined) {
    env.OPENBLAS_CORETYPE = core;
  }
  return env;
}

/**
 * The peer's interpreter: `STEP_PEER_PYTHON`, else the reference environment's PyTorch 2.13
 * (`.venv-ref/`, made by tools/reference_env.sh), else /usr/bin/python3 (Debian's torch 1.13).
 * The table's header names the torch version that ran.
 */
export function defaultPeerPython(): string {
  const set = Deno.env.get("STEP_PEER_PYTHON");
  if (set !== undefined) return set;
  const venv = new URL("../.venv-ref/bin/python", import.meta.url).pathname;
  try {
    Deno.statSync(venv);
    return venv;
  } catch {
    return "/usr/bin/python3";
  }
}

/** A peer script's JSON, or why it did not run (never throws). */
export type PeerOutput =
  | { readonly ran: true; readonly json: unknown }
  | { readonly ran: false; readonly reason: string };

/**
 * Runs `script` (a file in bench/) with `args` on `python` and `env`, parsing its stdout as JSON.
 * Exit status 2 means torch is missing (the script says so on stderr).
 */
export async function runPeerScript(
  script: string,
  args: readonly string[],
  options: { readonly python?: string; readonly env: Record<string, string> },
): Promise<PeerOutput> {
  const python = options.python ?? defaultPeerPython();
  const path = new URL(`./${script}`, import.meta.url).pathname;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(python, {
      args: [path, ...args],
      env: options.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e: unknown) {
    return { ran: false, reason: `cannot run ${python}: ${e instanceof Error ? e.message : e}` };
  }
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (out.code === 2) return { ran: false, reason: stderr || "torch is not installed" };
  if (!out.success) {
    return { ran: false, reason: `${script} failed: ${stderr.split("\n").slice(-1)[0]}` };
  }
  try {
    return { ran: true, json: JSON.parse(new TextDecoder().decode(out.stdout)) };
  } catch {
    return { ran: false, reason: `${script} printed no JSON` };
  }
}

/**
 * Runs `command` with `args` (and `env` on top of this process's), for a bench side that must
 * run: its stdout's last line and its wall time; throws, naming `what` with its exit status and
 * the end of its stderr, when it fails.
 */
export async function runOrThrow(
  what: string,
  command: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ readonly lastLine: string; readonly seconds: number }> {
  const start = performance.now();
  const out = await new Deno.Command(command, {
    args: [...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  if (!out.success) {
    throw new Error(
      `${what} failed (status ${out.code}): ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  return {
    lastLine: new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "",
    seconds,
  };
}

/**
 * Runs bench/peer_torch.py on `shapes`; never throws (a missing interpreter or
 * torch comes back as `ran: false` with the reason).
 *
 * @example
 * ```ts
 * import { runPeer } from "./peer.ts";
 * const r = await runPeer([[64, 1, 128, 16, 2]], { steps: 1, warmup: 1, threads: 2, env: {} });
 * console.log(r.ran ? r.rows[0]?.tokensPerSec : r.reason);
 * ```
 */
export async function runPeer(
  shapes: readonly (readonly number[])[],
  options: PeerOptions,
): Promise<PeerResult> {
  const out = await runPeerScript("peer_torch.py", [
    "--shapes",
    shapes.map((s) => s.join(",")).join(";"),
    "--steps",
    String(options.steps),
    "--warmup",
    String(options.warmup),
    "--threads",
    String(options.threads),
  ], { ...(options.python !== undefined ? { python: options.python } : {}), env: options.env });
  if (!out.ran) return out;
  const parsed = out.json as { torch: string; threads: number; results: PeerRow[] };
  return {
    ran: true,
    torch: parsed.torch,
    threads: parsed.threads,
    env: options.env,
    rows: parsed.results,
  };
}
