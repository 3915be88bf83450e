import { assertEquals } from "../tests/assert.ts";
import * as E from "fp-ts/lib/Either.js";
import type * as t from "io-ts";
import { TorchCodec } from "../pipeline/mod.ts";
import {
  launchCommands,
  newestTorch,
  torchRelease,
  TRAINER_SCRIPT,
  usesTorchrun,
} from "./torch_launch.ts";

const spec = (settings: t.OutputOf<typeof TorchCodec>, torchVersion = "2.13.0+cpu") => ({
  python: "python3",
  torchVersion,
  settings: E.getOrElseW((): never => {
    throw new Error("the test's settings do not decode");
  })(TorchCodec.decode(settings)),
  init: "/run/torch/exchange/in",
  schema: "/run/torch/protocol.schema.json",
  data: "/run/torch/data",
  threads: 4,
});
const master = { host: "10.0.0.1", port: 29500 };

Deno.test("launchCommands: spawn starts one process per local rank with torchrun's variables", () => {
  const cmds = launchCommands(
    spec({ nproc: 2, nnodes: 3, nodeRank: 2, launcher: "spawn" }),
    "127.0.0.1:7",
    master,
  );
  assertEquals(cmds.length, 2);
  assertEquals(cmds.map((c) => [c.env.RANK, c.env.LOCAL_RANK, c.env.WORLD_SIZE]), [
    ["4", "0", "6"],
    ["5", "1", "6"],
  ]);
  assertEquals(cmds[0]!.env.MASTER_ADDR, "10.0.0.1");
  assertEquals(cmds[0]!.env.MASTER_PORT, "29500");
  assertEquals(cmds[0]!.args[0], TRAINER_SCRIPT);
  assertEquals(
    cmds[0]!.args.slice(cmds[0]!.args.indexOf("--control"), cmds[0]!.args.indexOf("--control") + 2),
    [
      "--control",
      "127.0.0.1:7",
    ],
  );
});

Deno.test("launchCommands: several nodes go through one torchrun per node (auto)", () => {
  const cmds = launchCommands(
    spec({ nproc: 8, nnodes: 2, nodeRank: 1, device: "cuda", strategy: "fsdp" }),
    "127.0.0.1:7",
    master,
  );
  assertEquals(cmds.length, 1);
  const args = cmds[0]!.args;
  assertEquals(args.slice(0, 7), [
    "-m",
    "torch.distributed.run",
    "--nnodes=2",
    "--node_rank=1",
    "--nproc_per_node=8",
    "--master_addr=10.0.0.1",
    "--master_port=29500",
  ]);
  assertEquals(args[7], TRAINER_SCRIPT);
  const missing = [
    "--device",
    "cuda",
    "--strategy",
    "fsdp",
    "--threads",
    "4",
    "--protocol",
    "/run/torch/protocol.schema.json",
  ].filter((f) => !args.includes(f));
  assertEquals(missing, []);
  assertEquals(cmds[0]!.env.RANK, undefined); // torchrun sets the ranks itself
});

Deno.test("launchCommands: auto spawns across nodes on torch 1.x, whose torchrun fails at start", () => {
  const settings = { nproc: 2, nnodes: 2, nodeRank: 1 };
  const old = launchCommands(spec(settings, "1.13.0a0"), "127.0.0.1:7", master);
  assertEquals(old.map((c) => [c.args[0], c.env.RANK]), [[TRAINER_SCRIPT, "2"], [
    TRAINER_SCRIPT,
    "3",
  ]]);
  const explicit = launchCommands(
    spec({ ...settings, launcher: "torchrun" }, "1.13.0a0"),
    "127.0.0.1:7",
    master,
  );
  assertEquals(explicit[0]!.args.slice(0, 2), ["-m", "torch.distributed.run"]);
  // One node: auto spawns whatever the version; torchrun only when asked for.
  const decode = (doc: t.OutputOf<typeof TorchCodec>) => spec(doc).settings;
  const torchrun = (doc: t.OutputOf<typeof TorchCodec>) => usesTorchrun(decode(doc), "2.13.0");
  assertEquals(
    [
      { nproc: 2 },
      { nproc: 2, launcher: "torchrun" as const },
      { nnodes: 2, master: "h:1" },
      { nnodes: 2, master: "h:1", launcher: "spawn" as const },
    ].map(torchrun),
    [false, true, true, false],
  );
});

Deno.test("torchRelease and newestTorch: the newest torch wins, the first listed among equals", () => {
  assertEquals(torchRelease("2.13.0+cpu"), [2, 13]);
  assertEquals(torchRelease("1.13.0a0"), [1, 13]);
  assertEquals(torchRelease("2.9.1"), [2, 9]);
  assertEquals(torchRelease("nightly"), undefined);
  const found = (python: string, version: string) => ({
    python,
    version,
    cudaDevices: 0,
    fsdp: version.startsWith("2"),
  });
  const debian = found("/usr/bin/python3", "1.13.0a0");
  const ref = found(".venv-ref/bin/python", "2.13.0+cpu");
  const nine = found("python3", "2.9.1");
  assertEquals(newestTorch([debian, nine, ref])?.python, ".venv-ref/bin/python");
  assertEquals(newestTorch([nine, debian])?.python, "python3");
  assertEquals(newestTorch([ref, found("same", "2.13.0")])?.python, ".venv-ref/bin/python");
  assertEquals(newestTorch([found("odd", "nightly"), debian])?.python, "/usr/bin/python3");
  assertEquals(newestTorch([]), undefined);
});

Deno.test("launchCommands: pinCores (the default) asks the trainer to bind its ranks; false does not", () => {
  const has = (s: t.OutputOf<typeof TorchCodec>) =>
    launchCommands(spec(s), "127.0.0.1:7", master).every((c) => c.args.includes("--pin-cores"));
  assertEquals([has({ nproc: 2 }), has({ nproc: 2, pinCores: false })], [true, false]);
});

Deno.test({
  name:
    "trainer.py's rank_cores: ranks that take every allowed core get their own, in order; otherwise the OS places them",
  // The function is read out of trainer.py and run alone (the module imports torch), so any
  // python3 runs it.
  fn: async () => {
    const source = await Deno.readTextFile(TRAINER_SCRIPT);
    const start = source.indexOf("def rank_cores(");
    const end = source.indexOf("\ndef ", start + 1);
    const script = `${source.slice(start, end)}
import json
cases = [([0, 1], 0, 2, 1), ([0, 1], 1, 2, 1), ([3, 2, 1, 0], 1, 2, 2), ([4, 6, 5, 7], 0, 4, 1),
         ([0, 1], 0, 1, 2), ([0, 1, 2], 0, 2, 1), ([0, 1, 2, 3], 1, 2, 1), ([0, 1], 0, 2, 0)]
print(json.dumps([rank_cores(*c) for c in cases]))
`;
    const out = await new Deno.Command("python3", { args: ["-c", script], stderr: "piped" })
      .output();
    assertEquals(new TextDecoder().decode(out.stderr), "");
    assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), [
      [0],
      [1],
      [2, 3],
      [4],
      null, // one rank
      null, // 2 × 1 of 3 cores: not every core
      null, // 2 × 1 of 4 cores
      null, // no thread count
    ]);
  },
});
