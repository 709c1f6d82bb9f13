// Views are chosen by the URL hash: "#/" is the overview, "#/tenants/<id>" one tenant.

import { token } from "./api.js";
import { showView } from "./render/views.js";
import { stopSessionsTimer } from "./state.js";
import { openTenant } from "./tenant-view.js";

export function route(app, moveFocus) {
  const { el, state } = app;
  if (!token.get()) {
    showView(app, "login");
    document.title = "Sign in · Streamgate admin";
    return;
  }
  const m = /^#\/tenants\/([^/]+)$/.exec(location.hash);
  if (m) {
    const id = decodeURIComponent(m[1]);
    showView(app, "tenant");
    if (id !== state.tenantID || !state.tenant) openTenant(app, id);
    if (moveFocus) el.tenantTitle.focus();
    return;
  }
  stopSessionsTimer(state);
  state.tenantID = "";
  state.tenant = null;
  showView(app, "overview");
  document.title = "Overview · Streamgate admin";
  app.chart.show();
  if (moveFocus) el.overviewTitle.focus();
}
