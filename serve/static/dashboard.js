// The dashboard's page: a hash router over four views (the list, a run, a comparison, several
// runs on one chart) drawing the server's JSON as tables and hand-written SVG line charts. No
// framework and nothing fetched from elsewhere, so it works offline.

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#e15759"];
const main = document.getElementById("main");
let leave = () => {};
// The runs ticked on the list, kept while the list rereads itself.
const chosen = new Set();

// ---- formatting -------------------------------------------------------------------------------

function esc(s) {
  return String(s).replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

function bytes(b) {
  if (b === null || b === undefined) return "–";
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(2)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(2)} KB`;
  return `${b} B`;
}

function count(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

function fixed(v, d) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(d);
}

function sci(v) {
  return v === null || v === undefined ? "–" : v === 0 ? "0" : Number(v).toExponential(2);
}

/** Replaces the page's content; absent parts (null) are left out. */
function show(...parts) {
  main.replaceChildren(...parts.filter((p) => p !== null && p !== undefined));
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (k === "html") el.innerHTML = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function badge(status) {
  return h("span", { class: `status ${status}` }, status);
}

function table(head, rows, textColumns = 1) {
  const cls = (i) => (i < textColumns ? "text" : "");
  return h(
    "table",
    {},
    h("tr", {}, head.map((c, i) => h("th", { class: cls(i) }, c))),
    rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: cls(i) }, c)))),
  );
}

function problemsBox(problems) {
  if (problems.length === 0) return null;
  return h(
    "div",
    { class: "problems", "data-problems": String(problems.length) },
    h("strong", {}, "Files that could not be read as they should:"),
    h("ul", {}, problems.map((p) => h("li", {}, `${p.file}: ${p.message}`))),
  );
}

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${(await r.text()).trim()}`);
  return await r.json();
}

// ---- charts -----------------------------------------------------------------------------------

const W = 760;
const H = 340;
const M = { top: 34, right: 170, bottom: 44, left: 64 };

// Thousands of points per series draw no better than one per pixel column.
function thin(points, most = 1500) {
  if (points.length <= most) return points;
  const every = Math.ceil(points.length / most);
  return points.filter((_, i) => i % every === 0 || i === points.length - 1);
}

// Small values (a learning rate) read better as 7.50e-6 than as 0.00000750.
function tickLabel(v) {
  return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toPrecision(3);
}

/**
 * An SVG line chart. `series`: { name, color, dashed, dots, points: [[x, y]] }; `markers`:
 * vertical lines { x, label, color }; `ticks`: short red marks at the axis { x } (skipped steps).
 */
