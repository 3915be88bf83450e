/**
 * Launching the PyTorch trainer (`torch_engine/trainer.py`) for one stage and talking to it.
 *
 * The ranks of this node start with `torchrun` (`python -m torch.distributed.run`), or — on one
 * node, and wherever Debian's 1.13 torchrun would fail at start (`../shared/design/TORCH-NOTES.md`;
 * {@link usesTorchrun}) — one process per rank started here with the variables torchrun would set (RANK, LOCAL_RANK,
 * WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Local rank 0 connects back to a TCP
 * port this process listens on (loopback) and speaks JSON lines (`torch_protocol.ts`): a `ready`
 * line, then one reply per command, each decoded by its codec. The trainer checks every command
 * against the protocol's schema, which the launch writes first. A rank that dies fails the
 * pending command with the tail of its stderr, and the other ranks are stopped.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type * as t from "io-ts";
import {
  type ConfigInvalid,
  configInvalid,
  describeUnknown,
  type KernelFailed,
  kernelFailed,
} from "../base/mod.ts";
import { type TorchSettings, worldSize } from "../pipeline/mod.ts";
import {
  commandSchema,
  decodeReply,
  EXIT_COMMAND,
  ProbeReplyCodec,
  ReadyReplyCodec,
  REPLIES,
  type ReplyTo,
  type Request,
} from "./torch_protocol.ts";

/** The trainer script, beside this project's TypeScript. */
export const TRAINER_SCRIPT = new URL("../torch_engine/trainer.py", import.meta.url).pathname;

/**
 * The reference environment `tools/reference_env.sh` creates in this repository (PyTorch 2.13,
 * pinned); tried first when `training.torch.python` is unset.
 */
export const REFERENCE_PYTHON = new URL("../.venv-ref/bin/python", import.meta.url).pathname;

/**
 * Interpreters tried when `training.torch.python` is unset. Of those that import torch and
 * NumPy, the newest torch wins (ties: the first listed), so PyTorch 2.x (the reference
 * environment, or one `pip` put on PATH) is preferred over Debian's 1.13 at /usr/bin/python3.
 */
export const PYTHON_CANDIDATES = [REFERENCE_PYTHON, "python3", "/usr/bin/python3"] as const;

const INSTALL_HINT = "install PyTorch (`tools/reference_env.sh` makes .venv-ref with PyTorch " +
  "2.13; or `pip install torch==2.13.0`; Debian: `apt-get install -y python3-torch`, which is " +
  "1.13, without FSDP) and name the interpreter that imports it in training.torch.python";

/** What the interpreter found: its path, torch's version and what that torch can do. */
export interface TorchPython {
  readonly python: string;
  readonly version: string;
  /** `torch.cuda.device_count()` (0 without CUDA). */
  readonly cudaDevices: number;
  /** Whether `torch.distributed.fsdp.fully_shard` imports (PyTorch ≥ 2.6). */
  readonly fsdp: boolean;
}

const PROBE = `import json, torch, numpy
try:
    from torch.distributed.fsdp import fully_shard
    fsdp = True
except Exception:
    fsdp = False
print(json.dumps({"version": torch.__version__, "fsdp": fsdp,
                  "cudaDevices": torch.cuda.device_count() if torch.cuda.is_available() else 0}))`;

async function probe(python: string): Promise<TorchPython | undefined> {
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", PROBE],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    const found = ProbeReplyCodec.decode(JSON.parse(new TextDecoder().decode(out.stdout)));
    if (E.isLeft(found)) return undefined;
    const { version, cudaDevices, fsdp } = found.right;
    return { python, version, cudaDevices, fsdp };
  } catch {
    return undefined;
  }
}

/**
 * A torch version string (`2.13.0+cpu`, `1.13.0a0`) as [major, minor], or undefined when it
 * does not start with two numbers.
 */
