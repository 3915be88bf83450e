/**
 * The dashboard's server, over HTTP on a free port: paths outside the served folders are 404
 * however they are spelt, damaged files are shown as problems while the server goes on, status
 * is read from the lock, the report and the log, live events carry appended lines, nothing is
 * ever written into a served folder, and `deno task serve` refuses bad flags.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { type Dashboard, startDashboard } from "../serve/mod.ts";
import { lockDir } from "../store/mod.ts";
import { main as serveMain } from "../cli/serve.ts";
import { capture } from "./cli_capture.ts";
import {
  skippedTrainLine,
  trainLine,
  writeComparison,
  writeFinishedRun,
  writeRunningRun,
} from "./serve_fixture.ts";

async function withDashboard(
  dirs: (tmp: string) => Promise<string[]>,
  body: (d: Dashboard, tmp: string) => Promise<void>,
): Promise<void> {
  const tmp = await Deno.makeTempDir();
  try {
    const d = await startDashboard({
      dirs: await dirs(tmp),
      port: 0,
      timing: { pollMs: 50, statusEvery: 2 },
    });
    if (d._tag === "Left") throw new Error(d.left.message);
    try {
      await body(d.right, tmp);
    } finally {
      await d.right.close();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The status code of a request sent byte for byte, so no client tidies `..` away first. */
async function rawStatus(base: string, target: string): Promise<number> {
  const port = Number(new URL(base).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      chunks.push(buf.slice(0, n));
    }
    const head = new TextDecoder().decode(chunks[0] ?? new Uint8Array());
    return Number(head.split(" ")[1]);
  } finally {
    conn.close();
  }
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const r = await fetch(url);
  assertEquals(r.status, 200, url);
  return await r.json();
}

Deno.test("dashboard answers 404 for every path that leaves its folders, however spelt", () =>
  withDashboard(async (tmp) => {
    await writeFinishedRun(`${tmp}/served/run`);
    await writeFinishedRun(`${tmp}/secret`);
    await Deno.symlink(`${tmp}/secret`, `${tmp}/served/link-out`);
    await Deno.symlink(`${tmp}/served/run`, `${tmp}/served/link-in`);
    return [`${tmp}/served`];
  }, async (d, tmp) => {
    // The same server does answer for what it serves, so a 404 below is a refusal.
    assertEquals(await rawStatus(d.url, "/api/run/0/run"), 200);
    assertEquals(await rawStatus(d.url, "/api/run/0/link-in"), 200);
    const refused = [
      "/api/run/0/run/../../secret",
      "/api/run/0/../secret",
      "/api/run/0/%2e%2e/secret",
      "/api/run/0/run/%2E%2E/%2e%2e/secret",
      "/api/run/0/..%2Fsecret",
      "/api/run/0/%2F..%2Fsecret",
      `/api/run/${encodeURIComponent(`${tmp}/secret`)}`,
      `/api/run/0/${encodeURIComponent(`${tmp}/secret`)}`,
      `/api/run/0/${tmp}/secret`,
      `/api/run/0//${tmp}/secret`,
      "/api/run/0/link-out",
      "/api/events/0/link-out",
      "/api/comparison/0/link-out",
      "/api/run/1/run",
      "/api/run/-0/run",
      "/api/run/0/run%00",
      "/api/run/0/%zz",
      "/api/run/0/nothing-here",
      "/../secret/metrics.jsonl",
      "/static/../../secret/metrics.jsonl",
    ];
    for (const target of refused) assertEquals(await rawStatus(d.url, target), 404, target);
  }));

Deno.test("dashboard shows damaged and half-written files as problems and goes on serving", () =>
  withDashboard(async (tmp) => {
    await writeFinishedRun(`${tmp}/r`);
    const good = await Deno.readTextFile(`${tmp}/r/metrics.jsonl`);
    const lines = good.split("\n");
    // Line 3 damaged, and a last line without its newline: a writer in the middle of it.
    lines.splice(2, 1, '{"type":"train","node":');
    await Deno.writeTextFile(`${tmp}/r/metrics.jsonl`, `${lines.join("\n")}{"type":"tr`);
    await Deno.writeTextFile(`${tmp}/r/report.json`, "[1, 2");
    await Deno.writeTextFile(`${tmp}/r/eval.json`, '"a string"');
    await Deno.writeTextFile(`${tmp}/r/pipeline.yaml`, "nodes: [ {op: train");
    await Deno.mkdir(`${tmp}/r/checkpoint`);
    await Deno.writeTextFile(`${tmp}/r/checkpoint/state.json`, '{"progress": {}}');
    return [tmp];
  }, async (d) => {
    const v = await getJson(`${d.url}api/run/0/r`);
    const problems = v.problems as { file: string; message: string }[];
    const byFile = Object.fromEntries(problems.map((p) => [p.file, p.message]));
    assertStringIncludes(byFile["metrics.jsonl"] ?? "", "line 3 is not JSON");
    assertStringIncludes(byFile["report.json"] ?? "", "not valid JSON");
    assertEquals(byFile["eval.json"], "not a JSON object");
    assertStringIncludes(byFile["pipeline.yaml"] ?? "", "not valid YAML");
    assertStringIncludes(byFile["checkpoint/state.json"] ?? "", "meta");
    assertEquals(problems.length, 5);
    // Every complete good line is there: the damaged one and the half-written one are not.
    assertEquals((v.records as unknown[]).length, 36);
    assertEquals(v.graph, null);
    // Its report exists, damaged or not: the run reached its end.
    assertEquals((v.status as { status: string }).status, "finished");
    assertEquals((await fetch(`${d.url}api/list`)).status, 200);
  }));

