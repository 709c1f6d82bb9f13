// The Streamgate operator dashboard: plain JavaScript modules, no build step. This is the entry
// and the only module that does anything when loaded: once the document is parsed it builds the
// parts and wires them to the page. The cluster's figures arrive once a second on the stats
// stream; rates are derived here from consecutive samples.

import { token } from "./api.js";
import { signIn, signOut, TOKEN_REFUSED } from "./auth.js";
import { LiveChart } from "./render/chart.js";
import { confirmDialog } from "./render/confirm.js";
import { show } from "./render/dom.js";
import { findElements } from "./render/elements.js";
import { renderLive } from "./render/live.js";
import { notifier } from "./render/notice.js";
import { renderSortHeaders, renderTenants, sortBy, sortHeaders } from "./render/overview.js";
import { route } from "./router.js";
import { newState } from "./state.js";
import { onStats } from "./stats.js";
import { statsStream } from "./stats-stream.js";
import { loadPresence, loadWebhooks } from "./tenant-health.js";
import { loadSessions, resetLimits, saveLimits, toggleSuspend } from "./tenant-view.js";

function start() {
  const el = findElements();
  const state = newState();
  const app = { el, state, chart: new LiveChart(el.chart), confirm: confirmDialog(el), notify: notifier(el.notice) };
  app.stream = statsStream({
    onStats: (stats) => onStats(app, stats),
    onOpen: () => {
      state.streamUp = true;
      state.retryAt = 0;
      renderLive(app);
    },
    onDown: (err, delay) => {
      state.streamUp = false;
      state.retryAt = Date.now() + delay;
      renderLive(app);
    },
    onAuthError: () => signOut(app, TOKEN_REFUSED),
  });

  const signedIn = (firstStats, moveFocus) => {
    show(el.controls, true);
    if (firstStats) onStats(app, firstStats);
    app.stream.start();
    route(app, moveFocus);
  };
  el.loginForm.addEventListener("submit", (ev) => signIn(app, ev, (stats) => signedIn(stats, true)));
  el.logout.addEventListener("click", () => signOut(app));
  setInterval(() => renderLive(app), 500);

  for (const th of sortHeaders(el)) {
    th.querySelector("button").addEventListener("click", () => {
      sortBy(state, th.dataset.key);
      renderSortHeaders(app);
      renderTenants(app);
    });
  }
  renderSortHeaders(app);
  el.filter.addEventListener("input", () => {
    state.filter = el.filter.value.trim();
    renderTenants(app);
  });

  el.limitsReset.addEventListener("click", () => resetLimits(app));
  el.limitsForm.addEventListener("submit", (ev) => saveLimits(app, ev));
  el.suspend.addEventListener("click", () => toggleSuspend(app));
  el.sessionsRefresh.addEventListener("click", () => loadSessions(app));
  el.presenceRefresh.addEventListener("click", () => loadPresence(app));
  el.webhooksRefresh.addEventListener("click", () => loadWebhooks(app));
  window.addEventListener("hashchange", () => route(app, true));

  if (token.get()) signedIn(null, false);
  else route(app, false);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
