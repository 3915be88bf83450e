import { assertEquals, assertStringIncludes } from "../tests/assert.ts";
import type { RunMetric } from "../pipeline/mod.ts";
import { runDirLog } from "./run_dir.ts";
import { tensorboardLog } from "./tensorboard_log.ts";

const GROW: RunMetric = { type: "grow", node: "s2.grow", add: 1, layers: 3, globalStep: 12 };

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("tensorboardLog() names a later session's file after the earlier ones, even in the same second", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const options = { print: () => {}, host: "box", now: () => 1_700_000_000_500 };
    for (let i = 0; i < 3; i++) tensorboardLog(dir, options).record(GROW);
    assertEquals(names(dir), [
      "events.out.tfevents.1700000000.box",
      "events.out.tfevents.1700000001.box",
      "events.out.tfevents.1700000002.box",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tensorboardLog() writes nothing until a record or a resumption comes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    tensorboardLog(`${dir}/tensorboard`, { print: () => {} });
    assertEquals(names(dir), []);
    tensorboardLog(`${dir}/tensorboard`, { print: () => {} }).resumed([], []);
    assertEquals(names(`${dir}/tensorboard`).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runDirLog() with tensorboard: a failed event write is one warning; metrics.jsonl has every record", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A file where the event folder should be: every event write fails.
    await Deno.writeTextFile(`${dir}/tensorboard`, "in the way");
    const lines: string[] = [];
    const log = runDirLog(dir, (l) => lines.push(l), { tensorboard: true });
    log.metric(GROW);
    log.metric({ ...GROW, globalStep: 24 });
    const metrics = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n");
    assertEquals(metrics.map((l) => JSON.parse(l).globalStep), [12, 24]);
    assertEquals(lines.length, 1);
    assertStringIncludes(lines[0]!, "Warning: TensorBoard events are not written from here on");
    assertStringIncludes(lines[0]!, `${dir}/tensorboard`);
    assertStringIncludes(lines[0]!, "the run goes on, and metrics.jsonl has every record");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runDirLog() without tensorboard writes no event folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    runDirLog(dir, () => {}).metric(GROW);
    runDirLog(dir, () => {}, { tensorboard: false }).metric(GROW);
    assertEquals(names(dir), ["metrics.jsonl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
