/**
 * Small, dependency-free SVG charts for reports: stacked bars (memory per
 * stage, the paper's Fig. 2) and lines (loss curves). Pure functions from data
 * to SVG text.
 *
 * @module
 */

/** One coloured piece of a bar. */
export interface Segment {
  /** Legend entry; segments of the same name share a colour across the bars (escaped for SVG). */
  readonly name: string;
  /**
   * Height of the segment in the chart's y unit; a segment of 0 draws nothing and gets no legend
   * entry.
   */
  readonly value: number;
}

/** One bar, stacked bottom-up in segment order. */
export interface Bar {
  /** Text under the bar. */
  readonly label: string;
  /** The pieces, bottom first; the bar's total is printed above it. */
  readonly segments: readonly Segment[];
  /** Draw this bar hatched-grey as a reference (e.g. standard pre-training). */
  readonly reference?: boolean;
}

/** Options of {@link stackedBarChart}. */
export interface StackedBarOptions {
  /** Heading above the plot. */
  readonly title: string;
  /** Label of the y axis, with its unit (e.g. `GB`). */
  readonly yLabel: string;
  /** The bars, left to right. */
  readonly bars: readonly Bar[];
  /** Formats a y value for ticks and bar totals. */
  readonly format: (v: number) => string;
  /** Dashed horizontal line (e.g. the peak or a memory budget). */
  readonly line?: { readonly value: number; readonly label: string };
}

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#e15759"];
const W = 720;
const H = 420;
const M = { top: 48, right: 180, bottom: 56, left: 84 };

function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );
}

function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(v);
  if ((ticks[ticks.length - 1] ?? 0) < max) ticks.push(ticks.length * step);
  return ticks;
}

