// One tenant: load it, follow its usage live, change its limits, suspend or resume it, list and
// evict its sessions, and show its presence and webhook health.

import { api } from "./api.js";
import { handleAPIError } from "./auth.js";
import { show, showError } from "./render/dom.js";
import { clearTenant, fillLimits, readLimits, renderSessions, renderTenant, renderUsage, setTenantFormEnabled } from "./render/tenant.js";
import { stopSessionsTimer } from "./state.js";
import { loader, loadPresence, loadWebhooks } from "./tenant-health.js";

export async function openTenant(app, id) {
  const { el, state } = app;
  state.tenantID = id;
  state.tenant = null;
  state.tenantConns = state.tenantMembers = state.tenantDead = -1;
  clearTenant(el, id);
  try {
    const t = await api.tenant(id);
    if (state.tenantID !== id) return;
    state.tenant = t;
    renderTenant(app);
    fillLimits(el, t.limits);
    setTenantFormEnabled(el, true);
  } catch (err) {
    if (state.tenantID !== id) return;
    showError(el.tenantError, handleAPIError(app, err));
    return;
  }
  await Promise.all([loadSessions(app), loadPresence(app), loadWebhooks(app)]);
  startSessionsTimer(app);
}

/** renderTenantLive refreshes the open tenant's figures from the stats stream. */
export function renderTenantLive(app) {
  const { state } = app;
  const x = (state.stats?.tenants || []).find((t) => t.id === state.tenantID);
  if (!x || !state.tenant) return;
  renderUsage(x);
  if (x.suspended !== state.tenant.suspended) {
    state.tenant.suspended = x.suspended;
    renderTenant(app);
  }
  if (state.tenantConns !== -1 && x.connections !== state.tenantConns) loadSessions(app);
  if (state.tenantMembers !== -1 && x.presence_members !== state.tenantMembers) loadPresence(app);
  if (state.tenantDead !== -1 && x.webhooks_dead !== state.tenantDead) loadWebhooks(app);
  state.tenantConns = x.connections;
  state.tenantMembers = x.presence_members;
  state.tenantDead = x.webhooks_dead;
}

export function resetLimits({ el, state }) {
  if (state.tenant) fillLimits(el, state.tenant.limits);
  showError(el.limitsError, "");
}

export async function saveLimits(app, ev) {
  const { el, state } = app;
  ev.preventDefault();
  if (!state.tenant) return;
  showError(el.limitsError, "");
  const changed = readLimits(el, state.tenant.limits);
  if (!changed) return;
  if (Object.keys(changed).length === 0) {
    app.notify("No limit changed.");
    return;
  }
  const id = state.tenantID;
  el.limitsSave.disabled = true;
  try {
    const t = await api.patchTenant(id, { limits: changed });
    if (state.tenantID !== id) return;
    state.tenant = t;
    renderTenant(app);
    fillLimits(el, t.limits);
    app.notify(`Limits of ${t.name} saved.`);
  } catch (err) {
    showError(el.limitsError, handleAPIError(app, err));
  } finally {
    el.limitsSave.disabled = false;
  }
}

export async function toggleSuspend(app) {
  const { el, state } = app;
  const t = state.tenant;
  if (!t) return;
  const suspend = !t.suspended;
  if (suspend) {
    const ok = await app.confirm({
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
    renderTenant(app);
    app.notify(suspend ? `${nt.name} is suspended.` : `${nt.name} is active again.`);
    loadSessions(app);
  } catch (err) {
    const msg = handleAPIError(app, err);
    if (msg) app.notify(msg, "error");
  } finally {
    el.suspend.disabled = false;
    el.suspend.focus();
  }
}

export const loadSessions = loader("sessions", api.sessions, (app, { sessions }) =>
  renderSessions(app.el, sessions || [], (s) => evict(app, s)),
);

async function evict(app, s) {
  const { el } = app;
  const ok = await app.confirm({
    title: "Evict this session?",
    body: `Session ${s.id} of “${s.sub}” on node ${s.node_id} receives disconnect and does not reconnect by itself.`,
    ok: "Evict",
  });
  if (!ok) return;
  const row = el.sessionsBody.querySelector(`tr[data-key="${CSS.escape(s.id)}"]`);
  const next = row?.nextElementSibling?.querySelector("button") || row?.previousElementSibling?.querySelector("button") || el.sessionsRefresh;
  try {
    await api.evict(s.id);
    app.notify(`Session ${s.id} evicted.`);
    row?.remove();
    show(el.sessionsEmpty, el.sessionsBody.rows.length === 0);
    next.focus();
  } catch (err) {
    const msg = handleAPIError(app, err);
    if (msg) app.notify(msg, "error");
  }
  loadSessions(app);
}

function startSessionsTimer(app) {
  const { el, state } = app;
  stopSessionsTimer(state);
  state.sessionsTimer = setInterval(() => {
    if (document.hidden || el.dialog.open) return;
    loadSessions(app);
    loadPresence(app);
    loadWebhooks(app);
  }, 10000);
}
