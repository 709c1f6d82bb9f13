// The cluster's figures, once a second, on the admin API's stats stream.

import { authHeaders } from "./api.js";
import { EventStream } from "./sse.js";

/**
 * statsStream returns the stats feed, not started yet. onStats(stats) gets each decoded
 * `stats` event; onOpen(), onDown(err, delayMs) and onAuthError(err) follow the connection.
 */
export function statsStream({ onStats, onOpen, onDown, onAuthError }) {
  const stream = new EventStream("/admin/api/stats/stream", { headers: () => authHeaders() });
  stream.onOpen = onOpen;
  stream.onDown = onDown;
  stream.onAuthError = onAuthError;
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
  return stream;
}
