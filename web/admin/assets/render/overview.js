// The overview: cluster totals, the nodes table and the sortable, filterable tenants table.

import { ago, fmtInt, fmtRate, fmtStamp } from "../format.js";
import { $$, cell, h, setText, show, syncRows } from "./dom.js";

export function renderTotals({ el, state }) {
  const { totals } = state.stats;
  const values = {
    tenants: fmtInt(totals.tenants),
    nodes: fmtInt(totals.nodes),
    connections: fmtInt(totals.connections),
    subscriptions: fmtInt(totals.subscriptions),
    delivered_rate: fmtRate(state.rates.delivered),
    published_rate: fmtRate(state.rates.published),
    dropped_total: fmtInt(totals.dropped_total),
    evicted_total: fmtInt(totals.evicted_total),
  };
  for (const dd of $$("[data-total]")) setText(dd, values[dd.dataset.total]);
  setText(el.chartSummary, `Now ${values.connections} connections and ${values.delivered_rate} messages delivered per second.`);
}

export function renderNodes({ el, state }) {
  const nodes = [...(state.stats.nodes || [])].sort((a, b) => a.id.localeCompare(b.id));
  const now = Date.now();
  syncRows(el.nodesBody, nodes, (n) => n.id,
    () => h("tr", { role: "row" },
      h("th", { scope: "row", role: "rowheader" }, h("code")),
      cell("Connections", { class: "num" }),
      cell("Subscriptions", { class: "num" }),
      cell("Up since", {}, h("time")),
      cell("Last report", {}, h("time"))),
    (tr, n) => {
      const [id, conns, subs, started, seen] = tr.cells;
      setText(id.firstChild, n.id);
      setText(conns, fmtInt(n.connections));
      setText(subs, fmtInt(n.subscriptions));
      const st = new Date(n.started_at), ls = new Date(n.last_seen);
      started.firstChild.dateTime = n.started_at;
      started.firstChild.title = fmtStamp(st);
      setText(started.firstChild, ago(st, now) + " ago");
      seen.firstChild.dateTime = n.last_seen;
      seen.firstChild.title = fmtStamp(ls);
      setText(seen.firstChild, ago(ls, now) + " ago");
      seen.classList.toggle("warn", now - ls.getTime() > 5000);
    });
  show(el.nodesEmpty, nodes.length === 0);
}

const TENANT_COLUMNS = [
  ["connections", "Connections"], ["subscriptions", "Subscriptions"], ["max_connections", "Max connections"],
  ["publish_per_second", "Publish limit/s"], ["published_rate", "Published/s"], ["delivered_rate", "Delivered/s"],
  ["dropped_total", "Dropped"], ["evicted_total", "Evicted"], ["presence_members", "Present"], ["webhooks_dead", "Dead webhooks"],
];

const numericDefaultDesc = new Set(TENANT_COLUMNS.map(([k]) => k));

function tenantRow(state, x) {
  const r = state.tenantRates.get(x.id) || { delivered: NaN, published: NaN };
  return {
    id: x.id, name: x.name, suspended: x.suspended,
    connections: x.connections, subscriptions: x.subscriptions,
    max_connections: x.limits?.max_connections, publish_per_second: x.limits?.publish_per_second,
    published_rate: r.published, delivered_rate: r.delivered,
    dropped_total: x.dropped_total, evicted_total: x.evicted_total,
    presence_members: x.presence_members, webhooks_dead: x.webhooks_dead,
  };
}

function compareRows({ key, dir }) {
  return (a, b) => {
    let c;
    if (key === "name") c = a.name.localeCompare(b.name, undefined, { sensitivity: "base" });
    else {
      const x = Number.isFinite(a[key]) ? a[key] : -1, y = Number.isFinite(b[key]) ? b[key] : -1;
      c = x - y;
    }
    return c * dir || a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
  };
}

export function renderTenants({ el, state }) {
  if (!state.stats) return;
  const f = state.filter.toLowerCase();
  const rows = (state.stats.tenants || []).map((x) => tenantRow(state, x))
    .filter((r) => !f || r.name.toLowerCase().includes(f) || r.id.toLowerCase().includes(f))
    .sort(compareRows(state.sort));
  syncRows(el.tenantsBody, rows, (r) => r.id,
    (r) => {
      const link = h("a", { href: "#/tenants/" + encodeURIComponent(r.id) }, h("span", { class: "name" }), h("span", { class: "badge small", hidden: true }, "suspended"));
      return h("tr", { role: "row" }, h("th", { scope: "row", role: "rowheader" }, link, h("code", { class: "id" }, r.id)),
        ...TENANT_COLUMNS.map(([k, label]) => cell(label, { class: "num", dataset: { col: k } })));
    },
    (tr, r) => {
      const link = tr.cells[0].firstChild;
      setText(link.firstChild, r.name);
      link.lastChild.hidden = !r.suspended;
      tr.classList.toggle("suspended", r.suspended);
      for (const td of [...tr.cells].slice(1)) {
        const k = td.dataset.col;
        setText(td, k.endsWith("_rate") ? fmtRate(r[k]) : fmtInt(r[k]));
        if (k === "webhooks_dead") td.classList.toggle("warn", r[k] > 0);
      }
    });
  show(el.tenantsEmpty, rows.length === 0);
  setText(el.tenantsEmpty, state.filter ? `No tenant matches “${state.filter}”.` : "No tenant yet.");
}

/** sortHeaders are the tenants table's column headers, each naming its sort key. */
export const sortHeaders = (el) => $$("th[data-key]", el.tenantsTable);

export function renderSortHeaders({ el, state }) {
  for (const th of sortHeaders(el)) {
    if (th.dataset.key === state.sort.key) th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

/** sortBy sorts by key: the other way round on the current key, else names A to Z and figures most first. */
export function sortBy(state, key) {
  if (state.sort.key === key) state.sort.dir = -state.sort.dir;
  else state.sort = { key, dir: numericDefaultDesc.has(key) ? -1 : 1 };
}
