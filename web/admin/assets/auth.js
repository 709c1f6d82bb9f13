// Signing in with the admin token and out again.

import { api, APIError, token } from "./api.js";
import { show, showError } from "./render/dom.js";
import { clearPresence } from "./render/presence.js";
import { clearWebhooks } from "./render/webhooks.js";
import { showView } from "./render/views.js";
import { forget } from "./state.js";

export const TOKEN_REFUSED = "The admin token was refused. Sign in again.";

/** signIn handles the login form's submit: onSignedIn(stats) runs once the token is accepted. */
export async function signIn({ el }, ev, onSignedIn) {
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
    onSignedIn(stats);
  } catch (err) {
    const msg = err instanceof APIError && err.status === 401 ? "That token is not the admin token." : err.message;
    showError(el.loginError, msg);
    el.loginToken.setAttribute("aria-invalid", "true");
    el.loginToken.focus();
  } finally {
    el.loginSubmit.disabled = false;
  }
}

export function signOut(app, message) {
  const { el } = app;
  token.clear();
  app.stream.stop();
  forget(app.state);
  app.chart.clear();
  el.tenantsBody.replaceChildren();
  el.nodesBody.replaceChildren();
  el.sessionsBody.replaceChildren();
  clearPresence(el);
  clearWebhooks(el);
  show(el.controls, false);
  showView(app, "login");
  if (message) showError(el.loginError, message);
  el.loginToken.focus();
}

/** handleAPIError signs out on a refused token and otherwise returns the message to show. */
export function handleAPIError(app, err) {
  if (err instanceof APIError && err.status === 401) {
    signOut(app, TOKEN_REFUSED);
    return "";
  }
  return err.message;
}
