// The Streamgate operator dashboard. Plain JavaScript modules, no build step.
//
// Views are chosen by the URL hash: "#/" is the overview, "#/tenants/<id>" one tenant. The
// cluster's figures arrive once a second on /admin/api/stats/stream; rates are derived here
// from consecutive samples. Everything the server sends is written with textContent, never
// parsed as HTML: tenant names and subjects come from untrusted users.

import { api, APIError, authHeaders, token } from "./api.js";
import { EventStream } from "./sse.js";
import { LiveChart } from "./chart.js";
import { ago, fmtClock, fmtInt, fmtRate, fmtStamp } from "./format.js";

const STALE_MS = 3000;

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const el = {
  controls: $("#session-controls"),
  live: $("#live"),
  liveText: $("#live-text"),
  liveDetail: $("#live-detail"),
  logout: $("#logout"),
  notice: $("#notice"),
  views: { login: $("#view-login"), overview: $("#view-overview"), tenant: $("#view-tenant") },
  loginForm: $("#login-form"),
  loginToken: $("#login-token"),
  loginError: $("#login-error"),
  loginSubmit: $("#login-submit"),
  nodesBody: $("#nodes-table tbody"),
  nodesEmpty: $("#nodes-empty"),
  tenantsTable: $("#tenants-table"),
  tenantsBody: $("#tenants-table tbody"),
  tenantsEmpty: $("#tenants-empty"),
  filter: $("#tenant-filter"),
  chartSummary: $("#chart-summary"),
  tenantTitle: $("#tenant-title"),
  tenantStatus: $("#tenant-status"),
  tenantMeta: $("#tenant-meta"),
  tenantError: $("#tenant-error"),
  limitsForm: $("#limits-form"),
  limitsError: $("#limits-error"),
  limitsSave: $("#limits-save"),
  limitsReset: $("#limits-reset"),
  suspend: $("#suspend"),
  sessionsBody: $("#sessions-table tbody"),
  sessionsEmpty: $("#sessions-empty"),
  sessionsRefresh: $("#sessions-refresh"),
  dialog: $("#confirm"),
  dialogTitle: $("#confirm-title"),
  dialogBody: $("#confirm-body"),
  dialogOK: $("#confirm-ok"),
  dialogCancel: $("#confirm-cancel"),
};

const state = {
  stats: null,
  prev: null, // the previous distinct sample: {t, totals, tenants: Map}
  rates: { delivered: NaN, published: NaN },
  tenantRates: new Map(),
  lastStatsAt: 0,
  streamUp: false,
  retryAt: 0,
  sort: { key: "name", dir: 1 },
  filter: "",
  view: "",
  tenantID: "",
  tenant: null, // the open tenant as GET /admin/api/tenants/{id} returned it
  tenantConns: -1, // its connection count in the last stats, to spot when to reload sessions
  sessionsTimer: 0,
  sessionsLoading: null,
};

const chart = new LiveChart($("#chart"));
const stream = new EventStream("/admin/api/stats/stream", { headers: () => authHeaders() });