Deno.test("dashboard status: running while a process holds the lock, finished, failed, stopped", () =>
  withDashboard(async (tmp) => {
    await writeFinishedRun(`${tmp}/finished`);
    await writeRunningRun(`${tmp}/running`);
    await writeRunningRun(`${tmp}/failed`);
    await Deno.writeTextFile(`${tmp}/failed/metrics.jsonl`, skippedTrainLine(13), {
      append: true,
    });
    await writeRunningRun(`${tmp}/stopped`);
    await Deno.mkdir(`${tmp}/stopped/checkpoint`);
    // A lock left by a process that died is no longer held: stopped, not running.
    await Deno.writeTextFile(`${tmp}/stopped/.lock`, "999999999\n");
    await writeComparison(`${tmp}/cmp`);
    return [tmp];
  }, async (d, tmp) => {
    const held = await lockDir(`${tmp}/running`, "run");
    if (held._tag === "Left") throw new Error(held.left.message);
    try {
      const list = await getJson(`${d.url}api/list`);
      const runs = list.runs as { path: string; kind: string; status: { status: string } }[];
      const status = Object.fromEntries(
        runs.map((r) => [r.path.slice(tmp.length + 1), r.status.status]),
      );
      assertEquals(status, {
        "cmp": "finished",
        "cmp/runs/galore-s0": "finished",
        "cmp/runs/relora-s0": "finished",
        "cmp/runs/standard-s0": "finished",
        "cmp/runs/step-2-s0": "finished",
        "cmp/runs/step-3-s0": "finished",
        "failed": "failed",
        "finished": "finished",
        "running": "running",
        "stopped": "stopped",
      });
      const running = await getJson(`${d.url}api/run/0/running`);
      assertEquals((running.status as { detail: string }).detail, `pid ${Deno.pid} holds its lock`);
    } finally {
      held.right.release();
    }
    const after = await getJson(`${d.url}api/run/0/running`);
    assertEquals((after.status as { status: string }).status, "stopped");
  }));

/** Reads server-sent events from `body` until `done` says it has what it waits for. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  done: (events: { event: string; data: unknown }[]) => boolean,
): Promise<{ event: string; data: unknown }[]> {
  const events: { event: string; data: unknown }[] = [];
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    while (!done(events)) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      text += value;
      const blocks = text.split("\n\n");
      text = blocks.pop() ?? "";
      for (const b of blocks) {
        const event = /^event: (.*)$/m.exec(b)?.[1] ?? "";
        const data = /^data: (.*)$/m.exec(b)?.[1];
        if (data !== undefined) events.push({ event, data: JSON.parse(data) });
      }
    }
  } finally {
    await reader.cancel();
  }
  return events;
}

Deno.test("dashboard's live events carry a line appended to the log, placed on every axis", () =>
  withDashboard(async (tmp) => {
    await writeComparison(`${tmp}/cmp`);
    await writeRunningRun(`${tmp}/cmp/runs/step-2-s0`);
    await Deno.remove(`${tmp}/cmp/runs/step-2-s0/report.json`);
    return [tmp];
  }, async (d, tmp) => {
    const view = await getJson(`${d.url}api/run/0/cmp/runs/step-2-s0`);
    // The run has no pipeline.yaml yet: its comparison's graph file places it on FLOPs.
    assertEquals(
      (view.graph as { file: string }).file,
      `${await Deno.realPath(tmp)}/cmp/graphs/step-2-s0.yaml`,
    );
    const offset = view.metricsOffset as number;
    const r = await fetch(`${d.url}api/events/0/cmp/runs/step-2-s0?from=${offset}`);
    assertEquals(r.headers.get("content-type"), "text/event-stream");
    const log = `${tmp}/cmp/runs/step-2-s0/metrics.jsonl`;
    await Deno.writeTextFile(log, trainLine(13, 3.5).slice(0, 20), { append: true });
    setTimeout(() => Deno.writeTextFile(log, trainLine(13, 3.5).slice(20), { append: true }), 200);
    const events = await readEvents(r.body!, (es) => es.some((e) => e.event === "records"));
    const records = events.find((e) => e.event === "records")!.data as {
      records: { globalStep: number; at: { tokens: number; flopsPaper: number } }[];
    };
    assertEquals(records.records.map((x) => x.globalStep), [13]);
    assertEquals(records.records[0]!.at.tokens, 13 * 256);
    assert(records.records[0]!.at.flopsPaper > 0);
    assertEquals(
      (events.find((e) => e.event === "status")?.data as { status: string }).status,
      "stopped",
    );
    assertEquals((await fetch(`${d.url}api/events/0/cmp/runs/step-2-s0?from=-1`)).status, 400);
  }));

Deno.test("dashboard.close() ends the live streams still open", () =>
  withDashboard(async (tmp) => {
    await writeRunningRun(`${tmp}/r`);
    return [tmp];
  }, async (d) => {
    const r = await fetch(`${d.url}api/events/0/r`);
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    // The first event sends the whole log; close only after it came (closing earlier may end
    // the stream before its first read, which is fine but not what this test is about).
    let text = "";
    while (!text.includes("\n\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const first = /^data: (.*)$/m.exec(text.split("\n\n")[0] ?? "")?.[1];
    assertEquals((JSON.parse(first ?? "{}") as { records?: unknown[] }).records?.length, 12);
    await d.close();
    // Then the stream ends from the server's side, within a few seconds.
    const ENDED = "ended";
    const STILL_OPEN = "still open";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      (async () => {
        while (!(await reader.read()).done) { /* later events, if any */ }
        return ENDED;
      })(),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve(STILL_OPEN), 5000)),
    ]);
    const ended = outcome === ENDED;
    clearTimeout(timer);
    if (!ended) await reader.cancel();
    assert(ended, "the live stream stayed open after close()");
  }));

