import { assertEquals } from "../tests/assert.ts";
import * as E from "fp-ts/lib/Either.js";
import type * as t from "io-ts";
import { TorchCodec } from "../pipeline/mod.ts";
import { launchCommands, TRAINER_SCRIPT } from "./torch_launch.ts";

const spec = (settings: t.OutputOf<typeof TorchCodec>) => ({
  python: "python3",
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
