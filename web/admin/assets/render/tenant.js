// The tenant view: its title and status, usage figures, the limits form and the sessions table
// (presence.js and webhooks.js draw its other tables).

import { ago, fmtClock, fmtInt, fmtStamp } from "../format.js";
import { $$, cell, h, setText, show, showError, syncRows } from "./dom.js";
import { clearPresence } from "./presence.js";
import { clearWebhooks } from "./webhooks.js";

const LIMIT_FIELDS = ["max_connections", "max_subscriptions_per_session", "publish_per_second", "max_message_bytes", "history_events", "history_seconds"];

/** clearTenant empties the view while tenant id loads. */
export function clearTenant(el, id) {
  showError(el.tenantError, "");
  showError(el.limitsError, "");
  el.tenantTitle.textContent = "Tenant";
  setText(el.tenantMeta, id);
  el.tenantStatus.hidden = true;
  el.sessionsBody.replaceChildren();
  show(el.sessionsEmpty, false);
  clearPresence(el);
  clearWebhooks(el);
  setTenantFormEnabled(el, false);
}

export function setTenantFormEnabled(el, on) {
  for (const input of el.limitsForm.elements) input.disabled = !on;
  el.suspend.disabled = !on;
  el.sessionsRefresh.disabled = !on;
  el.presenceRefresh.disabled = !on;
  el.webhooksRefresh.disabled = !on;
}

export function renderTenant({ el, state }) {
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
    dropped_total: t.dropped_total, evicted_total: t.evicted_total, presence_members: t.presence_members,
  });
}

export function renderUsage(u) {
  for (const dd of $$("[data-usage]")) setText(dd, fmtInt(u[dd.dataset.usage]));
}

export function fillLimits(el, limits) {
  for (const name of LIMIT_FIELDS) {
    const input = el.limitsForm.elements[name];
    input.value = String(limits[name]);
    input.removeAttribute("aria-invalid");
  }
}

/**
 * readLimits returns the limits the form changes from current, or null after pointing at the
 * first field that is not a whole number within its bounds.
 */
export function readLimits(el, current) {
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
      return null;
    }
    if (v !== current[name]) changed[name] = v;
  }
  return changed;
}

/** renderSessions lists the tenant's live sessions; onEvict(session) is each row's button. */
export function renderSessions(el, sessions, onEvict) {
  const now = Date.now();
  syncRows(el.sessionsBody, sessions, (s) => s.id,
    (s) => h("tr", { role: "row" },
      h("th", { scope: "row", role: "rowheader" }, h("code")),
      cell("Subject", { class: "sub" }),
      cell("Node", {}, h("code")),
      cell("Channels", { class: "channels wide" }),
      cell("Dropped", { class: "num" }),
      cell("Connected since", {}, h("time")),
      cell("", { class: "action" }, h("button", { type: "button", class: "danger small", dataset: { evict: s.id }, onclick: () => onEvict(s) }, "Evict"))),
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