// ---------------------------------------------------------------------------------------------
// Small DOM helpers.

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** cell is a table cell whose data-label names its column where rows are shown as cards. */
function cell(label, props, ...children) {
  return h("td", { role: "cell", "data-label": label || undefined, ...props }, ...children);
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function show(node, visible) {
  node.hidden = !visible;
}

/**
 * syncRows makes tbody hold one row per item, in order, reusing the rows it already has so
 * that a focused link or button survives the once-a-second refresh.
 */
function syncRows(tbody, items, keyOf, create, update) {
  const existing = new Map();
  for (const tr of tbody.rows) existing.set(tr.dataset.key, tr);
  const wanted = items.map((item) => {
    const key = keyOf(item);
    let tr = existing.get(key);
    if (!tr) {
      tr = create(item);
      tr.dataset.key = key;
    }
    existing.delete(key);
    update(tr, item);
    return tr;
  });
  for (const tr of existing.values()) tr.remove();
  const inOrder = wanted.every((tr, i) => tbody.rows[i] === tr) && tbody.rows.length === wanted.length;
  if (!inOrder) {
    const focused = document.activeElement;
    tbody.append(...wanted);
    if (focused && focused !== document.activeElement && tbody.contains(focused)) focused.focus();
  }
}

let noticeTimer = 0;
function notify(message, kind = "ok") {
  clearTimeout(noticeTimer);
  el.notice.dataset.kind = kind;
  el.notice.textContent = message;
  show(el.notice, true);
  noticeTimer = setTimeout(() => show(el.notice, false), kind === "error" ? 10000 : 5000);
}

function showError(node, message) {
  node.textContent = message || "";
  show(node, Boolean(message));
}

// ---------------------------------------------------------------------------------------------
// Confirmation dialog.

let confirmResolve = null;

function confirmAction({ title, body, ok }) {
  return new Promise((resolve) => {
    el.dialogTitle.textContent = title;
    el.dialogBody.textContent = body;
    el.dialogOK.textContent = ok;
    el.dialog.returnValue = "";
    confirmResolve = resolve;
    el.dialog.showModal();
    el.dialogCancel.focus();
  });
}

el.dialogOK.addEventListener("click", () => el.dialog.close("ok"));
el.dialogCancel.addEventListener("click", () => el.dialog.close("cancel"));
el.dialog.addEventListener("close", () => {
  const resolve = confirmResolve;
  confirmResolve = null;
  resolve?.(el.dialog.returnValue === "ok");
});

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out.

el.loginForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = el.loginToken.value.trim();
  if (!t) {
    showError(el.loginError, "Enter the admin token.");
    el.loginToken.setAttribute("aria-invalid", "true");
    el.loginToken.focus();
    return;
  }
  el.loginSubmit.disabled = true;
  showError(el.loginError, "");
  try {
    const stats = await api.stats(t);
    token.set(t);
    el.loginToken.value = "";
    el.loginToken.removeAttribute("aria-invalid");
    signedIn(stats, true);
  } catch (err) {
    const msg = err instanceof APIError && err.status === 401 ? "That token is not the admin token." : err.message;
    showError(el.loginError, msg);
    el.loginToken.setAttribute("aria-invalid", "true");
    el.loginToken.focus();
  } finally {
    el.loginSubmit.disabled = false;
  }
});

el.logout.addEventListener("click", () => signOut());

function signedIn(firstStats, moveFocus) {
  show(el.controls, true);
  if (firstStats) onStats(firstStats);
  stream.start();
  route(moveFocus);
}

function signOut(message) {
  token.clear();
  stream.stop();
  stopSessionsTimer();
  Object.assign(state, { stats: null, prev: null, lastStatsAt: 0, streamUp: false, retryAt: 0, tenant: null, tenantID: "", tenantConns: -1 });
  state.tenantRates.clear();
  chart.clear();
  el.tenantsBody.replaceChildren();
  el.nodesBody.replaceChildren();
  el.sessionsBody.replaceChildren();
  show(el.controls, false);
  showView("login");
  if (message) showError(el.loginError, message);
  el.loginToken.focus();
}

/** handleAPIError signs out on a refused token and otherwise returns the message to show. */
function handleAPIError(err) {
  if (err instanceof APIError && err.status === 401) {
    signOut("The admin token was refused. Sign in again.");
    return "";
  }
  return err.message;
}

// ---------------------------------------------------------------------------------------------
// Live stats.

stream.onOpen = () => {
  state.streamUp = true;
  state.retryAt = 0;
  renderLive();
};
stream.onDown = (err, delay) => {
  state.streamUp = false;
  state.retryAt = Date.now() + delay;
  renderLive();
};
stream.onAuthError = () => signOut("The admin token was refused. Sign in again.");
stream.onEvent = (ev) => {
  if (ev.type !== "stats") return;
  let stats;
  try {
    stats = JSON.parse(ev.data);
  } catch {
    return;
  }
  stream.healthy();
  onStats(stats);
};

function onStats(stats) {
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
  if (fresh) {
    state.prev = { t, totals: stats.totals, tenants };
    chart.add(t, stats.totals.connections, prev ? state.rates.delivered : null);
  }
  state.stats = stats;
  renderTotals();
  renderNodes();
  renderTenants();
  if (state.view === "tenant") renderTenantLive();
  renderLive();
}

