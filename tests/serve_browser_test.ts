/**
 * The dashboard in a real browser: Debian's `chromium`, headless, driven by puppeteer-core. The
 * list shows a finished and a running run, a line appended to the running run's log reaches its
 * chart within seconds, the comparison page shows every method, runs chosen on the list share
 * one chart, and each page's screenshot is a PNG that is not blank. Skipped, with a note,
 * where chromium is not installed (`apt-get install chromium`; CI installs it).
 *
 * @module
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { assert, assertEquals } from "./assert.ts";
import { type Dashboard, startDashboard } from "../serve/mod.ts";
import { lockDir } from "../store/mod.ts";
import {
  METHODS,
  trainLine,
  writeComparison,
  writeFinishedRun,
  writeRunningRun,
} from "./serve_fixture.ts";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (CHROMIUM === undefined) {
  console.log("chromium is not installed: the dashboard's browser tests are skipped");
}

// Appended lines are read every 500 ms, the server's default: the test waits as a user would.
const LIVE_WITHIN_MS = 5000;

interface Scene {
  readonly dashboard: Dashboard;
  readonly page: Page;
  readonly tmp: string;
}

async function withBrowser(body: (s: Scene) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir();
  await writeFinishedRun(`${tmp}/runs/finished`);
  await writeRunningRun(`${tmp}/runs/running`);
  await writeComparison(`${tmp}/runs/smoke`);
  const lock = await lockDir(`${tmp}/runs/running`, "run");
  if (lock._tag === "Left") throw new Error(lock.left.message);
  const d = await startDashboard({ dirs: [`${tmp}/runs`], port: 0 });
  if (d._tag === "Left") throw new Error(d.left.message);
  let browser: Browser | undefined;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM!,
      headless: true,
      // Root in a container has no user namespace for chromium's sandbox.
      args: ["--no-sandbox", "--disable-gpu"],
    });
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 900 });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await body({ dashboard: d.right, page, tmp });
    assertEquals(errors, []);
  } finally {
    await browser?.close();
    await d.right.close();
    lock.right.release();
    await Deno.remove(tmp, { recursive: true });
  }
}

/**
 * Writes a full-page screenshot under the test's folder and checks it is a PNG that is not
 * blank: decoded in the page, its pixels hold many colours and no one colour covers nearly all.
 */
async function screenshotNotBlank(s: Scene, name: string): Promise<void> {
  const path = `${s.tmp}/${name}.png`;
  await s.page.screenshot({ path, fullPage: true });
  const png = await Deno.readFile(path);
  assertEquals([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], `${name}.png is a PNG`);
  const base64 = btoa(Array.from(png, (b) => String.fromCharCode(b)).join(""));
  // Run in the page, where the browser's own PNG decoder reads the file back.
  const { colours, commonest } = await s.page.evaluate(`(async () => {
    const img = new Image();
    img.src = "data:image/png;base64,${base64}";
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, img.width, img.height).data;
    const counts = new Map();
    for (let i = 0; i < px.length; i += 4) {
      const c = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    return { colours: counts.size, commonest: Math.max(...counts.values()) / (px.length / 4) };
  })()`) as { colours: number; commonest: number };
  assert(colours >= 16, `${name}.png has ${colours} colours`);
  assert(commonest < 0.97, `${name}.png is ${(commonest * 100).toFixed(1)}% one colour`);
}

async function open(s: Scene, hash: string, ready: string): Promise<void> {
  await s.page.goto(`${s.dashboard.url}${hash}`);
  await s.page.waitForSelector(ready, { timeout: 10_000 });
}

Deno.test({
  name: "dashboard in chromium: the list shows a finished run and a running one",
  ignore: CHROMIUM === undefined,
  fn: () =>
    withBrowser(async (s) => {
      await open(s, "#/", "#run-list");
      const rows = await s.page.$$eval(
        "#run-list tr[data-path]",
        (trs) => trs.map((tr) => [tr.getAttribute("data-path"), tr.getAttribute("data-status")]),
      );
      const status = Object.fromEntries(rows.map(([p, st]) => [p!.split("/runs/").pop(), st]));
      assertEquals(status.finished, "finished");
      assertEquals(status.running, "running");
      assertEquals(status.smoke, "finished");
      await screenshotNotBlank(s, "list");
    }),
});