/** A stacked bar chart as an SVG document. */
export function stackedBarChart(o: StackedBarOptions): string {
  // Reference bars are hatched, so only the coloured, non-empty segments need a legend entry.
  const names = [
    ...new Set(
      o.bars.filter((b) => b.reference !== true).flatMap((b) =>
        b.segments.filter((s) => s.value > 0).map((s) => s.name)
      ),
    ),
  ];
  // Colours follow the segment order of the bars, so a term keeps its colour across charts.
  const all = [...new Set(o.bars.flatMap((b) => b.segments.map((s) => s.name)))];
  const color = (name: string): string => PALETTE[all.indexOf(name) % PALETTE.length] ?? "#888";
  const totals = o.bars.map((b) => b.segments.reduce((a, s) => a + s.value, 0));
  const ticks = niceTicks(Math.max(...totals, o.line?.value ?? 0));
  const yMax = ticks[ticks.length - 1] ?? 1;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const y = (v: number): number => M.top + plotH - (v / yMax) * plotH;
  const slot = plotW / Math.max(1, o.bars.length);
  const barW = Math.min(80, slot * 0.6);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${
      esc(o.title)
    }</text>`,
    `<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>`,
  ];
  for (const v of ticks) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`,
      `<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${esc(o.format(v))}</text>`,
    );
  }
  parts.push(
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">${
      esc(o.yLabel)
    }</text>`,
  );
  o.bars.forEach((b, i) => {
    const x = M.left + slot * i + (slot - barW) / 2;
    let base = 0;
    for (const s of b.segments) {
      if (s.value <= 0) continue;
      const fill = b.reference === true ? "url(#hatch)" : color(s.name);
      parts.push(
        `<rect x="${x}" y="${y(base + s.value)}" width="${barW}" height="${
          y(base) - y(base + s.value)
        }" fill="${fill}" stroke="white"><title>${
          esc(`${b.label} · ${s.name}: ${o.format(s.value)}`)
        }</title></rect>`,
      );
      base += s.value;
    }
    // Totals side by side overlap once a slot is narrower than their text: they stand upright.
    const total = slot < 64
      ? `<text transform="translate(${x + barW / 2 + 4} ${
        y(base) - 4
      }) rotate(-90)" font-size="10" font-weight="bold">${esc(o.format(base))}</text>`
      : `<text x="${x + barW / 2}" y="${y(base) - 6}" text-anchor="middle" font-weight="bold">${
        esc(o.format(base))
      }</text>`;
    parts.push(
      total,
      `<text x="${x + barW / 2}" y="${M.top + plotH + 18}" text-anchor="middle">${
        esc(b.label)
      }</text>`,
    );
  });
  if (o.line !== undefined) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(o.line.value)}" y2="${
        y(o.line.value)
      }" stroke="#e15759" stroke-dasharray="6 4"/>`,
      `<text x="${M.left + plotW + 4}" y="${y(o.line.value) + 4}" fill="#e15759">${
        esc(o.line.label)
      }</text>`,
    );
  }
  parts.push(
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + plotH}" stroke="#333"/>`,
    `<line x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + plotH}" y2="${
      M.top + plotH
    }" stroke="#333"/>`,
  );
  names.forEach((name, i) => {
    const ly = M.top + 10 + i * 20;
    parts.push(
      `<rect x="${W - M.right + 24}" y="${ly - 10}" width="12" height="12" fill="${color(name)}"/>`,
      `<text x="${W - M.right + 42}" y="${ly}">${esc(name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** One line of a line chart. */
export interface Series {
  /** Legend entry. */
  readonly name: string;
  /** `[x, y]` pairs joined in the order given; points with a non-finite y are left out. */
  readonly points: readonly (readonly [number, number])[];
  /** Draw the line dashed (e.g. a validation curve beside its training curve). */
  readonly dashed?: boolean;
  /** Series of one group share a colour (e.g. one method's seeds); default: one colour each. */
  readonly group?: string;
}

/** Options of {@link lineChart}. */
export interface LineChartOptions {
  /** Heading above the plot. */
  readonly title: string;
  /** Label of the x axis, with its unit (e.g. `step`). */
  readonly xLabel: string;
  /** Label of the y axis, with its unit (e.g. `loss (nats)`). */
  readonly yLabel: string;
  /** The lines, drawn in order and listed in the legend in that order. */
  readonly series: readonly Series[];
  /** Vertical markers (e.g. growth steps). */
  readonly markers?: readonly { readonly x: number; readonly label: string }[];
  /** Horizontal reference (e.g. the entropy floor of the data). */
  readonly floor?: { readonly value: number; readonly label: string };
  /** Formats x ticks (default: rounded). */
  readonly xFormat?: (v: number) => string;
}

/** A line chart as an SVG document. */
export function lineChart(o: LineChartOptions): string {
  const pts = o.series.flatMap((s) => s.points);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]).filter(Number.isFinite);
  if (o.floor !== undefined) ys.push(o.floor.value);
  const xMin = Math.min(...xs, 0);
  const xMax = Math.max(...xs, 1);
  const yLo = Math.min(...ys);
  const yHi = Math.max(...ys);
  const pad = (yHi - yLo) * 0.05 || 1;
  const y0 = Math.max(0, yLo - pad);
  const y1 = yHi + pad;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const sx = (v: number): number => M.left + ((v - xMin) / (xMax - xMin || 1)) * plotW;
  const sy = (v: number): number => M.top + plotH - ((v - y0) / (y1 - y0)) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${
      esc(o.title)
    }</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = y0 + ((y1 - y0) * i) / 5;
    const xv = xMin + ((xMax - xMin) * i) / 5;
    parts.push(
      `<line x1="${M.left}" x2="${M.left + plotW}" y1="${sy(v)}" y2="${sy(v)}" stroke="#eee"/>`,
      `<text x="${M.left - 6}" y="${sy(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`,
      `<text x="${sx(xv)}" y="${M.top + plotH + 18}" text-anchor="middle">${
        esc(o.xFormat === undefined ? String(Math.round(xv)) : o.xFormat(xv))
      }</text>`,
    );
  }
  for (const m of o.markers ?? []) {
    parts.push(
      `<line x1="${sx(m.x)}" x2="${sx(m.x)}" y1="${M.top}" y2="${
        M.top + plotH
      }" stroke="#999" stroke-dasharray="3 3"/>`,
      `<text x="${sx(m.x) + 3}" y="${M.top + 12}" fill="#666">${esc(m.label)}</text>`,
    );
  }
  if (o.floor !== undefined) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + plotW}" y1="${sy(o.floor.value)}" y2="${
        sy(o.floor.value)
      }" stroke="#e15759" stroke-dasharray="6 4"/>`,
      `<text x="${M.left + plotW + 4}" y="${sy(o.floor.value) + 4}" fill="#e15759">${
        esc(o.floor.label)
      }</text>`,
    );
  }
  const groups = [...new Set(o.series.map((s, i) => s.group ?? `#${i}`))];
  o.series.forEach((s, i) => {
    const c = PALETTE[groups.indexOf(s.group ?? `#${i}`) % PALETTE.length] ?? "#333";
    const finite = s.points.filter((p) => Number.isFinite(p[1]));
    if (finite.length > 0) {
      const d = finite.map((p, j) =>
        `${j === 0 ? "M" : "L"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`
      )
        .join(" ");
      parts.push(
        `<path d="${d}" fill="none" stroke="${c}" stroke-width="1.6"${
          s.dashed === true ? ' stroke-dasharray="5 3"' : ""
        }/>`,
      );
    }
    const ly = M.top + 10 + i * 20;
    parts.push(
      `<line x1="${W - M.right + 20}" x2="${W - M.right + 38}" y1="${ly - 4}" y2="${
        ly - 4
      }" stroke="${c}" stroke-width="2"/>`,
      `<text x="${W - M.right + 42}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  parts.push(
    `<text x="${M.left + plotW / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">${
      esc(o.yLabel)
    }</text>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + plotH}" stroke="#333"/>`,
    `<line x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + plotH}" y2="${
      M.top + plotH
    }" stroke="#333"/>`,
    "</svg>",
  );
  return parts.join("\n");
}