function renderLive() {
  if (!token.get()) return;
  const age = Date.now() - state.lastStatsAt;
  let mode, text, detail = "";
  if (!state.lastStatsAt) {
    mode = "connecting";
    text = "Connecting…";
  } else if (age <= STALE_MS) {
    mode = "live";
    text = "Live";
    detail = "updated " + fmtClock(new Date(state.lastStatsAt));
  } else {
    mode = "stale";
    text = "Stale";
    detail = "last update " + ago(new Date(state.lastStatsAt)) + " ago";
  }
  if (!state.streamUp && state.retryAt) {
    const wait = Math.ceil((state.retryAt - Date.now()) / 1000);
    detail += (detail ? " · " : "") + (wait > 0 ? `reconnecting in ${wait} s` : "reconnecting…");
  }
  el.live.dataset.state = mode;
  setText(el.liveText, text);
  setText(el.liveDetail, detail);
}
setInterval(renderLive, 500);

function renderTotals() {
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

function renderNodes() {
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

// ---------------------------------------------------------------------------------------------
// Tenants table: sortable, filterable.

const TENANT_COLUMNS = [
  ["connections", "Connections"], ["subscriptions", "Subscriptions"], ["max_connections", "Max connections"],
  ["publish_per_second", "Publish limit/s"], ["published_rate", "Published/s"], ["delivered_rate", "Delivered/s"],
  ["dropped_total", "Dropped"], ["evicted_total", "Evicted"],
];

const numericDefaultDesc = new Set(["connections", "subscriptions", "max_connections", "publish_per_second", "published_rate", "delivered_rate", "dropped_total", "evicted_total"]);

function tenantRow(x) {
  const r = state.tenantRates.get(x.id) || { delivered: NaN, published: NaN };
  return {
    id: x.id, name: x.name, suspended: x.suspended,
    connections: x.connections, subscriptions: x.subscriptions,
    max_connections: x.limits?.max_connections, publish_per_second: x.limits?.publish_per_second,
    published_rate: r.published, delivered_rate: r.delivered,
    dropped_total: x.dropped_total, evicted_total: x.evicted_total,
  };
}

function compareRows(a, b) {
  const { key, dir } = state.sort;
  let c;
  if (key === "name") c = a.name.localeCompare(b.name, undefined, { sensitivity: "base" });
  else {
    const x = Number.isFinite(a[key]) ? a[key] : -1, y = Number.isFinite(b[key]) ? b[key] : -1;
    c = x - y;
  }
  return c * dir || a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
}

function renderTenants() {
  if (!state.stats) return;
  const f = state.filter.toLowerCase();
  const rows = (state.stats.tenants || []).map(tenantRow)
    .filter((r) => !f || r.name.toLowerCase().includes(f) || r.id.toLowerCase().includes(f))
    .sort(compareRows);
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
      }
    });
  show(el.tenantsEmpty, rows.length === 0);
  setText(el.tenantsEmpty, state.filter ? `No tenant matches “${state.filter}”.` : "No tenant yet.");
}

function renderSortHeaders() {
  for (const th of $$("th[data-key]", el.tenantsTable)) {
    if (th.dataset.key === state.sort.key) th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

for (const th of $$("th[data-key]", el.tenantsTable)) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.key;
    if (state.sort.key === key) state.sort.dir = -state.sort.dir;
    else state.sort = { key, dir: numericDefaultDesc.has(key) ? -1 : 1 };
    renderSortHeaders();
    renderTenants();
  });
}
renderSortHeaders();

el.filter.addEventListener("input", () => {
  state.filter = el.filter.value.trim();
  renderTenants();
});

// ---------------------------------------------------------------------------------------------
// Tenant view.

const LIMIT_FIELDS = ["max_connections", "max_subscriptions_per_session", "publish_per_second", "max_message_bytes", "history_events", "history_seconds"];

async function openTenant(id) {
  state.tenantID = id;
  state.tenant = null;
  state.tenantConns = -1;
  showError(el.tenantError, "");
  showError(el.limitsError, "");
  el.tenantTitle.textContent = "Tenant";
  setText(el.tenantMeta, id);
  el.tenantStatus.hidden = true;
  el.sessionsBody.replaceChildren();
  show(el.sessionsEmpty, false);
  setTenantFormEnabled(false);
  try {
    const t = await api.tenant(id);
    if (state.tenantID !== id) return;
    state.tenant = t;
    renderTenant();
    fillLimits(t.limits);
    setTenantFormEnabled(true);
  } catch (err) {
    if (state.tenantID !== id) return;
    showError(el.tenantError, handleAPIError(err));
    return;
  }
  await loadSessions();
  startSessionsTimer();
}

