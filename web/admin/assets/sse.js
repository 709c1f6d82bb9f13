// Server-sent events read with fetch, so that the admin token travels in the Authorization
// header rather than in the URL (EventSource cannot set headers, and URLs end up in logs).
// The parser follows the WHATWG event-stream rules; reconnection follows EventSource's
// semantics (server `retry:` hint, Last-Event-ID) with exponential backoff on top.

/** SSEParser turns chunks of text into events; call push() with each decoded chunk. */
export class SSEParser {
  constructor(onEvent, onRetry) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buf = "";
    this.reset();
    this.lastEventId = "";
    this.sawBOM = false;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.hasData = false;
  }

  push(text) {
    if (!this.sawBOM) {
      this.sawBOM = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.buf += text;
    // Lines end with CRLF, LF or CR. A lone CR at the end of the buffer may be the first half
    // of a CRLF, so it waits for the next chunk.
    let start = 0;
    for (;;) {
      let i = start;
      const n = this.buf.length;
      while (i < n && this.buf[i] !== "\n" && this.buf[i] !== "\r") i++;
      if (i >= n) break;
      if (this.buf[i] === "\r" && i + 1 >= n) break;
      this.line(this.buf.slice(start, i));
      start = i + (this.buf[i] === "\r" && this.buf[i + 1] === "\n" ? 2 : 1);
    }
    this.buf = this.buf.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.hasData) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.reset();
      return;
    }
    if (line[0] === ":") return; // comment, e.g. a heartbeat
    const colon = line.indexOf(":");
    let field = line, value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
    }
    switch (field) {
      case "event": this.type = value; break;
      case "data": this.data.push(value); this.hasData = true; break;
      case "id": if (!value.includes("\0")) this.lastEventId = value; break;
      case "retry": if (/^\d+$/.test(value)) this.onRetry(Number(value)); break;
    }
  }
}

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
      const parser = new SSEParser((ev) => {
        this.lastEventId = ev.id;
        this.onEvent(ev);
      }, (ms) => { this.retryHint = Math.max(ms, 250); });
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
      // Backoff: the server's retry hint, doubled per consecutive failure, capped, with jitter
      // so that many dashboards do not reconnect in step.
      const base = Math.min(this.maxDelay, this.retryHint * 2 ** (this.failures - 1));
      const delay = Math.round(base / 2 + Math.random() * base / 2);
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
