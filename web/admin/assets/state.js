// The dashboard's state: the last stats and the rates derived from them, the tenants table's
// sort and filter, and the open view.

export function newState() {
  return {
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
    tenantMembers: -1, // likewise its presence members, to reload its presence
    tenantDead: -1, // and its dead webhook deliveries, to reload its webhooks
    sessionsTimer: 0,
    loading: { sessions: null, presence: null, webhooks: null },
  };
}

export function stopSessionsTimer(state) {
  clearInterval(state.sessionsTimer);
  state.sessionsTimer = 0;
}

/** forget drops what was learned while signed in; the sort and filter stay. */
export function forget(state) {
  stopSessionsTimer(state);
  Object.assign(state, { stats: null, prev: null, lastStatsAt: 0, streamUp: false, retryAt: 0, tenant: null, tenantID: "", tenantConns: -1, tenantMembers: -1, tenantDead: -1 });
  state.tenantRates.clear();
}