function setTenantFormEnabled(on) {
  for (const input of el.limitsForm.elements) input.disabled = !on;
  el.suspend.disabled = !on;
  el.sessionsRefresh.disabled = !on;
}

function renderTenant() {
  const t = state.tenant;
  setText(el.tenantTitle, t.name);
  document.title = `${t.name} · Streamgate admin`;
  setText(el.tenantMeta, `${t.id} · created ${fmtStamp(new Date(t.created_at))}`);
  el.tenantStatus.hidden = false;
  setText(el.tenantStatus, t.suspended ? "Suspended" : "Active");
  el.tenantStatus.dataset.state = t.suspended ? "suspended" : "active";
  setText(el.suspend, t.suspended ? "Resume tenant" : "Suspend tenant");
  el.suspend.className = t.suspended ? "" : "danger";
  renderUsage({
    connections: t.usage?.connections, subscriptions: t.usage?.subscriptions,
    published_total: t.published_total, delivered_total: t.delivered_total,
    dropped_total: t.dropped_total, evicted_total: t.evicted_total,
  });
}

function renderUsage(u) {
  for (const dd of $$("[data-usage]")) setText(dd, fmtInt(u[dd.dataset.usage]));
}

/** renderTenantLive refreshes the open tenant's figures from the stats stream. */
function renderTenantLive() {
  const x = (state.stats?.tenants || []).find((t) => t.id === state.tenantID);
  if (!x || !state.tenant) return;
  renderUsage(x);
  if (x.suspended !== state.tenant.suspended) {
    state.tenant.suspended = x.suspended;
    renderTenant();
  }
  if (state.tenantConns !== -1 && x.connections !== state.tenantConns) loadSessions();
  state.tenantConns = x.connections;
}

function fillLimits(limits) {
  for (const name of LIMIT_FIELDS) {
    const input = el.limitsForm.elements[name];
    input.value = String(limits[name]);
    input.removeAttribute("aria-invalid");
  }
}

el.limitsReset.addEventListener("click", () => {
  if (state.tenant) fillLimits(state.tenant.limits);
  showError(el.limitsError, "");
});

el.limitsForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!state.tenant) return;
  showError(el.limitsError, "");
  const changed = {};
  for (const name of LIMIT_FIELDS) {
    const input = el.limitsForm.elements[name];
    input.removeAttribute("aria-invalid");
    const v = Number(input.value);
    if (input.value.trim() === "" || !Number.isInteger(v) || v < Number(input.min) || v > Number(input.max)) {
      const label = el.limitsForm.querySelector(`label[for="${input.id}"]`).textContent;
      input.setAttribute("aria-invalid", "true");
      showError(el.limitsError, `${label} must be a whole number from ${fmtInt(Number(input.min))} to ${fmtInt(Number(input.max))}.`);
      input.focus();
      return;
    }
    if (v !== state.tenant.limits[name]) changed[name] = v;
  }
  if (Object.keys(changed).length === 0) {
    notify("No limit changed.");
    return;
  }
  const id = state.tenantID;
  el.limitsSave.disabled = true;
  try {
    const t = await api.patchTenant(id, { limits: changed });
    if (state.tenantID !== id) return;
    state.tenant = t;
    renderTenant();
    fillLimits(t.limits);
    notify(`Limits of ${t.name} saved.`);
  } catch (err) {
    showError(el.limitsError, handleAPIError(err));
  } finally {
    el.limitsSave.disabled = false;
  }
});

el.suspend.addEventListener("click", async () => {
  const t = state.tenant;
  if (!t) return;
  const suspend = !t.suspended;
  if (suspend) {
    const ok = await confirmAction({
      title: `Suspend ${t.name}?`,
      body: "Every live session of this tenant is closed with disconnect, and its API keys are refused until you resume it.",
      ok: "Suspend",
    });
    if (!ok) return;
  }
  el.suspend.disabled = true;
  try {
    const nt = await api.patchTenant(t.id, { suspended: suspend });
    if (state.tenantID !== t.id) return;
    state.tenant = nt;
    renderTenant();
    notify(suspend ? `${nt.name} is suspended.` : `${nt.name} is active again.`);
    loadSessions();
  } catch (err) {
    const msg = handleAPIError(err);
    if (msg) notify(msg, "error");
  } finally {
    el.suspend.disabled = false;
    el.suspend.focus();
  }
});

