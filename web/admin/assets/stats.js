// What each stats sample changes: rates derived from consecutive samples, then every figure on
// screen.

import { renderLive } from "./render/live.js";
import { renderNodes, renderTenants, renderTotals } from "./render/overview.js";
import { renderTenantLive } from "./tenant-view.js";

/**
 * takeSample keeps stats in state with the rates since the previous distinct sample, and
 * returns the chart's new point, or null when the sample is not newer than the last.
 */
export function takeSample(state, stats) {
  state.lastStatsAt = Date.now();
  const t = Date.parse(stats.generated_at) / 1000;
  const tenants = new Map((stats.tenants || []).map((x) => [x.id, x]));
  const prev = state.prev;
  const fresh = !prev || t > prev.t;
  if (prev && fresh) {
    const dt = t - prev.t;
    const per = (now, before) => (now >= before ? (now - before) / dt : 0); // a counter reset reads as 0
    state.rates = {
      delivered: per(stats.totals.delivered_total, prev.totals.delivered_total),
      published: per(stats.totals.published_total, prev.totals.published_total),
    };
    state.tenantRates = new Map();
    for (const [id, x] of tenants) {
      const p = prev.tenants.get(id);
      state.tenantRates.set(id, p
        ? { delivered: per(x.delivered_total, p.delivered_total), published: per(x.published_total, p.published_total) }
        : { delivered: NaN, published: NaN });
    }
  }
  state.stats = stats;
  if (!fresh) return null;
  state.prev = { t, totals: stats.totals, tenants };
  return { t, connections: stats.totals.connections, delivered: prev ? state.rates.delivered : null };
}

export function onStats(app, stats) {
  const point = takeSample(app.state, stats);
  if (point) app.chart.add(point.t, point.connections, point.delivered);
  renderTotals(app);
  renderNodes(app);
  renderTenants(app);
  if (app.state.view === "tenant") renderTenantLive(app);
  renderLive(app);
}
