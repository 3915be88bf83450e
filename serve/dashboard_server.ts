/**
 * The dashboard's HTTP server (`Deno.serve`, loopback by default): the page and its two
 * assets, and JSON endpoints that read the served folders through `serve/`'s readers. Every
 * path a request names goes through `resolveServed`, so a name outside the folders is a 404
 * like any unknown one. It never writes: the folders are opened for reading only.
 *
 * ```
 * GET /                          the page
 * GET /static/<asset>            its script and style
 * GET /api/list                  every run and comparison, with status
 * GET /api/run/<id>              a run's page data
 * GET /api/events/<id>?from=N    a run's live updates from byte N of its log (server-sent events)
 * GET /api/comparison/<id>       a comparison's page data
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown, type ext, type IoFailed, ioFailed } from "../base/mod.ts";
import { COMPARE_DIR, readCompareView } from "./compare_view.ts";
import { readGraph } from "./graph_view.ts";
import { RUN_DIR } from "../checkpoint/mod.ts";
import { type EventTiming, runEvents } from "./run_events.ts";
import { folderKind, listServed } from "./run_listing.ts";
import { readRunView } from "./run_view.ts";
import { resolveServed, type ServedRoot, servedRoots } from "./served_path.ts";

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** The folders to serve (each must exist). */
  readonly dirs: readonly string[];
  /** The port; 0 picks a free one. */
  readonly port: number;
  /** The address to bind (default `127.0.0.1`: the runs are the user's, not the network's). */
  readonly hostname?: string;
  /** How often live streams read a log (default 500 ms) and check status (every 10th read). */
  readonly timing?: EventTiming;
}

/** A running dashboard. */
export interface Dashboard {
  /** Its address, e.g. `http://127.0.0.1:8080/`. */
  readonly url: string;
  /** Ends every live stream, then stops the server. */
  close(): Promise<void>;
}

const ASSETS: Readonly<Record<string, string>> = {
  "/": "index.html",
  "/static/dashboard.js": "dashboard.js",
  "/static/dashboard.css": "dashboard.css",
};

const TYPES: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

function notFound(): Response {
  return new Response("Not found\n", { status: 404, headers: { "content-type": "text/plain" } });
}

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), {
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/** The page's files, read once at start. */
async function readAssets(): Promise<ext.Either<IoFailed, Map<string, Response>>> {
  const assets = new Map<string, Response>();
  for (const [route, file] of Object.entries(ASSETS)) {
    const url = new URL(`./static/${file}`, import.meta.url);
    try {
      const text = await Deno.readTextFile(url);
      assets.set(
        route,
        new Response(text, { headers: { "content-type": TYPES[file.split(".").pop()!]! } }),
      );
    } catch (e) {
      return E.left(
        ioFailed(url.pathname, `cannot read the dashboard's page: ${describeUnknown(e)}`),
      );
    }
  }
  return E.right(assets);
}

/**
 * The graph file of a comparison's run, while the run's own `pipeline.yaml` is not written:
 * `DIR/graphs/<run>.yaml` when `dir` is `DIR/runs/<run>` of a comparison inside the same served
 * folder.
 */
async function comparisonGraphFile(root: ServedRoot, dir: string): Promise<string | undefined> {
  const parts = dir.split("/");
  const run = parts.at(-1);
  const comparison = parts.slice(0, -2).join("/");
  if (parts.at(-2) !== COMPARE_DIR.runs || run === undefined) return undefined;
  if (comparison !== root.real && !comparison.startsWith(`${root.real}/`)) return undefined;
  return (await folderKind(comparison)) === "comparison"
    ? `${comparison}/${COMPARE_DIR.graphs}/${run}.yaml`
    : undefined;
}

/**
 * Starts the dashboard; a folder that cannot be served, a missing page file or a port that
 * cannot be bound is an `IoFailed`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startDashboard } from "./dashboard_server.ts";
 * const dir = await Deno.makeTempDir();
 * const d = await startDashboard({ dirs: [dir], port: 0 });
 * assert(d._tag === "Right");
 * const list = await (await fetch(`${d.right.url}api/list`)).json();
 * assert.deepEqual(list.runs, []);
 * await d.right.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function startDashboard(
  o: DashboardOptions,
): Promise<ext.Either<IoFailed, Dashboard>> {
  const roots = await servedRoots(o.dirs);
  if (E.isLeft(roots)) return roots;
  const assets = await readAssets();
  if (E.isLeft(assets)) return assets;
  const timing = o.timing ?? { pollMs: 500, statusEvery: 10 };
  const streams = new Set<() => void>();
  const rootOf = (id: string) => roots.right[Number(id.split("/")[0])]!;

  const handle = async (req: Request): Promise<Response> => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const url = new URL(req.url);
    const page = assets.right.get(url.pathname);
    if (page !== undefined) return page.clone();
    if (url.pathname === "/api/list") {
      return json({ roots: roots.right.map((r) => r.given), runs: await listServed(roots.right) });
    }
    const route = /^\/api\/(run|events|comparison)\/(.+)$/.exec(url.pathname);
    if (route === null) return notFound();
    const [, what, id] = route as unknown as [string, string, string];
    const dir = await resolveServed(roots.right, id);
    if (dir === undefined) return notFound();
    const kind = await folderKind(dir);
    // Segments were decoded once already by resolveServed, so this cannot throw.
    const name = decodeURIComponent(id.split("/").slice(1).join("/")) || rootOf(id).given;
    if (what === "comparison") {
      return kind === "comparison" ? json(await readCompareView(dir, name)) : notFound();
    }
    if (kind !== "run") return notFound();
    const graphFile = await comparisonGraphFile(rootOf(id), dir);
    if (what === "run") return json(await readRunView(dir, name, graphFile));
    const from = Number(url.searchParams.get("from") ?? "0");
    if (!Number.isSafeInteger(from) || from < 0) {
      return new Response(
        `Bad request: from must be a byte offset, got "${url.searchParams.get("from")}"\n`,
        {
          status: 400,
        },
      );
    }
    let graph = await readGraph(`${dir}/${RUN_DIR.pipeline}`);
    if (graph === undefined && graphFile !== undefined) graph = await readGraph(graphFile);
    const compute = graph !== undefined && E.isRight(graph) ? graph.right.compute : undefined;
    const events = runEvents(dir, compute, from, timing, () => streams.delete(events.close));
    streams.add(events.close);
    return new Response(events.body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
  };

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: o.hostname ?? "127.0.0.1",
      port: o.port,
      onListen: () => {},
      onError: (e) => new Response(`Internal error: ${describeUnknown(e)}\n`, { status: 500 }),
    }, handle);
  } catch (e) {
    return E.left(
      ioFailed(`${o.hostname ?? "127.0.0.1"}:${o.port}`, `cannot listen: ${describeUnknown(e)}`),
    );
  }
  const addr = server.addr;
  return E.right({
    url: `http://${addr.hostname}:${addr.port}/`,
    close: async () => {
      for (const close of [...streams]) close();
      await server.shutdown();
    },
  });
}
