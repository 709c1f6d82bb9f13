// Server-sent events read with fetch, so that the admin token travels in the Authorization
// header rather than in the URL (EventSource cannot set headers, and URLs end up in logs).
// The parser and the backoff are the JavaScript client's (clients/js, mounted at ./client/):
// reconnection follows EventSource's semantics (server `retry:` hint, Last-Event-ID) with the
// client's exponential backoff and full jitter on top.

import { createParser } from "./client/src/sse.js";
import { backoffDelay } from "./client/src/backoff.js";

/** AuthError means the server refused the credentials; reconnecting will not help. */
export class AuthError extends Error {}

/**
 * EventStream keeps one SSE request open, reconnecting with backoff until stop() is called.
 * Handlers: onEvent(ev), onOpen(), onDown(err, delayMs), onAuthError(err).
 * A stream that goes quiet for longer than idleMs is treated as dead and reopened.
 */
export class EventStream {
  constructor(url, { headers = () => ({}), idleMs = 6000, minDelay = 1000, maxDelay = 30000 } = {}) {
    this.url = url;
    this.headers = headers;
    this.idleMs = idleMs;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.retryHint = minDelay;
    this.failures = 0;
    this.stopped = true;
    this.controller = null;
    this.timer = 0;
    this.lastEventId = "";
    this.onEvent = () => {};
    this.onOpen = () => {};
    this.onDown = () => {};
    this.onAuthError = () => {};
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.controller?.abort();
    this.controller = null;
  }

  /** healthy tells the stream that the feed works, so that the next failure starts the backoff afresh. */
  healthy() {
    this.failures = 0;
  }

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    let idle = 0;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(new Error("no data for " + this.idleMs / 1000 + " s")), this.idleMs);
    };
    try {
      const headers = { Accept: "text/event-stream", ...this.headers() };
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      touch();
      const resp = await fetch(this.url, { headers, signal: controller.signal, cache: "no-store", credentials: "omit" });
      if (resp.status === 401 || resp.status === 403) {
        throw new AuthError(await errorMessage(resp));
      }
      if (!resp.ok) throw new Error(await errorMessage(resp));
      if (!(resp.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        throw new Error("not an event stream");
      }
      this.onOpen();
      const parser = createParser({
        onEvent: (ev) => {
          this.lastEventId = ev.lastEventId;
          this.onEvent({ type: ev.event, data: ev.data, id: ev.lastEventId });
        },
        onRetry: (ms) => { this.retryHint = Math.max(ms, 250); },
      });
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        touch();
        parser.push(value);
      }
      throw new Error("the server closed the stream");
    } catch (err) {
      if (this.stopped || this.controller !== controller) return;
      if (err instanceof AuthError) {
        this.stop();
        this.onAuthError(err);
        return;
      }
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      this.failures++;
      // Backoff: from the server's retry hint, doubled per consecutive failure, capped, with
      // full jitter so that many dashboards do not reconnect in step.
      const delay = backoffDelay(this.failures - 1, { base: this.retryHint, cap: this.maxDelay });
      this.onDown(reason, delay);
      this.timer = setTimeout(() => { if (!this.stopped) this.connect(); }, delay);
    } finally {
      clearTimeout(idle);
      if (!controller.signal.aborted) controller.abort();
    }
  }
}

async function errorMessage(resp) {
  try {
    const body = await resp.json();
    if (body?.error?.message) return body.error.message;
  } catch { /* not JSON */ }
  return `HTTP ${resp.status}`;
}
