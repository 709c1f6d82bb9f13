// The tenant's webhooks: each endpoint's state, last success and failure and dead deliveries,
// and the newest failed attempts over all of them.

import { ago, fmtClock, fmtInt, fmtStamp, plural } from "../format.js";
import { cell, h, setText, show, syncRows } from "./dom.js";

/** status says whether an endpoint is sent deliveries, and why not. */
function status(w) {
  if (!w.disabled) {
    if (w.dead_in_a_row > 0) return { text: `Enabled · ${plural(w.dead_in_a_row, "dead delivery", "dead deliveries")} in a row`, warn: true };
    return { text: "Enabled", warn: false };
  }
  if (w.disabled_reason === "failing") return { text: `Disabled after ${plural(w.dead_in_a_row, "dead delivery", "dead deliveries")} in a row`, warn: true };
  return { text: "Disabled by the tenant", warn: false };
}

/** setTime writes an attempt's time into a <time> element as "4 min ago", or "—" for none. */
function setTime(time, at, now) {
  if (!at) {
    time.removeAttribute("datetime");
    time.title = "None among the last 100 attempts";
    setText(time, "—");
    return;
  }
  const d = new Date(at);
  time.dateTime = at;
  time.title = fmtStamp(d);
  setText(time, ago(d, now) + " ago");
}

/** what says what went wrong with an attempt, in the server's words. */
function what(a) {
  return a.error || (a.response_status ? `The endpoint answered ${a.response_status}.` : "");
}

/** renderWebhooks shows GET /admin/api/tenants/{id}/webhooks. */
export function renderWebhooks(el, v) {
  const now = Date.now();
  const hooks = v.webhooks || [];
  syncRows(el.webhooksBody, hooks, (w) => w.id,
    () => h("tr", { role: "row" },
      h("th", { scope: "row", role: "rowheader", class: "url" }, h("code"), h("span", { class: "id" })),
      cell("Status", { class: "status" }),
      cell("Last success", {}, h("time")),
      cell("Last failure", { class: "failure" }, h("time"), h("span", { class: "detail" })),
      cell("Dead", { class: "num" })),
    (tr, w) => {
      const [endpoint, st, success, failure, dead] = tr.cells;
      setText(endpoint.firstChild, w.url);
      setText(endpoint.lastChild, w.description ? `${w.id} · ${w.description}` : w.id);
      const s = status(w);
      setText(st, s.text);
      st.classList.toggle("warn", s.warn);
      setTime(success.firstChild, w.last_success?.created_at, now);
      setTime(failure.firstChild, w.last_failure?.created_at, now);
      setText(failure.lastChild, w.last_failure ? what(w.last_failure) : "");
      setText(dead, fmtInt(w.dead));
      dead.classList.toggle("warn", w.dead > 0);
    });
  show(el.webhooksEmpty, hooks.length === 0);
  const disabled = hooks.filter((w) => w.disabled).length;
  let summary = plural(hooks.length, "endpoint", "endpoints");
  if (disabled) summary += `, ${fmtInt(disabled)} disabled`;
  summary += ` · ${plural(v.dead, "dead delivery", "dead deliveries")} kept (7 days).`;
  setText(el.webhooksSummary, summary);

  const failures = v.recent_failures || [];
  syncRows(el.failuresBody, failures, (f) => `${f.webhook_id}/${f.id}/${f.attempt}`,
    () => h("tr", { role: "row" },
      h("th", { scope: "row", role: "rowheader" }, h("time")),
      cell("Endpoint", { class: "url" }, h("code")),
      cell("Event", {}, h("code")),
      cell("Attempt", { class: "num" }),
      cell("Outcome"),
      cell("Response", { class: "num" }),
      cell("Error", { class: "wide" })),
    (tr, f) => {
      const [when, endpoint, event, attempt, outcome, response, error] = tr.cells;
      setTime(when.firstChild, f.created_at, now);
      setText(endpoint.firstChild, f.url);
      setText(event.firstChild, f.event_type);
      setText(attempt, fmtInt(f.attempt));
      setText(outcome, f.status === "dead" ? "Dead: no retry left"
        : f.next_attempt_at ? `Failed, retry at ${fmtClock(new Date(f.next_attempt_at))}` : "Failed");
      outcome.classList.toggle("warn", f.status === "dead");
      setText(response, f.response_status ? String(f.response_status) : "—");
      setText(error, f.error || "—");
    });
  show(el.failuresEmpty, failures.length === 0);
}

export function clearWebhooks(el) {
  el.webhooksBody.replaceChildren();
  el.failuresBody.replaceChildren();
  show(el.webhooksEmpty, false);
  show(el.failuresEmpty, false);
  setText(el.webhooksSummary, "");
}