export function torchRelease(version: string): readonly [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

/** The oldest torch the engine runs on (Debian 12's python3-torch is 1.13). */
export const OLDEST_TORCH: readonly [number, number] = [1, 13];

/**
 * Of the interpreters that answered, the one with the newest torch (the first listed among
 * equals); an unreadable version ranks last.
 */
export function newestTorch(found: readonly TorchPython[]): TorchPython | undefined {
  const rank = (f: TorchPython) => {
    const r = torchRelease(f.version);
    return r === undefined ? -1 : r[0] * 1000 + r[1];
  };
  return found.reduce<TorchPython | undefined>(
    (best, f) => best === undefined || rank(f) > rank(best) ? f : best,
    undefined,
  );
}

/**
 * The interpreter that imports torch: the configured one, else the candidate with the newest
 * torch ({@link PYTHON_CANDIDATES}, probed together). None is `ConfigInvalid` at
 * `training.engine` (or `training.torch.python`) saying what to install; a torch older than
 * {@link OLDEST_TORCH} is refused the same way, naming its version.
 */
export async function findTorchPython(
  configured: string | undefined,
  candidates: readonly string[] = PYTHON_CANDIDATES,
): Promise<E.Either<ConfigInvalid, TorchPython>> {
  const tried = configured === undefined ? candidates : [configured];
  const field = configured === undefined ? "training.engine" : "training.torch.python";
  const probed = await Promise.all(tried.map(probe));
  const best = newestTorch(probed.filter((f): f is TorchPython => f !== undefined));
  if (best === undefined) {
    return E.left(configInvalid(
      field,
      `the torch engine needs PyTorch and NumPy, and ${
        tried.join(", ")
      } cannot import them: ${INSTALL_HINT}`,
    ));
  }
  const release = torchRelease(best.version);
  if (
    release === undefined || release[0] < OLDEST_TORCH[0] ||
    (release[0] === OLDEST_TORCH[0] && release[1] < OLDEST_TORCH[1])
  ) {
    return E.left(configInvalid(
      field,
      `${best.python} has torch ${best.version}; the torch engine needs PyTorch ≥ ` +
        `${OLDEST_TORCH.join(".")} (≥ 2.6 for strategy fsdp): ${INSTALL_HINT}`,
    ));
  }
  return E.right(best);
}

/** What the settings ask of torch that this interpreter's torch cannot give, before any launch. */
export function torchCapabilityProblem(
  s: TorchSettings,
  found: TorchPython,
): ConfigInvalid | undefined {
  if (s.strategy === "fsdp" && !found.fsdp) {
    return configInvalid(
      "training.torch.strategy",
      `fsdp needs PyTorch ≥ 2.6 (torch.distributed.fsdp.fully_shard); ${found.python} has torch ` +
        `${found.version}, where it does not import: use ddp, or an interpreter with a newer torch`,
    );
  }
  if (s.device === "cuda" && found.cudaDevices < s.nproc) {
    return configInvalid(
      "training.torch.device",
      `cuda with nproc ${s.nproc} needs ${s.nproc} CUDA device(s); torch ${found.version} in ` +
        `${found.python} sees ${found.cudaDevices}`,
    );
  }
  return undefined;
}

/** One stage's launch: what to start from and where. */
export interface LaunchSpec {
  readonly python: string;
  /** That interpreter's `torch.__version__` (`auto` picks the launcher by it). */
  readonly torchVersion: string;
  readonly settings: TorchSettings;
  /** Exchange directory the ranks load. */
  readonly init: string;
  /** Where the launch writes the protocol's schema, which the trainer checks commands against. */
  readonly schema: string;
  /** Token files (`torch_data.ts`). */
  readonly data: string;
  /** CPU threads per rank. */
  readonly threads: number;
}

/** A live launch: commands in, replies out. */
export interface TorchSession {
  /**
   * Sends one command at once and resolves to its decoded reply (or a rank's death); several may
   * be in flight: replies are matched to commands in order, and once one fails every later one
   * fails with the same error. Never rejects.
   */
  request<C extends Request>(command: C): Promise<E.Either<KernelFailed, ReplyTo<C["op"]>>>;
  /** Asks the ranks to exit and waits for them (killing any that linger). */
  close(): Promise<void>;
}

/** The first port the OS hands out to sockets bound to port 0 (Linux's default when unreadable). */
function ephemeralStart(): number {
  try {
    const first = Number(
      Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").split(/\s+/)[0],
    );
    return Number.isInteger(first) && first > 10_000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * A free port for torchrun's rendezvous, below the OS's ephemeral range: a port from that range,
 * free when checked, could be handed to another socket bound to port 0 (the orchestrators' own
 * control listeners) before torchrun binds it, which then fails with EADDRINUSE.
 */
export function freeMasterPort(): number {
  const top = ephemeralStart();
  const span = top - 10_000;
  for (let i = 0; i < 200; i++) {
    const port = 10_000 + (Deno.pid * 7_919 + i * 131) % span;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // taken: try the next
    }
  }
  throw new Error(`No free port between 10000 and ${top} for torchrun's rendezvous`);
}

/**
 * Whether this node's ranks start through `torchrun` (`python -m torch.distributed.run`):
 * `launcher: torchrun`, or `auto` across nodes with PyTorch ≥ 2 (Debian's 1.13 torchrun fails
 * at start on Python 3.11, so `auto` spawns there, with torchrun's static-rendezvous variables).
 * On one node `auto` spawns: the same ranks, without torchrun's agent process.
 */
export function usesTorchrun(s: TorchSettings, torchVersion: string): boolean {
  if (s.launcher !== "auto") return s.launcher === "torchrun";
  return s.nnodes > 1 && (torchRelease(torchVersion)?.[0] ?? 0) >= 2;
}

/** The argument vectors of this node's ranks: one torchrun, or one process per rank. */
export function launchCommands(
  spec: LaunchSpec,
  control: string,
  master: { readonly host: string; readonly port: number },
): { readonly args: string[]; readonly env: Record<string, string> }[] {
  const s = spec.settings;
  const trainerArgs = [
    TRAINER_SCRIPT,
    "--init",
    spec.init,
    "--data",
    spec.data,
    "--control",
    control,
    "--protocol",
    spec.schema,
    "--device",
    s.device,
    "--strategy",
    s.strategy,
    "--precision",
    s.precision,
    "--threads",
    String(spec.threads),
    ...(s.pinCores ? ["--pin-cores"] : []),
  ];
  const common = { OMP_NUM_THREADS: String(spec.threads), PYTHONUNBUFFERED: "1" };
  if (usesTorchrun(s, spec.torchVersion)) {
    return [{
      args: [
        "-m",
        "torch.distributed.run",
        `--nnodes=${s.nnodes}`,
        `--node_rank=${s.nodeRank}`,
        `--nproc_per_node=${s.nproc}`,
        `--master_addr=${master.host}`,
        `--master_port=${master.port}`,
        ...trainerArgs,
      ],
      env: common,
    }];
  }
  return Array.from({ length: s.nproc }, (_, local) => ({
    args: trainerArgs,
    env: {
      ...common,
      RANK: String(s.nodeRank * s.nproc + local),
      LOCAL_RANK: String(local),
      WORLD_SIZE: String(worldSize(s)),
      LOCAL_WORLD_SIZE: String(s.nproc),
      MASTER_ADDR: master.host,
      MASTER_PORT: String(master.port),
    },
  }));
}

/** Lines of a byte stream, as they arrive. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl = rest.indexOf("\n");
    while (nl >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      nl = rest.indexOf("\n");
    }
  }
  if (rest !== "") yield rest;
}

/** The last lines of a rank's stderr, kept for messages. */
class Tail {
  private kept: string[] = [];
  constructor(private readonly limit = 30) {}
  push(line: string): void {
    this.kept.push(line);
    if (this.kept.length > this.limit) this.kept.shift();
  }
  text(): string {
    return this.kept.join("\n");
  }
}

const READY_TIMEOUT_MS = 300_000;

/** Starts this node's ranks of a stage and waits until local rank 0 is ready. */
export async function startSession(
  spec: LaunchSpec,
): Promise<E.Either<KernelFailed, TorchSession>> {
  try {
    await Deno.writeTextFile(spec.schema, JSON.stringify(commandSchema(), null, 1) + "\n");
  } catch (e) {
    return E.left(
      kernelFailed(`Cannot write the protocol's schema ${spec.schema}: ${describeUnknown(e)}`),
    );
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const control = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const m = spec.settings.master;
  const master = m === undefined
    ? { host: "127.0.0.1", port: freeMasterPort() }
    : { host: m.slice(0, m.lastIndexOf(":")), port: Number(m.slice(m.lastIndexOf(":") + 1)) };
  const tail = new Tail();
  const children: Deno.ChildProcess[] = [];
  const drains: Promise<void>[] = [];
  try {
    for (const c of launchCommands(spec, control, master)) {
      const child = new Deno.Command(spec.python, {
        args: c.args,
        env: c.env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      children.push(child);
      for (const s of [child.stdout, child.stderr]) {
        drains.push(
          (async () => {
            for await (const l of lines(s)) tail.push(l);
          })().catch(() => {}),
        );
      }
    }
  } catch (e) {
    listener.close();
    for (const c of children) killQuietly(c);
    return E.left(kernelFailed(`Cannot start ${spec.python}: ${describeUnknown(e)}`));
  }
  // The first rank to exit, with its status (every rank should live until `exit`).
  const died = Promise.race(children.map((c) => c.status.then((s) => ({ child: c, status: s }))));
  // The ranks' last output, waited for at most 2 s (a wedged pipe must not hang the run).
  const drained = () =>
    Promise.race([Promise.all(drains), new Promise((r) => setTimeout(r, 2000))]);
  const failure = async (what: string): Promise<KernelFailed> => {
    await drained();
    return kernelFailed(
      `${what}${tail.text() === "" ? "" : `\n--- trainer output ---\n${tail.text()}`}`,
    );
  };
  const stopAll = async () => {
    for (const c of children) killQuietly(c);
    await Promise.all(children.map((c) => c.status));
    await drained();
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const accepted = await Promise.race([
    listener.accept().then((conn) => ({ conn })),
    died.then((d) => ({ died: d.status.code })),
    new Promise<{ timeout: true }>((r) => {
      timer = setTimeout(() => r({ timeout: true }), READY_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  listener.close();
  if (!("conn" in accepted)) {
    const why = "died" in accepted
      ? `a trainer process exited with status ${accepted.died} before it was ready`
      : `no trainer connected within ${READY_TIMEOUT_MS / 1000} s`;
    const err = await failure(`PyTorch launch failed: ${why}`);
    await stopAll();
    return E.left(err);
  }
  const conn = accepted.conn;
  const incoming = lines(conn.readable);
  const writer = conn.writable.getWriter();
  const encoder = new TextEncoder();
  let broken: KernelFailed | undefined;
  const stopped = (what: string, code: number | "unknown"): string =>
    `PyTorch trainer stopped during ${what} (a rank exited, status ${code})`;
  // The socket may close before a rank's exit is seen: wait a moment for the status.
  const exitStatus = async (): Promise<number | "unknown"> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await Promise.race([
      died.then((d) => d.status.code),
      new Promise<"unknown">((r) => {
        timer = setTimeout(() => r("unknown"), 5_000);
      }),
    ]);
    clearTimeout(timer);
    return code;
  };
  const receive = async <A>(
    what: string,
    codec: t.Type<A, unknown, unknown>,
  ): Promise<E.Either<KernelFailed, A>> => {
    if (broken !== undefined) return E.left(broken);
    const next = await Promise.race([
      incoming.next().then(
        (r) => ({ line: r.done ? undefined : r.value }),
        // A rank killed mid-reply resets the connection: that is the trainer stopping too.
        () => ({ line: undefined }),
      ),
      died.then((d) => ({ exited: d.status.code })),
    ]);
    if ("exited" in next || next.line === undefined) {
      const code = "exited" in next ? next.exited : await exitStatus();
      broken = await failure(stopped(what, code));
      await stopAll();
      return E.left(broken);
    }
    const got = decodeReply(next.line, codec, what);
    if (E.isLeft(got)) return got;
    if (got.right.kind === "failed") {
      broken = await failure(`PyTorch trainer failed during ${what}: ${got.right.error}`);
      await stopAll();
      return E.left(broken);
    }
    return E.right(got.right.reply);
  };
  const ready = await receive("start-up", ReadyReplyCodec);
  if (E.isLeft(ready)) {
    await closeQuietly(writer, conn);
    return ready;
  }
  let closed = false;
  // Replies come back in the order the commands went out, so each request reads the line after
  // the one its predecessor reads: requests may be sent without waiting for earlier replies.
  let lastReply: Promise<unknown> = Promise.resolve();
  return E.right({
    request: <C extends Request>(
      command: C,
    ): Promise<E.Either<KernelFailed, ReplyTo<C["op"]>>> => {
      if (closed) return Promise.resolve(E.left(kernelFailed("PyTorch session already closed")));
      const what = `"${command.op}"`;
      // Written at once (a stream's writes keep their order); a write that fails is reported
      // in this command's turn, after the replies to the commands before it.
      const written = writer.write(encoder.encode(JSON.stringify(command) + "\n")).then(
        () => undefined,
        (e: unknown) => e,
      );
      const codec = REPLIES[command.op] as t.Type<ReplyTo<C["op"]>, unknown, unknown>;
      const reply = lastReply.then(async (): Promise<E.Either<KernelFailed, ReplyTo<C["op"]>>> => {
        const error = await written;
        if (error !== undefined && broken === undefined) {
          // A write fails once the trainer's end is closed: a rank that died is the cause to name.
          const code = await exitStatus();
          broken = await failure(
            code === "unknown"
              ? `Cannot reach the PyTorch trainer: ${describeUnknown(error)}`
              : stopped(what, code),
          );
          await stopAll();
        }
        return await receive(what, codec);
      }).catch((e: unknown) => E.left(kernelFailed(`${what}: ${describeUnknown(e)}`)));
      lastReply = reply;
      return reply;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await writer.write(encoder.encode(JSON.stringify(EXIT_COMMAND) + "\n"));
      } catch {
        // Already gone: the status below says so.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        Promise.all(children.map((c) => c.status)).then(() => "exited" as const),
        new Promise<"lingering">((r) => {
          timer = setTimeout(() => r("lingering"), 30_000);
        }),
      ]);
      clearTimeout(timer);
      if (outcome === "lingering") await stopAll();
      await closeQuietly(writer, conn);
      await drained();
    },
  });
}

function killQuietly(c: Deno.ChildProcess): void {
  try {
    c.kill("SIGKILL");
  } catch {
    // Already exited.
  }
}

async function closeQuietly(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  conn: Deno.Conn,
): Promise<void> {
  try {
    await writer.close();
  } catch {
    // The peer closed first.
  }
  try {
    conn.close();
  } catch {
    // Already closed with the writer.
  }
}
