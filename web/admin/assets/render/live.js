// The live indicator in the header: live, stale or connecting, and when the feed reconnects.

import { token } from "../api.js";
import { ago, fmtClock } from "../format.js";
import { setText } from "./dom.js";

const STALE_MS = 3000;

export function renderLive({ el, state }) {
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
