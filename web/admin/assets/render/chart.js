// The overview chart: connections (left axis) and delivered messages per second (right axis)
// over a sliding window, drawn with the vendored uPlot.

import uPlot from "../vendor/uPlot.esm.js";
import { fmtClock, fmtCompact, fmtInt, fmtRate } from "../format.js";

const WINDOW_S = 10 * 60;

function cssVar(el, name, fallback) {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

export class LiveChart {
  constructor(el) {
    this.el = el;
    this.data = [[], [], []];
    this.plot = null;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(el);
    // The colours come from CSS variables, read when the plot is built: rebuild when the
    // system switches between light and dark.
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      if (!this.plot) return;
      this.plot.destroy();
      this.plot = null;
      this.show();
    });
  }

  size() {
    const w = Math.max(200, Math.floor(this.el.clientWidth));
    const h = w < 500 ? 200 : 260;
    return { width: w, height: h };
  }

  build() {
    const ink = cssVar(this.el, "--muted", "#666");
    const grid = cssVar(this.el, "--line", "#ddd");
    const conn = cssVar(this.el, "--series-1", "#2563eb");
    const connFill = cssVar(this.el, "--series-1-fill", "rgba(37, 99, 235, 0.12)");
    const deliv = cssVar(this.el, "--series-2", "#d97706");
    const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts = {
      ...this.size(),
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      // At least a minute wide, so that a page opened seconds ago does not stretch them.
      scales: { x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] }, conns: { range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.15))] }, rate: { range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.15))] } },
      axes: [
        // Whole seconds at least, so that two ticks never show the same clock time.
        { ...axis, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], values: (u, splits) => splits.map((s) => fmtClock(new Date(s * 1000))), space: 90 },
        { ...axis, scale: "conns", values: (u, splits) => splits.map(fmtCompact), size: 56 },
        { ...axis, scale: "rate", side: 1, values: (u, splits) => splits.map(fmtCompact), size: 56, grid: { show: false } },
      ],
      // Away from the cursor the legend shows the latest values, so it reads as "now".
      series: [
        { label: "Time", value: (u, v, si, i) => (i == null ? "now" : fmtClock(new Date(v * 1000))) },
        { label: "Connections", scale: "conns", stroke: conn, width: 2, fill: connFill, value: (u, v, si, i) => fmtInt(i == null ? this.latest(si) : v), points: { show: false } },
        { label: "Delivered/s", scale: "rate", stroke: deliv, width: 2, value: (u, v, si, i) => fmtRate(i == null ? this.latest(si) : v), points: { show: false } },
      ],
    };
    this.plot = new uPlot(opts, this.data, this.el);
  }

  latest(series) {
    const col = this.data[series];
    for (let i = col.length - 1; i >= 0; i--) if (col[i] != null) return col[i];
    return NaN;
  }

  fit() {
    if (!this.plot || !this.el.isConnected || this.el.clientWidth === 0) return;
    const { width, height } = this.size();
    if (width !== this.plot.width || height !== this.plot.height) this.plot.setSize({ width, height });
  }

  /** add appends one sample (t in seconds) and drops what is older than the window. */
  add(t, connections, deliveredPerSecond) {
    const [ts, cs, ds] = this.data;
    ts.push(t);
    cs.push(connections);
    ds.push(deliveredPerSecond);
    let cut = 0;
    while (cut < ts.length && ts[cut] < t - WINDOW_S) cut++;
    if (cut > 0) {
      ts.splice(0, cut);
      cs.splice(0, cut);
      ds.splice(0, cut);
    }
    if (this.el.clientWidth === 0) return; // hidden: draw when shown
    if (!this.plot) this.build();
    else this.plot.setData(this.data);
  }

  /** show redraws after the chart's view becomes visible again. */
  show() {
    if (this.data[0].length === 0) return;
    if (!this.plot) this.build();
    else {
      this.fit();
      this.plot.setData(this.data);
    }
  }

  clear() {
    this.data = [[], [], []];
    this.plot?.destroy();
    this.plot = null;
  }
}