Deno.test({
  name: "dashboard in chromium: a line appended to a running run's metrics.jsonl reaches its chart",
  ignore: CHROMIUM === undefined,
  fn: () =>
    withBrowser(async (s) => {
      await open(s, "#/run/0/running", "#loss-chart");
      const lastStep = () => s.page.$eval("#loss-chart", (el) => el.getAttribute("data-last-step"));
      assertEquals(await lastStep(), "12");
      assertEquals(await s.page.$eval(".status", (el) => el.textContent), "running");
      const appended = Date.now();
      await Deno.writeTextFile(`${s.tmp}/runs/running/metrics.jsonl`, trainLine(13, 3.7), {
        append: true,
      });
      await s.page.waitForFunction(
        `document.querySelector("#loss-chart")?.dataset.lastStep === "13"`,
        { timeout: LIVE_WITHIN_MS },
      );
      console.log(`appended line on the chart after ${Date.now() - appended} ms`);
      await screenshotNotBlank(s, "running-run");
    }),
});

Deno.test({
  name: "dashboard in chromium: a finished run's stage graph, markers, memory and evaluation",
  ignore: CHROMIUM === undefined,
  fn: () =>
    withBrowser(async (s) => {
      await open(s, "#/run/0/finished", "#loss-chart");
      const nodes = await s.page.$$eval("#stage-graph .node", (els) =>
        els.map((e) => e.getAttribute("data-node")));
      assertEquals(nodes, ["s1.train", "s2.grow", "s2.pet", "s2.continue"]);
      const chart = await s.page.$eval("#loss-chart", (el) => ({
        merges: el.getAttribute("data-merges"),
        skipped: el.getAttribute("data-skipped"),
        lastStep: el.getAttribute("data-last-step"),
      }));
      assertEquals([chart.merges, chart.skipped, chart.lastStep], ["1", "1", "30"]);
      assertEquals(
        await s.page.$$eval("#memory table tr", (trs) =>
          trs.length),
        3,
      );
      assertEquals(await s.page.$$eval("#evaluation table tr", (trs) => trs.length), 3);
      // The FLOPs axis exists because the graph is known; choosing it redraws the chart.
      await s.page.select("#x-axis", "flopsExecuted");
      assert(
        (await s.page.$eval("#loss-chart", (el) => el.textContent))?.includes("executed matmuls"),
      );
      await s.page.click("#log-scale");
      assert((await s.page.$eval("#loss-chart", (el) => el.textContent))?.includes("log scale"));
      await screenshotNotBlank(s, "finished-run");
    }),
});

Deno.test({
  name: "dashboard in chromium: the comparison page shows every method",
  ignore: CHROMIUM === undefined,
  fn: () =>
    withBrowser(async (s) => {
      await open(s, "#/comparison/0/smoke", "#compare-chart");
      const methods = await s.page.$eval("#compare-chart", (el) => el.getAttribute("data-methods"));
      assertEquals(methods?.split(",").sort(), [...METHODS].sort());
      const legend = await s.page.$eval("#compare-chart", (el) => el.textContent ?? "");
      for (const m of METHODS) assert(legend.includes(`${m} s0`), `${m} in the legend`);
      assertEquals(await s.page.$$eval("#zero-shot tr", (trs) => trs.length), 1 + METHODS.length);
      assert(await s.page.$("#compare-memory svg"));
      await screenshotNotBlank(s, "comparison");
    }),
});

Deno.test({
  name: "dashboard in chromium: runs ticked on the list are drawn on one chart",
  ignore: CHROMIUM === undefined,
  fn: () =>
    withBrowser(async (s) => {
      await open(s, "#/", "#run-list");
      await s.page.click('input[data-id="0/finished"]');
      await s.page.click('input[data-id="0/running"]');
      await s.page.click("#draw-selected");
      await s.page.waitForSelector("#many-chart", { timeout: 10_000 });
      assertEquals(
        await s.page.$eval("#many-chart", (el) => el.getAttribute("data-runs")),
        "2",
      );
      const text = await s.page.$eval("#many-chart", (el) => el.textContent ?? "");
      assert(text.includes("finished train") && text.includes("running train"));
      await screenshotNotBlank(s, "several-runs");
    }),
});
