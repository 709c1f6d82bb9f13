// The open tenant's presence and webhook health: loaded with its page, again with its sessions
// every 10 seconds, and at once when the stats say its members or dead deliveries changed.

import { api } from "./api.js";
import { handleAPIError } from "./auth.js";
import { showError } from "./render/dom.js";
import { renderPresence } from "./render/presence.js";
import { renderWebhooks } from "./render/webhooks.js";

/**
 * loader returns load(app): fetch(tenant id) then render(app, answer), one call at a time, for
 * the tenant still open when the answer comes.
 */
export function loader(name, fetch, render) {
  return (app) => {
    const { el, state } = app;
    if (state.loading[name]) return state.loading[name];
    const id = state.tenantID;
    state.loading[name] = (async () => {
      try {
        const answer = await fetch(id);
        if (state.tenantID === id) render(app, answer);
      } catch (err) {
        if (state.tenantID !== id) return;
        const msg = handleAPIError(app, err);
        if (msg) showError(el.tenantError, msg);
      } finally {
        state.loading[name] = null;
      }
    })();
    return state.loading[name];
  };
}

export const loadPresence = loader("presence", api.presence, ({ el }, p) => renderPresence(el, p));
export const loadWebhooks = loader("webhooks", api.webhooks, ({ el }, w) => renderWebhooks(el, w));