async function loadSessions() {
  if (state.sessionsLoading) return state.sessionsLoading;
  const id = state.tenantID;
  state.sessionsLoading = (async () => {
    try {
      const { sessions } = await api.sessions(id);
      if (state.tenantID !== id) return;
      renderSessions(sessions || []);
    } catch (err) {
      if (state.tenantID !== id) return;
      const msg = handleAPIError(err);
      if (msg) showError(el.tenantError, msg);
    } finally {
      state.sessionsLoading = null;
    }
  })();
  return state.sessionsLoading;
}

function renderSessions(sessions) {
  const now = Date.now();
  syncRows(el.sessionsBody, sessions, (s) => s.id,
    (s) => h("tr", { role: "row" },
      h("th", { scope: "row", role: "rowheader" }, h("code")),
      cell("Subject", { class: "sub" }),
      cell("Node", {}, h("code")),
      cell("Channels", { class: "channels wide" }),
      cell("Dropped", { class: "num" }),
      cell("Connected since", {}, h("time")),
      cell("", { class: "action" }, h("button", { type: "button", class: "danger small", dataset: { evict: s.id }, onclick: () => evict(s) }, "Evict"))),
    (tr, s) => {
      const [id, sub, node, channels, dropped, since, action] = tr.cells;
      setText(id.firstChild, s.id);
      setText(sub, s.sub);
      setText(node.firstChild, s.node_id);
      setText(channels, (s.channels || []).join(", ") || "—");
      setText(dropped, fmtInt(s.dropped));
      const at = new Date(s.connected_at);
      const time = since.firstChild;
      time.dateTime = s.connected_at;
      time.title = fmtStamp(at);
      setText(time, `${fmtClock(at)} (${ago(at, now)} ago)`);
      action.firstChild.setAttribute("aria-label", `Evict session ${s.id} of ${s.sub}`);
    });
  show(el.sessionsEmpty, sessions.length === 0);
}

async function evict(s) {
  const ok = await confirmAction({
    title: "Evict this session?",
    body: `Session ${s.id} of “${s.sub}” on node ${s.node_id} receives disconnect and does not reconnect by itself.`,
    ok: "Evict",
  });
  if (!ok) return;
  const row = el.sessionsBody.querySelector(`tr[data-key="${CSS.escape(s.id)}"]`);
  const next = row?.nextElementSibling?.querySelector("button") || row?.previousElementSibling?.querySelector("button") || el.sessionsRefresh;
  try {
    await api.evict(s.id);
    notify(`Session ${s.id} evicted.`);
    row?.remove();
    show(el.sessionsEmpty, el.sessionsBody.rows.length === 0);
    next.focus();
  } catch (err) {
    const msg = handleAPIError(err);
    if (msg) notify(msg, "error");
  }
  loadSessions();
}

el.sessionsRefresh.addEventListener("click", () => loadSessions());

function startSessionsTimer() {
  stopSessionsTimer();
  state.sessionsTimer = setInterval(() => {
    if (!document.hidden && !el.dialog.open) loadSessions();
  }, 10000);
}

function stopSessionsTimer() {
  clearInterval(state.sessionsTimer);
  state.sessionsTimer = 0;
}

// ---------------------------------------------------------------------------------------------
// Routing.

function showView(name) {
  state.view = name;
  for (const [k, node] of Object.entries(el.views)) show(node, k === name);
}

function route(moveFocus) {
  if (!token.get()) {
    showView("login");
    document.title = "Sign in · Streamgate admin";
    return;
  }
  const m = /^#\/tenants\/([^/]+)$/.exec(location.hash);
  if (m) {
    const id = decodeURIComponent(m[1]);
    showView("tenant");
    if (id !== state.tenantID || !state.tenant) openTenant(id);
    if (moveFocus) el.tenantTitle.focus();
    return;
  }
  stopSessionsTimer();
  state.tenantID = "";
  state.tenant = null;
  showView("overview");
  document.title = "Overview · Streamgate admin";
  chart.show();
  if (moveFocus) $("#overview-title").focus();
}

window.addEventListener("hashchange", () => route(true));

if (token.get()) signedIn(null, false);
else route(false);