function lineChart(o) {
  const logY = o.logY === true;
  const ok = (y) => y !== null && Number.isFinite(y) && (!logY || y > 0);
  const ty = (y) => (logY ? Math.log10(y) : y);
  const all = o.series.flatMap((s) => s.points.filter((p) => p[0] !== null && ok(p[1])));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => ty(p[1]));
  const xMin = Math.min(...xs, ...(o.markers ?? []).map((m) => m.x));
  const xMax = Math.max(...xs, ...(o.markers ?? []).map((m) => m.x));
  const x0 = Number.isFinite(xMin) ? Math.min(xMin, 0) : 0;
  const x1 = Number.isFinite(xMax) && xMax > x0 ? xMax : x0 + 1;
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
  const pad = (y1 - y0) * 0.05 || 0.5;
  // A quantity that cannot be negative (a learning rate, a loss) keeps its axis at or above 0.
  y0 = !logY && y0 >= 0 ? Math.max(0, y0 - pad) : y0 - pad;
  y1 += pad;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y) => M.top + ph - ((ty(y) - y0) / (y1 - y0)) * ph;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left + pw / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${
      esc(o.title)
    }</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const yv = y0 + ((y1 - y0) * i) / 5;
    const label = tickLabel(logY ? 10 ** yv : yv);
    const py = M.top + ph - (i / 5) * ph;
    const xv = x0 + ((x1 - x0) * i) / 5;
    parts.push(
      `<line x1="${M.left}" x2="${M.left + pw}" y1="${py}" y2="${py}" stroke="#eee"/>`,
      `<text x="${M.left - 5}" y="${py + 4}" text-anchor="end">${esc(label)}</text>`,
      `<text x="${sx(xv)}" y="${M.top + ph + 16}" text-anchor="middle">${
        esc((o.xFormat ?? ((v) => String(Math.round(v))))(xv))
      }</text>`,
    );
  }
  // Markers at one step (a stage's end and the growth after it) get their labels on separate rows.
  (o.markers ?? []).forEach((m, i) => {
    const px = sx(m.x);
    parts.push(
      `<line x1="${px}" x2="${px}" y1="${M.top}" y2="${M.top + ph}" stroke="${
        m.color ?? "#999"
      }" stroke-dasharray="3 3"><title>${esc(m.label)}</title></line>`,
      `<text x="${px + 3}" y="${M.top + 10 + (i % 3) * 12}" fill="${m.color ?? "#666"}">${
        esc(m.short ?? "")
      }</text>`,
    );
  });
  for (const t of o.ticks ?? []) {
    const px = sx(t.x);
    parts.push(
      `<line class="skipped" x1="${px}" x2="${px}" y1="${M.top + ph - 10}" y2="${
        M.top + ph
      }" stroke="#d1342f" stroke-width="2"><title>${esc(t.label)}</title></line>`,
    );
  }
  o.series.forEach((s, i) => {
    let d = "";
    let pen = "M";
    const dots = [];
    for (const [x, y] of thin(s.points)) {
      if (x === null || !ok(y)) {
        pen = "M";
        continue;
      }
      d += `${pen}${sx(x).toFixed(1)},${sy(y).toFixed(1)} `;
      pen = "L";
      if (s.dots) {
        dots.push(
          `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`,
        );
      }
    }
    if (d !== "") {
      parts.push(
        `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"${
          s.dashed ? ' stroke-dasharray="5 3"' : ""
        }/>`,
        ...dots,
      );
    }
    const ly = M.top + 8 + i * 17;
    parts.push(
      `<line x1="${W - M.right + 14}" x2="${W - M.right + 32}" y1="${ly - 4}" y2="${
        ly - 4
      }" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ""}/>`,
      `<text x="${W - M.right + 36}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  parts.push(
    `<text x="${M.left + pw / 2}" y="${H - 8}" text-anchor="middle">${esc(o.xLabel)}${
      all.length === 0 ? " (no points yet)" : ""
    }</text>`,
    `<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${
      esc(o.yLabel + (logY ? ", log scale" : ""))
    }</text>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#333"/>`,
    `<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${
      M.top + ph
    }" stroke="#333"/>`,
    "</svg>",
  );
  const box = h("div", { class: "chart", html: parts.join("") });
  box.dataset.points = String(all.length);
  return box;
}

// The axes a run's records can be drawn against; FLOPs need the run's graph.
const AXES = {
  step: { label: "optimizer step", of: (r) => r.globalStep, format: (v) => String(Math.round(v)) },
  tokens: { label: "tokens", of: (r) => r.at.tokens, format: count },
  flopsPaper: {
    label: "FLOPs (paper: 6N trained + 2N frozen per token)",
    of: (r) => r.at.flopsPaper,
    format: sci,
  },
  flopsExecuted: { label: "FLOPs (executed matmuls)", of: (r) => r.at.flopsExecuted, format: sci },
};

function controls(state, axes, redraw) {
  const select = h(
    "select",
    {
      id: "x-axis",
      onchange: (e) => {
        state.axis = e.target.value;
        redraw();
      },
    },
    axes.map(([key, label, enabled]) => {
      const opt = h("option", { value: key }, label);
      if (!enabled) opt.disabled = true;
      if (key === state.axis) opt.selected = true;
      return opt;
    }),
  );
  const log = h("input", {
    type: "checkbox",
    id: "log-scale",
    onchange: (e) => {
      state.logY = e.target.checked;
      redraw();
    },
  });
  log.checked = state.logY;
  return h(
    "div",
    { class: "controls" },
    h("label", {}, "x axis ", select),
    h("label", {}, log, " log-scale loss"),
  );
}

function runAxes(hasFlops) {
  return [
    ["step", "optimizer steps", true],
    ["tokens", "tokens", true],
    ["flopsPaper", "FLOPs, paper's rule", hasFlops],
    ["flopsExecuted", "FLOPs, executed", hasFlops],
  ];
}

// ---- the list ---------------------------------------------------------------------------------

async function listView() {
  const data = await getJson("/api/list");
  const draw = h("button", {
    id: "draw-selected",
    onclick: () => {
      if (chosen.size > 0) location.hash = `#/many?ids=${[...chosen].join(",")}`;
    },
  }, "Draw the selected runs on one chart");
  const rows = data.runs.map((f) => {
    const box = f.kind === "run"
      ? h("input", {
        type: "checkbox",
        "data-id": f.id,
        onchange: (e) => {
          if (e.target.checked) chosen.add(f.id);
          else chosen.delete(f.id);
        },
      })
      : "";
    if (box !== "") box.checked = chosen.has(f.id);
    const link = h("a", { href: `#/${f.kind}/${f.id}` }, f.path);
    return h(
      "tr",
      { "data-path": f.path, "data-status": f.status.status },
      h("td", {}, box),
      h("td", { class: "text" }, f.comparison !== null ? "\u00a0\u00a0\u00a0\u00a0" : "", link),
      h("td", { class: "text" }, f.kind),
      h("td", { class: "text" }, badge(f.status.status)),
      h("td", { class: "text detail" }, f.status.detail),
    );
  });
  show(
    h("h1", {}, "Runs and comparisons"),
    h("p", { class: "note" }, `Served: ${data.roots.join(", ")}. Choose runs to draw together.`),
    data.runs.length === 0 ? h("p", {}, "No run directory or comparison folder here yet.") : h(
      "table",
      { id: "run-list" },
      h(
        "tr",
        {},
        ["", "path", "kind", "status", "read from"].map((c) => h("th", { class: "text" }, c)),
      ),
      rows,
    ),
    h("p", {}, draw),
  );
  // The list changes as runs start and end; a new poll keeps the user's ticks.
  const timer = setTimeout(() => route(), 5000);
  leave = () => clearTimeout(timer);
}

// ---- one run ----------------------------------------------------------------------------------

function stageGraph(view, stageRecords) {
  const g = view.graph;
  if (g === null) {
    const nodes = [...new Set(view.records.map((r) => r.node))];
    return h(
      "div",
      {},
      h(
        "p",
        { class: "note" },
        "The stage graph (pipeline.yaml) is written when the run ends; " +
          `nodes seen in its log so far: ${nodes.join(" → ") || "none"}.`,
      ),
    );
  }
  const byNode = new Map(g.stages.map((s) => [s.node, s]));
  const measured = new Map(stageRecords.map((s) => [s.stage, s]));
  const parts = [];
  g.nodes.forEach((n, i) => {
    if (i > 0) parts.push(h("span", { class: "arrow" }, "→"));
    const s = byNode.get(n.id);
    const m = s === undefined ? undefined : measured.get(s.stage);
    parts.push(h(
      "div",
      { class: `node ${n.op}`, "data-node": n.id },
      h("div", { class: "op" }, n.op),
      h("div", {}, n.id),
      h("div", { class: "detail" }, n.detail),
      s === undefined ? null : h(
        "div",
        { class: "stage" },
        h("div", {}, `stage ${s.stage}: ${s.layers} layers (+${s.added})`),
        h("div", {}, `trained ${count(m?.trainableParams ?? s.trainableParams)}`),
        h("div", {}, `frozen ${count(m?.frozenParams ?? s.frozenParams)}`),
        h(
          "div",
          {},
          `adapters ${count(m?.adapterParams ?? s.adapterParams)}${
            s.adapters ? ` (${s.adapters})` : ""
          }`,
        ),
        s.galore ? h("div", {}, "GaLore") : null,
        h("div", {}, `steps ${s.fromStep + 1}–${s.toStep}`),
      ),
    ));
  });
  return h(
    "div",
    {},
    h(
      "p",
      { class: "note" },
      `${g.method}, split [${g.stages.map((s) => s.added).join(", ")}], ` +
        `${g.totalSteps} steps of ${count(g.batchTokens)} tokens; compute ${
          sci(g.flopsPaper)
        } FLOPs ` +
        `(paper's rule), ${sci(g.flopsExecuted)} executed. From ${g.file}.`,
    ),
    h("div", { class: "graph", id: "stage-graph" }, parts),
  );
}

function lossChart(records, state, xLabel) {
  const ax = AXES[state.axis];
  const train = records.filter((r) => r.type === "train");
  const evals = records.filter((r) => r.type === "eval");
  const sets = [...new Set(evals.map((r) => r.set ?? ""))];
  const series = [
    { name: "train loss", color: PALETTE[0], points: train.map((r) => [ax.of(r), r.loss]) },
    ...sets.map((set, i) => ({
      name: set === "" ? "val loss" : `val loss: ${set}`,
      color: PALETTE[(i + 1) % PALETTE.length],
      dashed: true,
      dots: true,
      points: evals.filter((r) => (r.set ?? "") === set).map((r) => [ax.of(r), r.valLoss]),
    })),
  ];
  const markers = records.flatMap((r) => {
    if (r.type === "stage") {
      return [{
        x: ax.of(r),
        label: `end of stage ${r.stage}`,
        short: `s${r.stage}|`,
        color: "#555",
      }];
    }
    if (r.type === "grow") {
      return [{
        x: ax.of(r),
        label: `${r.node}: grow +${r.add} → ${r.layers} layers`,
        short: `grow→${r.layers}L`,
        color: "#59a14f",
      }];
    }
    if (r.type === "merge") {
      return [{
        x: ax.of(r),
        label: `${r.node}: ReLoRA merge at step ${r.step}, ${r.merged} adapters`,
        short: "merge",
        color: "#b07aa1",
      }];
    }
    return [];
  }).filter((m) => m.x !== null);
  const ticks = train.filter((r) => r.skipped === true && ax.of(r) !== null).map((r) => ({
    x: ax.of(r),
    label: `step ${r.globalStep} skipped (loss or gradient not finite)`,
  }));
  const chart = lineChart({
    title: "Loss",
    xLabel,
    yLabel: "cross-entropy (nats/token)",
    series,
    markers,
    ticks,
    logY: state.logY,
    xFormat: ax.format,
  });
  chart.id = "loss-chart";
  const last = train.at(-1);
  chart.dataset.lastStep = last === undefined ? "0" : String(last.globalStep);
  chart.dataset.skipped = String(ticks.length);
  chart.dataset.merges = String(records.filter((r) => r.type === "merge").length);
  return chart;
}

function lrChart(records, state) {
  const ax = AXES[state.axis];
  const chart = lineChart({
    title: "Learning rate",
    xLabel: ax.label,
    yLabel: "learning rate",
    series: [{
      name: "lr",
      color: PALETTE[1],
      points: records.filter((r) => r.type === "train").map((r) => [ax.of(r), r.lr]),
    }],
    xFormat: ax.format,
  });
  chart.id = "lr-chart";
  return chart;
}

function throughput(records, live) {
  const stages = records.filter((r) => r.type === "stage");
  let before = 0;
  const rows = stages.map((s) => {
    const tokens = s.at.tokens - before;
    before = s.at.tokens;
    return [
      `stage ${s.stage} (${s.node})`,
      count(tokens),
      s.wallSeconds === undefined ? "–" : `${s.wallSeconds.toFixed(1)} s`,
      s.wallSeconds === undefined ? "–" : count(Math.round(tokens / s.wallSeconds)),
    ];
  });
  return h(
    "div",
    { id: "throughput" },
    rows.length === 0 ? null : table(["stage", "tokens", "wall time", "tokens/s"], rows),
    h("p", { class: "note", id: "live-rate" }, live),
    h(
      "p",
      { class: "note" },
      "A stage's tokens/s is over its wall time (its evaluations and " +
        "checkpoints included); the live figure is measured by this page as records arrive.",
    ),
  );
}

function memorySection(view, stageRecords) {
  const budget = view.graph?.memoryBudgetBytes ?? view.report?.memoryBudgetBytes ?? null;
  const planned = view.graph?.stages ?? [];
  const stageNumbers = [
    ...new Set([...planned.map((s) => s.stage), ...stageRecords.map((s) => s.stage)]),
  ]
    .sort((a, b) => a - b);
  const rows = stageNumbers.map((n) => {
    const m = stageRecords.find((s) => s.stage === n);
    const p = planned.find((s) => s.stage === n);
    const predicted = m?.predictedPeakBytes ?? p?.predictedPeakBytes ?? null;
    const peak = m?.measuredPeakBytes ?? null;
    const a = m?.accountedState;
    return [
      String(n),
      bytes(peak),
      bytes(predicted),
      peak === null || predicted === null ? "–" : `${((predicted / peak - 1) * 100).toFixed(1)}%`,
      budget === null || peak === null ? "–" : peak <= budget ? "within" : "EXCEEDED",
      bytes(a?.trainableWeights),
      bytes(a?.gradients),
      bytes(a?.optimizer),
      bytes(a?.frozen),
      bytes(a?.adapters),
      bytes(m?.accountedStateBytes ?? p?.predictedStateBytes),
      bytes(m?.processPeakBytes),
    ];
  });
  const cp = view.checkpoint;
  return h(
    "div",
    { id: "memory" },
    h(
      "p",
      { class: "note" },
      `Memory budget: ${budget === null ? "none set" : bytes(budget)}. ` +
        "Stages not finished show the plan alone.",
    ),
    rows.length === 0 ? h("p", { class: "note" }, "No stage has finished yet.") : table(
      [
        "stage",
        "measured peak",
        "predicted",
        "error",
        "budget",
        "trained weights",
        "gradients",
        "Adam m, v",
        "frozen",
        "adapters",
        "model state",
        "process",
      ],
      rows,
    ),
    cp !== null && cp.stagePeakBytes !== null && view.status.status === "running"
      ? h(
        "p",
        { class: "note" },
        `Running stage at its last checkpoint (step ${cp.globalStep}): ` +
          `peak ${bytes(cp.stagePeakBytes)}, model state ${bytes(cp.stageStateBytes)}.`,
      )
      : null,
    view.memorySvg === null ? null : h("div", { class: "svg-box", html: view.memorySvg }),
  );
}

function reportSection(r) {
  if (r === null) return h("p", { class: "note" }, "report.json is written when the run ends.");
  return table(["figure", "value"], [
    ["final val loss", fixed(r.finalValLoss, 4)],
    ["after merging adapters", fixed(r.mergedValLoss, 4)],
    ["steps", count(r.globalSteps)],
    ["tokens", count(r.tokens)],
    ["FLOPs, paper's rule", sci(r.flopsPaper)],
    ["FLOPs, executed", sci(r.flopsExecuted)],
    ["wall time", r.runWallSeconds === null ? "–" : `${r.runWallSeconds.toFixed(1)} s`],
    ["peak measured / predicted", `${bytes(r.peakMeasuredBytes)} / ${bytes(r.peakPredictedBytes)}`],
    ["standard pre-training, predicted", bytes(r.standardPredictedPeakBytes)],
    ["backend", r.backend ?? "–"],
  ]);
}

function evalSection(tasks) {
  if (tasks === null) return h("p", { class: "note" }, "No eval.json (deno task eval writes it).");
  const keys = [...new Set(tasks.flatMap((t) => Object.keys(t.values)))]
    .filter((k) =>
      ["acc", "acc_norm", "perplexity", "token_perplexity", "bits_per_byte", "n"].includes(k)
    );
  return h(
    "div",
    { id: "evaluation" },
    table(
      ["task", ...keys],
      tasks.map((t) => [t.task, ...keys.map((k) => fixed(t.values[k], k === "n" ? 0 : 4))]),
    ),
  );
}

async function runView(id) {
  let view = await getJson(`/api/run/${id}`);
  const state = { axis: "step", logY: false };
  let records = [...view.records];
  let live = "Live tokens/s: –";
  let lastSeen;
  let source;
  const problems = [...view.problems];
  const render = () => {
    const stageRecords = records.filter((r) => r.type === "stage");
    const hasFlops = records.some((r) => r.at.flopsPaper !== null);
    if (!hasFlops && state.axis.startsWith("flops")) state.axis = "step";
    show(
      h("h1", {}, view.name, " ", badge(view.status.status)),
      h("p", { class: "detail", id: "status-detail" }, view.status.detail),
      problemsBox(problems),
      h("h2", {}, "Stage graph"),
      stageGraph({ ...view, records }, stageRecords),
      h("h2", {}, "Loss"),
      controls(state, runAxes(hasFlops), render),
      hasFlops
        ? null
        : h("p", { class: "note" }, "FLOPs axes need the run's graph, written when it ends."),
      lossChart(records, state, AXES[state.axis].label),
      h(
        "p",
        { class: "note" },
        "Dashed grey: stage ends; green: growth; purple: ReLoRA merges; red " +
          "marks on the axis: skipped steps.",
      ),
      lrChart(records, state),
      h("h2", {}, "Throughput"),
      throughput(records, live),
      h("h2", {}, "Memory per stage"),
      memorySection(view, stageRecords),
      h("h2", {}, "Report"),
      reportSection(view.report),
      h("h2", {}, "Evaluation"),
      evalSection(view.evaluation),
    );
  };
  render();
  const listen = (from) => {
    source = new EventSource(`/api/events/${id}?from=${from}`);
    source.addEventListener("records", (e) => {
      const data = JSON.parse(e.data);
      records.push(...data.records);
      problems.push(...data.problems.map((p) => ({ file: "metrics.jsonl", message: p })));
      const last = data.records.findLast((r) => r.type === "train");
      if (last !== undefined) {
        const now = performance.now();
        if (lastSeen !== undefined && last.at.tokens > lastSeen.tokens) {
          const rate = (last.at.tokens - lastSeen.tokens) / ((now - lastSeen.time) / 1000);
          live = `Live tokens/s: ${count(Math.round(rate))} (step ${last.globalStep})`;
        }
        lastSeen = { tokens: last.at.tokens, time: now };
      }
      render();
    });
    source.addEventListener("status", (e) => {
      const status = JSON.parse(e.data);
      // A run that ends writes its report and graph: the page reads it again to show them.
      if (view.status.status === "running" && status.status !== "running") reread();
      else {
        view = { ...view, status };
        render();
      }
    });
    source.addEventListener("reset", reread);
  };
  const reread = async () => {
    source.close();
    view = await getJson(`/api/run/${id}`);
    records = [...view.records];
    problems.splice(0, problems.length, ...view.problems);
    render();
    listen(view.metricsOffset);
  };
  listen(view.metricsOffset);
  leave = () => source?.close();
}

// ---- several runs -----------------------------------------------------------------------------

// The legend has room for a run's own folder name, not its whole path.
function short(name) {
  return name.split("/").at(-1);
}

async function manyView(ids) {
  const views = await Promise.all(ids.map((id) => getJson(`/api/run/${id}`)));
  const hasFlops = views.every((v) => v.records.some((r) => r.at.flopsPaper !== null));
  const state = { axis: "step", logY: false };
  const render = () => {
    const ax = AXES[state.axis];
    const series = views.flatMap((v, i) => [
      {
        name: `${short(v.name)} train`,
        color: PALETTE[i % PALETTE.length],
        points: v.records.filter((r) => r.type === "train").map((r) => [ax.of(r), r.loss]),
      },
      {
        name: `${short(v.name)} val`,
        color: PALETTE[i % PALETTE.length],
        dashed: true,
        dots: true,
        points: v.records.filter((r) => r.type === "eval" && r.set === undefined)
          .map((r) => [ax.of(r), r.valLoss]),
      },
    ]);
    const chart = lineChart({
      title: "Loss of the selected runs",
      xLabel: ax.label,
      yLabel: "cross-entropy (nats/token)",
      series,
      logY: state.logY,
      xFormat: ax.format,
    });
    chart.id = "many-chart";
    chart.dataset.runs = String(views.length);
    show(
      h("h1", {}, `${views.length} runs on one chart`),
      h(
        "ul",
        {},
        views.map((v, i) =>
          h("li", {}, h("a", { href: `#/run/${ids[i]}` }, v.name), " ", badge(v.status.status))
        ),
      ),
      controls(state, runAxes(hasFlops), render),
      chart,
      ...views.map((v) =>
        problemsBox(v.problems.map((p) => ({ ...p, file: `${v.name}: ${p.file}` })))
      ),
    );
  };
  render();
}

// ---- a comparison -----------------------------------------------------------------------------

async function comparisonView(id) {
  const state = { axis: null, logY: false };
  const render = (v) => {
    state.axis ??= v.accounting === "executed" ? "flopsExecuted" : "flopsPaper";
    const methods = [...new Set(v.runs.map((r) => r.method))];
    const series = v.runs.map((r) => ({
      name: `${r.method} s${r.seed}`,
      color: PALETTE[methods.indexOf(r.method) % PALETTE.length],
      dashed: r.seed > 0,
      dots: true,
      points: r.points.map((p) => [p[state.axis], p.valLoss]),
    }));
    const chart = lineChart({
      title: "Validation loss against compute, every method",
      xLabel: AXES[state.axis].label,
      yLabel: "validation loss (nats/token)",
      series,
      logY: state.logY,
      xFormat: sci,
    });
    chart.id = "compare-chart";
    chart.dataset.series = String(series.length);
    chart.dataset.methods = methods.join(",");
    const rows = v.rows ?? [];
    const tasks = [...new Set(v.runs.flatMap((r) => Object.keys(r.zeroShot ?? {})))];
    const pct = (x) => (x === undefined || x === null ? "–" : (100 * x).toFixed(1));
    show(
      h("h1", {}, v.name, " ", badge(v.status.status)),
      h("p", { class: "detail" }, v.status.detail),
      problemsBox(v.problems),
      v.facts === null
        ? h(
          "p",
          { class: "note" },
          "The comparison's report.json is written when its last run ends.",
        )
        : h(
          "p",
          { class: "note" },
          `Config ${v.facts.config}; every run gets ${sci(v.facts.flops)} ` +
            `FLOPs under the ${v.accounting} accounting. Machine: ${v.facts.machine}. Backend: ` +
            `${v.facts.backend}.`,
        ),
      h("h2", {}, "Loss against FLOPs"),
      controls(state, [["flopsPaper", "FLOPs, paper's rule", true], [
        "flopsExecuted",
        "FLOPs, executed",
        true,
      ]], () => render(v)),
      chart,
      h("h2", {}, "Report"),
      rows.length === 0 ? h("p", { class: "note" }, "No report yet.") : table(
        [
          "method",
          "seed",
          "FLOPs",
          "val loss",
          "val PPL",
          "peak measured",
          "predicted",
          "planner",
          "model state",
          "tokens",
          "steps",
          "wall",
        ],
        rows.map((r) => [
          r.method,
          String(r.seed),
          sci(r.flops),
          fixed(r.valLoss, 4),
          fixed(r.valPerplexity, 3),
          bytes(r.measuredPeakBytes),
          bytes(r.predictedPeakBytes),
          bytes(r.plannerPeakBytes),
          bytes(r.accountedStateBytes),
          count(r.tokens),
          count(r.steps),
          r.wallSeconds === null ? "–" : `${r.wallSeconds.toFixed(1)} s`,
        ]),
        2,
      ),
      v.table === null
        ? null
        : h("details", {}, h("summary", {}, "report.md"), h("pre", {}, v.table)),
      h("h2", {}, "Memory per method"),
      v.memorySvg === null
        ? h("p", { class: "note" }, "Drawn from the report once written.")
        : h("div", { class: "svg-box", id: "compare-memory", html: v.memorySvg }),
      h("h2", {}, "Zero-shot results"),
      tasks.length === 0 ? h("p", { class: "note" }, "No run evaluated yet (eval.json).") : h(
        "div",
        { id: "zero-shot" },
        table(
          ["run", ...tasks.map((t) => `${t} acc %`)],
          v.runs.map((r) => [`${r.method} s${r.seed}`, ...tasks.map((t) => pct(r.zeroShot?.[t]))]),
        ),
      ),
      h("h2", {}, "Runs"),
      h(
        "ul",
        {},
        v.runs.map((r) =>
          h(
            "li",
            {},
            h("a", { href: `#/run/${id}/runs/${encodeURIComponent(r.run)}` }, r.run),
            " ",
            badge(r.status?.status ?? "waiting"),
          )
        ),
      ),
    );
  };
  const load = async () => {
    const v = await getJson(`/api/comparison/${id}`);
    render(v);
    // A comparison's runs each have their own live page; this one rereads while it runs.
    if (v.status.status === "running") {
      const timer = setTimeout(load, 3000);
      leave = () => clearTimeout(timer);
    }
  };
  await load();
}

// ---- routing ----------------------------------------------------------------------------------

async function route() {
  leave();
  leave = () => {};
  const hash = location.hash.slice(1) || "/";
  const where = document.getElementById("where");
  where.textContent = "";
  try {
    const many = /^\/many\?ids=(.+)$/.exec(hash);
    const one = /^\/(run|comparison)\/(.+)$/.exec(hash);
    if (many !== null) await manyView(many[1].split(","));
    else if (one !== null && one[1] === "run") await runView(one[2]);
    else if (one !== null) await comparisonView(one[2]);
    else await listView();
  } catch (e) {
    show(h("div", { class: "problems", id: "page-error" }, String(e.message ?? e)));
  }
}

addEventListener("hashchange", route);
route();