Deno.test("dashboard's comparison: every method's losses on both FLOPs axes, the report, memory", () =>
  withDashboard(async (tmp) => {
    await writeComparison(`${tmp}/cmp`);
    return [`${tmp}/cmp`];
  }, async (d) => {
    const v = await getJson(`${d.url}api/comparison/0`);
    const runs = v.runs as {
      method: string;
      points: { flopsPaper: number; flopsExecuted: number }[];
    }[];
    assertEquals(runs.map((r) => r.method).sort(), [
      "galore",
      "relora",
      "standard",
      "step-2",
      "step-3",
    ]);
    for (const r of runs) {
      assertEquals(r.points.length, 3);
      assert(r.points.every((p) => p.flopsExecuted > p.flopsPaper && p.flopsPaper > 0));
    }
    assertEquals((v.rows as unknown[]).length, 5);
    assertStringIncludes(v.memorySvg as string, "<svg");
    assertEquals(v.accounting, "paper");
    // A comparison is not a run, and a run is not a comparison.
    assertEquals((await fetch(`${d.url}api/run/0`)).status, 404);
    assertEquals((await fetch(`${d.url}api/comparison/0/runs/relora-s0`)).status, 404);
    assertEquals((await fetch(`${d.url}api/run/0/runs/relora-s0`)).status, 200);
    assertEquals((await fetch(`${d.url}api/list`, { method: "POST" })).status, 405);
  }));

/** Every file under `dir` with its size and modification time. */
async function snapshot(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const path = rel === "" ? e.name : `${rel}/${e.name}`;
    const st = await Deno.lstat(`${dir}/${path}`);
    out.push(`${path} ${st.size} ${st.mtime?.getTime()}`);
    if (e.isDirectory) out.push(...await snapshot(dir, path));
  }
  return out.sort();
}

Deno.test("dashboard writes nothing into the folders it serves", () =>
  withDashboard(async (tmp) => {
    await writeFinishedRun(`${tmp}/r`);
    await writeRunningRun(`${tmp}/live`);
    await writeComparison(`${tmp}/cmp`);
    return [tmp];
  }, async (d, tmp) => {
    const before = await snapshot(tmp);
    for (const path of ["", "api/list", "api/run/0/r", "api/run/0/live", "api/comparison/0/cmp"]) {
      await (await fetch(`${d.url}${path}`)).arrayBuffer();
    }
    const r = await fetch(`${d.url}api/events/0/live`);
    await readEvents(r.body!, (es) => es.some((e) => e.event === "status"));
    assertEquals(await snapshot(tmp), before);
  }));

Deno.test("deno task serve: --help, and bad flags, ports and folders refused with their exit codes", async () => {
  const help = await capture(serveMain, ["--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.out, "Usage: deno task serve [DIR …] [--port N]");
  const cases: [string[], number, string][] = [
    [["--port", "x"], 2, `--port: expected an integer ≥ 0, got "x"`],
    [["--port", "70000"], 2, "--port: expected a port from 0 to 65535, got 70000"],
    [["--colour"], 2, "Unknown option '--colour'"],
    [["/no/such/runs"], 4, `Cannot use "/no/such/runs": cannot serve it`],
  ];
  for (const [args, code, message] of cases) {
    const got = await capture(serveMain, args);
    assertEquals(got.code, code, args.join(" "));
    assertStringIncludes(got.err, message);
  }
});
