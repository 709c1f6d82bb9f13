// The Streamgate client: one stream that stays alive (resume with the last cursor after any drop,
// backoff with jitter, token refresh without reconnecting), the sessions API, and job watching.

import { createParser } from "./sse.js";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";

/** The events a stream carries (docs/events.md). */
export const EVENTS = Object.freeze([
  "connected",
  "message",
  "job",
  "workflow",
  "presence",
  "subscribed",
  "unsubscribed",
  "reset",
  "lagging",
  "auth_failed",
  "disconnect",
  "token_expiring",
]);

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const CLOSED = 2; // EventSource.CLOSED

/** An error of the client: a refusal of the server (with its status and code), a network failure, a getToken failure. */
export class StreamgateError extends Error {
  constructor(message, { status = 0, code = "", cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "StreamgateError";
    this.status = status;
    this.code = code;
  }
}

async function errorFrom(res, what) {
  let code = "";
  let message = `${what}: HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = String(body.error.code || "");
      message = `${what}: ${body.error.message || code} (HTTP ${res.status})`;
    }
  } catch {
    // not a JSON error: keep the status
  }
  return new StreamgateError(message, { status: res.status, code });
}

function callbackName(event) {
  return "on" + event.replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase());
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Opens a stream and keeps it alive. See index.d.ts for the options and the client's methods.
 */
export function connect(options) {
  if (!options || typeof options.url !== "string" || options.url === "") {
    throw new TypeError("connect: `url` is required (the node's base URL, e.g. http://localhost:8080)");
  }
  if (typeof options.getToken !== "function") {
    throw new TypeError("connect: `getToken` is required (a function returning an end-user token)");
  }
  const base = options.url.replace(/\/+$/, "");
  const getToken = options.getToken;
  const fetchFn = options.fetch || (typeof globalThis.fetch === "function" ? globalThis.fetch.bind(globalThis) : null);
  const EventSourceImpl = options.EventSource || globalThis.EventSource;
  const transport = options.transport || (EventSourceImpl ? "eventsource" : "fetch");
  if (transport !== "eventsource" && transport !== "fetch") {
    throw new TypeError(`connect: transport must be "eventsource" or "fetch", not ${JSON.stringify(transport)}`);
  }
  if (transport === "eventsource" && !EventSourceImpl) {
    throw new TypeError("connect: no EventSource here: pass `EventSource` or use transport: \"fetch\"");
  }
  if (!fetchFn) {
    throw new TypeError("connect: no fetch here: pass `fetch`");
  }
  const backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };

  const listeners = new Map(); // event name -> Set of functions
  let subs = new Set(options.channels || []);
  let token = null;
  let cursor = options.lastEventId || "";
  let sessionId = "";
  let state = "connecting"; // connecting | open | closed
  let attempt = 0;
  let timer = null;
  let current = null; // the open connection: {close()}
  let generation = 0; // bumped whenever a connection is dropped: late callbacks of old ones are ignored
  let closed = false;
  let closedBy = null; // the error the client stopped with
  const openWaiters = new Set(); // {resolve, reject} waiting for the stream to be open
  const closeHooks = new Set(); // run with the error when the client stops for good
  const lastState = new Map(); // job: and workflow: channel -> the last state received

  function emit(name, data) {
    const fns = [options[callbackName(name)], options.onEvent && ((d) => options.onEvent(name, d))];
    for (const fn of listeners.get(name) || []) fns.push(fn);
    for (const fn of fns) {
      if (typeof fn !== "function") continue;
      try {
        fn(data);
      } catch (err) {
        if (name !== "error") emit("error", new StreamgateError(`a "${name}" listener threw`, { cause: err }));
      }
    }
  }

  function drop() {
    generation++;
    const c = current;
    current = null;
    if (c) c.close();
    if (!closed) state = "connecting";
  }

  function schedule(atLeast = 0) {
    if (closed) return;
    clearTimeout(timer);
    const delay = Math.max(backoffDelay(attempt++, backoff), atLeast);
    timer = setTimeout(open, delay);
  }

  function stop(err) {
    if (closed) return;
    drop();
    closed = true;
    state = "closed";
    clearTimeout(timer);
    timer = null;
    const reason = err || new StreamgateError("client closed", { code: "closed" });
    closedBy = reason;
    for (const w of openWaiters) w.reject(reason);
    openWaiters.clear();
    for (const hook of closeHooks) hook(reason);
    closeHooks.clear();
  }

  // handle applies one event of the stream, then tells the listeners.
  function handle(name, raw, id) {
    let data;
    try {
      data = JSON.parse(raw);
    } catch (err) {
      emit("error", new StreamgateError(`a "${name}" event whose data is not JSON`, { cause: err }));
      return;
    }
    if (id) cursor = id;
    switch (name) {
      case "connected":
        state = "open";
        attempt = 0;
        sessionId = data.session_id;
        subs = new Set(data.channels || []);
        for (const w of openWaiters) w.resolve(sessionId);
        openWaiters.clear();
        break;
      case "subscribed":
        subs.add(data.channel);
        break;
      case "unsubscribed":
        subs.delete(data.channel);
        lastState.delete(data.channel);
        break;
      case "reset":
        subs = new Set(data.channels || []);
        break;
      case "job":
        lastState.set(data.channel, data.job);
        break;
      case "workflow":
        lastState.set(data.channel, data.workflow);
        break;
      case "lagging":
      case "auth_failed":
      case "disconnect":
        drop(); // the server closes the stream after these
        break;
      default:
        break;
    }
    emit(name, data);
    switch (name) {
      case "token_expiring":
        refreshToken().catch((err) => emit("error", err));
        break;
      case "lagging":
        schedule();
        break;
      case "auth_failed":
        token = null; // a fresh token before reconnecting
        schedule();
        break;
      case "disconnect":
        if (data.reconnect) schedule();
        else stop(new StreamgateError(`disconnected: ${data.reason}`, { code: "disconnect" }));
        break;
      default:
        break;
    }
  }

  function streamURL() {
    const q = new URLSearchParams();
    for (const c of subs) q.append("channel", c);
    if (transport === "eventsource") {
      q.set("token", token);
      if (cursor) q.set("last_event_id", cursor);
    }
    return `${base}/v1/stream?${q}`;
  }

  async function open() {
    timer = null;
    if (closed) return;
    drop();
    const gen = generation;
    if (!token) {
      try {
        const t = await getToken();
        if (typeof t !== "string" || t === "") throw new TypeError("getToken returned no token");
        token = t;
      } catch (err) {
        if (gen !== generation || closed) return;
        emit("error", new StreamgateError("getToken failed", { cause: err }));
        schedule();
        return;
      }
      if (gen !== generation || closed) return;
    }
    if (transport === "fetch") openFetch(gen);
    else openEventSource(gen);
  }

  function openEventSource(gen) {
    const es = new EventSourceImpl(streamURL());
    current = { close: () => es.close() };
    let live = false; // a connected event came since the last error
    for (const name of EVENTS) {
      es.addEventListener(name, (e) => {
        if (gen !== generation) return;
        if (name === "connected") live = true;
        handle(name, e.data, e.lastEventId);
      });
    }
    es.onerror = () => {
      if (gen !== generation) return;
      const wasLive = live;
      live = false;
      if (wasLive && es.readyState !== CLOSED) {
        // A drop of a live stream: EventSource reconnects by itself and sends Last-Event-ID.
        state = "connecting";
        return;
      }
      // Refused, or its own reconnection failed: every further attempt is ours, with the latest
      // token (maybe that was the refusal's cause), the cursor, and backoff with jitter.
      drop();
      token = null;
      emit("error", new StreamgateError("stream connection failed", { code: "network" }));
      schedule();
    };
  }

  async function openFetch(gen) {
    const controller = new AbortController();
    current = { close: () => controller.abort() };
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
    if (cursor) headers["Last-Event-ID"] = cursor;
    let res;
    try {
      res = await fetchFn(streamURL(), { headers, signal: controller.signal, cache: "no-store" });
    } catch (err) {
      if (gen !== generation || closed) return;
      drop();
      emit("error", new StreamgateError("stream connection failed", { code: "network", cause: err }));
      schedule();
      return;
    }
    if (gen !== generation || closed) {
      controller.abort();
      return;
    }
    if (!res.ok) {
      const err = await errorFrom(res, "stream refused");
      if (gen !== generation || closed) return;
      drop();
      emit("error", err);
      if (res.status === 401) {
        token = null;
      } else if (res.status === 400 && cursor) {
        cursor = ""; // a cursor the server does not take: start afresh
      } else if (res.status === 400 || (res.status === 403 && err.code === "forbidden")) {
        stop(err); // bad channels, or channels the user may not read: retrying changes nothing
        return;
      }
      const retryAfter = Number(res.headers.get("Retry-After"));
      schedule(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0);
      return;
    }
    const parser = createParser({
      onEvent: (e) => {
        if (gen === generation) handle(e.event, e.data, e.id);
      },
    });
    const decoder = new TextDecoder();
    try {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done || gen !== generation) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch (err) {
      if (gen !== generation || closed) return;
      emit("error", new StreamgateError("stream interrupted", { code: "network", cause: err }));
    }
    if (gen !== generation || closed) return;
    // The server or the network ended the stream: resume with the last cursor.
    drop();
    schedule();
  }

  function ready() {
    if (closed) return Promise.reject(closedBy);
    if (state === "open") return Promise.resolve(sessionId);
    return new Promise((resolve, reject) => openWaiters.add({ resolve, reject }));
  }

  async function refreshToken() {
    let fresh;
    try {
      fresh = await getToken();
      if (typeof fresh !== "string" || fresh === "") throw new TypeError("getToken returned no token");
    } catch (err) {
      throw new StreamgateError("getToken failed", { cause: err });
    }
    if (closed) return;
    const sid = sessionId;
    let res;
    try {
      res = await fetchFn(`${base}/v1/sessions/${encodeURIComponent(sid)}/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${fresh}` },
        body: JSON.stringify({ token: fresh }),
      });
    } catch (err) {
      token = fresh; // the next connection presents it
      throw new StreamgateError("token refresh failed", { code: "network", cause: err });
    }
    if (res.ok) {
      token = fresh;
      return;
    }
    const err = await errorFrom(res, "token refresh refused");
    if (res.status !== 401 && res.status !== 403) token = fresh;
    throw err;
  }

  // sessionCall changes the session's channels, waiting for the stream to be open and retrying
  // while the session is between connections.
  async function sessionCall(method, channel) {
    for (let tries = 0; ; tries++) {
      const sid = await ready();
      const path = `${base}/v1/sessions/${encodeURIComponent(sid)}/subscriptions`;
      const init = { method, headers: { Authorization: `Bearer ${token}` } };
      let url = path;
      if (method === "POST") {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify({ channel });
      } else {
        url = `${path}/${encodeURIComponent(channel)}`;
      }
      let res;
      try {
        res = await fetchFn(url, init);
      } catch (err) {
        if (tries < 3) {
          await sleep(backoffDelay(tries, { base: 250, cap: 2000 }));
          continue;
        }
        throw new StreamgateError(`${method} subscription failed`, { code: "network", cause: err });
      }
      if (res.ok) return;
      const err = await errorFrom(res, method === "POST" ? `subscribe ${channel}` : `unsubscribe ${channel}`);
      if (tries < 3 && (res.status === 404 || res.status === 503 || res.status === 401)) {
        // 404: the stream just ended and the session is resuming; 401: the token expired.
        if (res.status === 401) token = null;
        await sleep(backoffDelay(tries, { base: 250, cap: 2000 }));
        if (res.status === 401 && !token) {
          try {
            token = await getToken();
          } catch (cause) {
            throw new StreamgateError("getToken failed", { cause });
          }
        }
        continue;
      }
      throw err;
    }
  }

  async function subscribe(channel) {
    await sessionCall("POST", channel);
    subs.add(channel); // kept for every later connection, including one that starts afresh
  }

  async function unsubscribe(channel) {
    await sessionCall("DELETE", channel);
    subs.delete(channel);
    lastState.delete(channel);
  }

  function on(name, fn) {
    if (typeof fn !== "function") throw new TypeError("on: a function is required");
    if (!listeners.has(name)) listeners.set(name, new Set());
    listeners.get(name).add(fn);
    return () => off(name, fn);
  }

  function off(name, fn) {
    const set = listeners.get(name);
    if (set) set.delete(fn);
  }

  function watch(kind, id, { onProgress, signal } = {}) {
    const channel = `${kind}:${id}`;
    return new Promise((resolve, reject) => {
      let done = false;
      let subscribedHere = false;
      const finish = (err, value) => {
        if (done) return;
        done = true;
        stopListening();
        closeHooks.delete(onClose);
        if (signal) signal.removeEventListener("abort", onAbort);
        if (subscribedHere && !closed) unsubscribe(channel).catch(() => {});
        if (err) reject(err);
        else resolve(value);
      };
      const check = (value) => {
        if (onProgress) {
          try {
            onProgress(value);
          } catch (err) {
            finish(err);
            return;
          }
        }
        if (TERMINAL.has(value.status)) finish(null, value);
      };
      const stopListening = on(kind, (d) => {
        if (d.channel === channel) check(d[kind]);
      });
      const onClose = (err) => finish(err);
      const onAbort = () => finish(signal.reason || new StreamgateError("aborted", { code: "aborted" }));
      if (closed) {
        finish(closedBy);
        return;
      }
      closeHooks.add(onClose);
      if (signal) {
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort);
      }
      if (subs.has(channel)) {
        const known = lastState.get(channel);
        if (known) check(known);
      } else {
        subscribedHere = true;
        subscribe(channel).catch((err) => finish(err));
      }
    });
  }

  timer = setTimeout(open, 0);

  return {
    on,
    off,
    subscribe,
    unsubscribe,
    refreshToken,
    ready,
    watchJob: (id, opts) => watch("job", id, opts),
    watchWorkflow: (id, opts) => watch("workflow", id, opts),
    close: () => stop(),
    get state() {
      return state;
    },
    get sessionId() {
      return sessionId;
    },
    get lastEventId() {
      return cursor;
    },
    get channels() {
      return [...subs];
    },
  };
}
