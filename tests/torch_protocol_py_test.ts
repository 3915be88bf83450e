/**
 * The torch trainer's command check (`torch_engine/protocol.py`, standard library only) against
 * the codecs it is derived from (`effects/torch_protocol.ts`): it accepts every command the
 * torch engine builds, refuses a malformed one with a message naming the field, and agrees with
 * io-ts's verdict on each case. Needs only a `python3` (CI has one), not torch or NumPy.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { withDefaults } from "../base/mod.ts";
import { type MicroBatch, stepHyper, TrainingCodec } from "../pipeline/mod.ts";
import {
  type Command,
  CommandCodec,
  commandSchema,
  evalCommand,
  EXIT_COMMAND,
  loadCommand,
  resetCommand,
  saveCommand,
  stepCommand,
} from "../effects/torch_protocol.ts";

const TORCH_ENGINE = new URL("../torch_engine", import.meta.url).pathname;
const CANDIDATES = ["python3", "/usr/bin/python3"];

async function findPython(): Promise<string | undefined> {
  for (const python of CANDIDATES) {
    try {
      const out = await new Deno.Command(python, { args: ["-c", "import json"], stderr: "null" })
        .output();
      if (out.success) return python;
    } catch {
      // Not installed.
    }
  }
  return undefined;
}

const PYTHON = await findPython();
if (PYTHON === undefined) {
  console.warn(`protocol.py checks skipped: none of ${CANDIDATES.join(", ")} runs`);
}

/** Python's verdict on each value: null when accepted, else the refusal's message. */
async function pythonVerdicts(schema: unknown, values: readonly unknown[]): Promise<unknown[]> {
  const dir = await Deno.makeTempDir({ prefix: "step-protocol-" });
  try {
    const file = `${dir}/protocol.schema.json`;
    await Deno.writeTextFile(file, JSON.stringify(schema));
    const child = new Deno.Command(PYTHON!, {
      args: [
        "-c",
        `import json, sys; sys.path.insert(0, ${JSON.stringify(TORCH_ENGINE)})
from protocol import CommandRefused, check_command, load_schema
schema = load_schema(sys.argv[1])
out = []
for value in json.load(sys.stdin):
    try:
        check_command(schema, value)
        out.append(None)
    except CommandRefused as e:
        out.append(str(e))
print(json.dumps(out))`,
        file,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(JSON.stringify(values)));
    await writer.close();
    const out = await child.output();
    const err = new TextDecoder().decode(out.stderr);
    if (!out.success) throw new Error(err);
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const HYPER = stepHyper(withDefaults(TrainingCodec, {}), 2.5e-3);
const WINDOWS: MicroBatch = {
  tokens: new Int32Array(6),
  targets: new Int32Array(6),
  batch: 2,
  seq: 3,
  window: { split: "train", starts: [0, 17] },
};
const IDS: MicroBatch = {
  tokens: Int32Array.from([5, 6, 7, 0, 0, 0]),
  targets: Int32Array.from([6, 7, 8, -1, -1, -1]),
  batch: 2,
  seq: 3,
};

/** One of each command the engine sends, built by the functions the engine builds them with. */
const EMITTED: readonly Command[] = [
  stepCommand(HYPER, [WINDOWS, WINDOWS]),
  stepCommand({ ...HYPER, recompute: "layers", lossChunk: 64 }, [IDS]),
  evalCommand([{ ...WINDOWS, window: { split: "validation", starts: [3, 9] } }]),
  evalCommand([IDS]),
  evalCommand([]),
  resetCommand({ pruneRatio: 0.99, seed: 4242424242 }),
  saveCommand("/run/torch/exchange/out"),
  loadCommand("/run/torch/exchange/in"),
  EXIT_COMMAND,
];

const step = stepCommand(HYPER, [WINDOWS]);
/** Malformed commands, each with the field its refusal must name. */
const MALFORMED: readonly { readonly field: string; readonly value: unknown }[] = [
  { field: "hyper.clip", value: { ...step, hyper: { ...HYPER, clip: "1.0" } } },
  { field: "hyper.clip", value: { ...step, hyper: { ...HYPER, clip: null } } },
  { field: "hyper.beta1", value: { ...step, hyper: { ...HYPER, beta1: undefined } } },
  { field: "hyper.clipNorm", value: { ...step, hyper: { ...HYPER, clipNorm: 1 } } },
  { field: "hyper.recompute", value: { ...step, hyper: { ...HYPER, recompute: "all" } } },
  { field: "hyper.lossChunk", value: { ...step, hyper: { ...HYPER, lossChunk: 1.5 } } },
  { field: "hyper", value: { ...step, hyper: undefined } },
  { field: "microBatch", value: { ...step, microBatch: true } },
  {
    field: "batches[0].starts[1]",
    value: { ...step, batches: [{ ...step.batches[0], starts: [0, -4] }] },
  },
  {
    field: "batches[0].split",
    value: { ...step, batches: [{ ...step.batches[0], split: "test" }] },
  },
  {
    field: "batches[0].targets[1]",
    value: {
      ...evalCommand([IDS]),
      batches: [{ ...evalCommand([IDS]).batches[0], targets: [1, "x"] }],
    },
  },
  { field: "op", value: { ...step, op: "train" } },
  { field: "op", value: { dir: "/tmp" } },
  { field: "seed", value: resetCommand({ pruneRatio: 0.5, seed: -1 }) },
  { field: "pruneRatio", value: { op: "reset", seed: 3 } },
  { field: "dir", value: { op: "save", dir: 7 } },
  { field: "force", value: { op: "exit", force: true } },
];

Deno.test({
  name: "protocol.py accepts every command the torch engine builds, as io-ts does",
  ignore: PYTHON === undefined,
  fn: async () => {
    const wire = EMITTED.map((c) => JSON.parse(JSON.stringify(c)));
    for (const c of wire) assert(E.isRight(CommandCodec.decode(c)), `io-ts refuses ${c.op}`);
    assertEquals(await pythonVerdicts(commandSchema(), wire), wire.map(() => null));
  },
});

Deno.test({
  name: "protocol.py refuses a malformed command naming the field, where io-ts refuses it too",
  ignore: PYTHON === undefined,
  fn: async () => {
    const wire = MALFORMED.map((m) => JSON.parse(JSON.stringify(m.value)));
    const verdicts = await pythonVerdicts(commandSchema(), wire);
    for (const [i, m] of MALFORMED.entries()) {
      const message = verdicts[i];
      assert(typeof message === "string", `case ${i} (${m.field}) was accepted`);
      assertStringIncludes(message, `${m.field}: `, `case ${i}`);
      assert(
        E.isLeft(CommandCodec.decode(wire[i])),
        `case ${i}: io-ts accepts what Python refuses`,
      );
    }
  },
});

Deno.test({
  name: "protocol.py refuses a schema with a keyword it does not understand",
  ignore: PYTHON === undefined,
  fn: async () => {
    const drifted = { ...commandSchema(), pattern: "^s" };
    const refused = await pythonVerdicts(drifted, []).then(() => undefined, (e: Error) => e);
    assert(refused !== undefined, "a schema with `pattern` was loaded");
    assertStringIncludes(refused.message, "['pattern'] are not understood");
  },
});

Deno.test("stepHyper() takes only the step's fields from the settings; stepCommand() sends them as they are", () => {
  assert(stepCommand(HYPER, [WINDOWS]).hyper === HYPER);
  assertEquals(Object.keys(HYPER).sort(), [
    "beta1",
    "beta2",
    "clip",
    "eps",
    "lr",
    "recompute",
    "weightDecay",
  ]);
});
