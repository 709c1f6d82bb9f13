#!/usr/bin/env node
// scripts/xload/xload.mjs measures a Streamgate api node the way an outside user's SSE load tool
// would: plain HTTP/1.1 EventSource-style streams with the token in the query string, events
// published over REST with the send time in their data, and the server's memory and CPU read
// from /proc. It is written apart from cmd/sgbench, in another language, so that the two can
// check each other's figures: see README.md next to this file.
//
// Roles: the process started from the command line is the coordinator. It signs a tenant up,
// forks worker processes that hold the streams (a Node process runs its JavaScript on one
// thread, so thousands of sockets are spread over several), forks publisher processes (so
// that a busy receiver cannot delay the publishes they time), samples /proc, and prints the
// result. The children talk to it over the fork's IPC channel and exit when it goes away.
//
// Only Node's built-in modules: nothing to install.

import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import { fork, execFileSync } from "node:child_process";

const USAGE = `usage: node xload.mjs --scenario A|B'|C --url http://127.0.0.1:8080 [--api-pid PID] [--redis-pid PID] [flags]

scenarios (the defaults of each are those of make bench):
  A    10,000 idle streams connecting at 5,000/s: time until all are connected, api RSS per
       stream 10 s after, api RSS 60 s after they all left
  B'   2,500 subscribers of one channel, 200 events at 10/s: delivery latency, lost events
  C    10,000 subscribers each on its own channel, 2,000 publishes/s for 10 s: publish and
       delivery latency, api and Redis CPU per publish

flags (each overrides the scenario's default):
  --conns N            streams to open
  --ramp N             connects per second over all workers (0: all at once)
  --events N           events to publish
  --rate N             publishes per second
  --settle S           seconds to wait after the last connect, before sampling and publishing
  --after-leave S      seconds to wait after every stream left before sampling RSS again (0: don't)
  --procs N            worker processes holding the streams (default: one per 5,000, at least 2)
  --publishers N       publisher processes (default: one per 1,000 publishes/s)
  --concurrency N      publish requests in flight at most, over all publishers (default:
                       rate/40, at least 4 per publisher)
  --payload N          bytes of each event's data (default 100)
  --connect-timeout S  one stream's limit from dialling to its connected event (default 15)
  --deadline S         the whole run's limit (default: from the scenario)
  --json FILE          also write the result as JSON to FILE
`;

// Scenario defaults, as scripts/bench.sh runs cmd/sgbench. "shared" puts every stream on one
// channel; "per-conn" gives stream j a channel of its own.
const SCENARIOS = {
  A: { conns: 10000, ramp: 5000, mode: "shared", events: 0, rate: 0, settle: 10, afterLeave: 60 },
  "B'": { conns: 2500, ramp: 2000, mode: "shared", events: 200, rate: 10, settle: 1, afterLeave: 0 },
  C: { conns: 10000, ramp: 2000, mode: "per-conn", events: 20000, rate: 2000, settle: 1, afterLeave: 0 },
};

// Limits that keep a run from hanging: every wait below is bounded by one of these or by the
// run's deadline.
const REQUEST_TIMEOUT_MS = 15000; // signup and /readyz
const PUBLISH_TIMEOUT_MS = 10000; // one publish, from sending to the end of its answer
const READ_TIMEOUT_S = 45; // an open stream silent this long is dead: the server pings every 15 s
const DRAIN_QUIET_MS = 3000; // after publishing, stop waiting once no delivery came for this long
const CHILD_REPLY_MS = 30000; // a child's answer to a request of the coordinator
const PER_WORKER_MAX = 15000; // streams per worker process at most: descriptors, one thread
const PER_WORKER_DEFAULT = 5000;
const RATE_PER_PUBLISHER = 1000; // publishes/s one Node thread keeps up with and times well
const MIN_WORKERS = 2; // a burst of deliveries is read on two cores, not queued behind one thread
const LAG_TICK_MS = 50; // how often a worker checks how late its event loop runs
const MAX_EVENT_BYTES = 1 << 20; // an SSE event longer than this ends the stream
const FAILED_CONNECTS_TOLERATED = 0.01; // more failed connects than this share fail the run

const SELF = process.argv[1];

// ---------------------------------------------------------------------------------------------
// Clocks and /proc

// nowUs is CLOCK_MONOTONIC in microseconds. On Linux that clock is the same in every process,
// so a send time taken by the publisher and a receive time taken by a worker compare directly.
function nowUs() {
  return Number(process.hrtime.bigint() / 1000n);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 wherever Node runs, asked once.
let clockTicks = 0;
function ticksPerSecond() {
  if (clockTicks === 0) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5000 }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

// procCPU is a process's user + system CPU seconds so far. The command name in parentheses may
// hold spaces, so fields are counted after the last ')'.
function procCPU(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
}

// procRSS is a process's VmRSS in KiB.
function procRSS(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`/proc/${pid}/status has no VmRSS`);
  return Number(m[1]);
}

// machineCPU is the whole machine's busy and total jiffies since boot, from /proc/stat's first
// line, so that a reader can tell whether the run had the cores to itself.
function machineCPU() {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] || 0); // idle + iowait
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already in user
  return { busy: total - idle, total };
}

// openFilesLimit is this process's soft RLIMIT_NOFILE (Node cannot raise it: run.sh does).
function openFilesLimit() {
  const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
  return m ? Number(m[1]) : 1024;
}

// ---------------------------------------------------------------------------------------------
// Statistics

// percentiles reads p50, p90, p99 and max out of a list of milliseconds (nearest rank).
function percentiles(values) {
  const n = values.length;
  if (n === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
  return { n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[n - 1] };
}

function concat(arrays) {
  const out = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

function addCounts(into, from) {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] || 0) + n;
  return into;
}

// ---------------------------------------------------------------------------------------------
// HTTP, tokens, event data

// failureReason turns a socket error into a short label that can be counted.
function failureReason(err) {
  const byCode = {
    ECONNREFUSED: "connection refused",
    ECONNRESET: "connection reset",
    EPIPE: "connection reset",
    EMFILE: "too many open files (raise ulimit -n or use more --procs)",
    ENFILE: "too many open files (raise ulimit -n or use more --procs)",
    EADDRNOTAVAIL: "no free local port",
  };
  return byCode[err.code] || err.message.slice(0, 80);
}

// refusalReason reads the API's error code out of a refusal's body:
// {"error":{"code":…,"message":…}}.
function refusalReason(status, body) {
  try {
    const code = JSON.parse(body).error.code;
    if (code) return `HTTP ${status} ${code}`;
  } catch {
    // not the API's error shape: the status says enough
  }
  return `HTTP ${status}`;
}

// requestJSON sends one request with a JSON body (when given) and resolves with the status and
// the decoded answer. It rejects on a network error or after timeoutMs.
function requestJSON(method, url, { bearer, body, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : JSON.stringify(body);
    const headers = {};
    if (data !== null) headers["Content-Type"] = "application/json";
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const req = http.request(url, { method, headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => {
        clearTimeout(timer);
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          // a non-JSON answer: the caller goes by the status
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.end(data);
  });
}

const base64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

// signToken signs an end-user token as docs/api.md ("Signing tokens yourself") says a tenant's
// backend does: HS256, the signing key's id as the header's kid, the key's secret string as
// the HMAC key, claims sub, channels, iat and exp.
function signToken(key, sub, channels, ttlSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const head = base64url({ alg: "HS256", typ: "JWT", kid: key.id });
  const claims = base64url({ sub, channels, iat: now, exp: now + ttlSeconds });
  const sig = crypto.createHmac("sha256", key.secret).update(`${head}.${claims}`).digest("base64url");
  return `${head}.${claims}.${sig}`;
}

// The run's layout, the same in every process: stream j subscribes to channelOf(j); event i goes
// to channel eventChannel(i) as that channel's eventSeq(i)-th event.
function layout({ prefix, mode, conns }) {
  const perConn = mode === "per-conn";
  const channels = perConn ? Math.max(conns, 1) : 1;
  return {
    channels,
    channelOf: (j) => (perConn ? j : 0),
    channelName: (c) => (perConn ? `${prefix}.c${c}` : `${prefix}.all`),
    eventChannel: (i) => i % channels,
    eventSeq: (i) => Math.floor(i / channels),
  };
}

// eventBody is a publish's body. The data carries the event's index and its send time in
// microseconds of nowUs(), padded to about size bytes like sgbench's -payload.
function eventBody(i, sentUs, size) {
  const data = { xl: 1, i, t: sentUs, pad: "" };
  const pad = size - JSON.stringify(data).length;
  if (pad > 0) data.pad = "x".repeat(pad);
  return JSON.stringify({ event: "xload", data });
}

// ---------------------------------------------------------------------------------------------
// SSE parsing, written from the HTML living standard's event-stream rules rather than borrowed,
// so that this client shares no code with the project's own.

class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = "";
    this.heldCR = false; // a chunk ended in "\r": it may be half of a "\r\n"
  }

  // push feeds a chunk of text; it dispatches every complete event and throws when one event
  // grows past MAX_EVENT_BYTES.
  push(chunk) {
    if (this.heldCR) chunk = "\r" + chunk;
    this.heldCR = chunk.endsWith("\r");
    if (this.heldCR) chunk = chunk.slice(0, -1);
    if (chunk.includes("\r")) chunk = chunk.replace(/\r\n?/g, "\n");
    let buf = this.buf + chunk;
    let start = 0;
    for (let end; (end = buf.indexOf("\n\n", start)) >= 0; start = end + 2) {
      this.dispatch(buf.slice(start, end));
    }
    buf = buf.slice(start);
    if (buf.length > MAX_EVENT_BYTES) throw new Error("an event over 1 MiB");
    this.buf = buf;
  }

  dispatch(block) {
    let event = "message";
    let data = null;
    for (const line of block.split("\n")) {
      if (line === "" || line[0] === ":") continue; // a comment (": ping")
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data = data === null ? value : `${data}\n${value}`;
    }
    if (data !== null) this.onEvent(event, data); // a block without data ("retry: …") is no event
  }
}

// ---------------------------------------------------------------------------------------------
// Worker process: holds a share of the streams.

function runWorker() {
  let cfg; // the coordinator's "start" message
  let lay;
  let sessions = [];
  let agent;
  let pending = 0; // streams not yet connected or failed
  let leaving = false;
  const counts = { established: 0, failed: 0, delivered: 0, duplicated: 0, foreign: 0 };
  const failures = {};
  const closes = {};
  const notices = {};
  const connectMs = [];
  const latencyMs = [];
  const lagMs = [];
  let lagWatched = false;
  let lastEstablished = 0;

  process.on("disconnect", () => process.exit(1)); // the coordinator is gone: so are we
  process.on("message", (m) => {
    if (m.type === "start") start(m);
    else if (m.type === "publishing") lagWatched = true;
    else if (m.type === "finish") finish(m.accepted);
    else if (m.type === "close") close();
  });
  process.send({ type: "up" });

  function start(m) {
    cfg = m;
    lay = layout(cfg);
    // HTTP/1.1, a socket of its own per stream: a stream's connection is never reused.
    agent = new http.Agent({ keepAlive: false });
    const seqs = Math.ceil(cfg.events / lay.channels);
    for (let j = cfg.worker; j < cfg.conns; j += cfg.procs) {
      const c = lay.channelOf(j);
      // seen[k] marks the channel's k-th event as received: loss and duplicates by index.
      sessions.push({ j, channel: c, name: lay.channelName(c), state: "new", seen: new Uint8Array(seqs) });
    }
    pending = sessions.length;
    // The worker's own deadline, should the coordinator hang rather than die.
    setTimeout(() => process.exit(1), Math.max(0, (cfg.deadlineUs - nowUs()) / 1000) + 30000).unref();
    setInterval(() => process.send({ type: "progress", ...counts }), 100);
    watchLag();
    if (pending === 0) process.send(readyMessage());
    else ramp(0);
  }

  // ramp opens the streams at the asked pace from the common start time. Stream j is due at
  // start + j/ramp: the workers' streams interleave, so together they keep the whole pace.
  // Nothing caps the connects in flight: a slow server makes them pile up, as real users do.
  function ramp(next) {
    const now = nowUs();
    while (next < sessions.length && dueUs(sessions[next]) <= now) open(sessions[next++]);
    if (next < sessions.length) setTimeout(() => ramp(next), Math.max(0, (dueUs(sessions[next]) - now) / 1000));
  }

  // watchLag measures how late a timer fires while events are published: a receive time is taken
  // when the worker's single thread gets to the data, so this lateness is part of every latency
  // it measures, and the report shows it.
  function watchLag() {
    let due = nowUs() + LAG_TICK_MS * 1000;
    setInterval(() => {
      const now = nowUs();
      if (lagWatched) lagMs.push(Math.max(0, (now - due) / 1000));
      due = now + LAG_TICK_MS * 1000;
    }, LAG_TICK_MS);
  }

  function dueUs(s) {
    return cfg.ramp > 0 ? cfg.startUs + (s.j * 1e6) / cfg.ramp : cfg.startUs;
  }

  function open(s) {
    const token = signToken(cfg.signingKey, `user-${s.j}`, [`${cfg.prefix}.*`], cfg.tokenTTL);
    const path = `${cfg.basePath}/v1/stream?channel=${encodeURIComponent(s.name)}&token=${token}`;
    s.state = "dialing";
    s.dialUs = nowUs();
    const req = http.request({
      host: cfg.host,
      port: cfg.port,
      path,
      agent,
      headers: { Accept: "text/event-stream", "Cache-Control": "no-cache" },
    });
    s.req = req;
    s.timer = setTimeout(() => drop(s, "timeout"), cfg.connectTimeoutS * 1000);
    req.on("response", (res) => onResponse(s, res));
    req.on("error", (err) => ended(s, failureReason(err)));
    req.end();
  }

  function onResponse(s, res) {
    if (res.statusCode !== 200) {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c.slice(0, 65536 - body.length)));
      res.on("end", () => drop(s, refusalReason(res.statusCode, body)));
      return;
    }
    const parser = new SSEParser((event, data) => onEvent(s, event, data));
    res.setEncoding("utf8");
    res.on("data", (chunk) => {
      s.chunkUs = nowUs(); // every event of a chunk arrived when the chunk did
      try {
        parser.push(chunk);
      } catch (err) {
        drop(s, err.message);
      }
    });
    res.on("error", (err) => ended(s, failureReason(err)));
    res.on("close", () => ended(s, "closed by server"));
  }

  function onEvent(s, event, data) {
    if (s.state === "dialing") {
      if (event !== "connected") {
        drop(s, `first event ${event}, not connected`);
        return;
      }
      connected(s);
      return;
    }
    if (event === "message") received(s, data);
    else if (event === "lagging" || event === "disconnect" || event === "auth_failed") {
      notices[event] = (notices[event] || 0) + 1;
    }
  }

  function connected(s) {
    clearTimeout(s.timer);
    s.state = "open";
    const now = s.chunkUs;
    connectMs.push((now - s.dialUs) / 1000);
    lastEstablished = Math.max(lastEstablished, now);
    counts.established++;
    // From now on the socket's idle timeout is the read timeout: pings keep a live stream busy.
    s.req.setTimeout(READ_TIMEOUT_S * 1000, () => drop(s, "read timeout"));
    resolved();
  }

  function received(s, text) {
    let d;
    try {
      d = JSON.parse(text).data;
    } catch {
      counts.foreign++;
      return;
    }
    if (!d || d.xl !== 1 || !Number.isInteger(d.i) || typeof d.t !== "number") {
      counts.foreign++; // someone else's event on the channel
      return;
    }
    latencyMs.push((s.chunkUs - d.t) / 1000);
    const k = lay.eventSeq(d.i);
    if (s.seen[k]) counts.duplicated++;
    else {
      s.seen[k] = 1;
      counts.delivered++;
    }
  }

  // drop ends a stream from this side for a reason of ours, which then wins over the socket
  // errors that destroying it raises. It records the end itself: destroying a request whose
  // answer already ended (a refusal) raises no event at all.
  function drop(s, why) {
    s.why ??= why;
    s.req.destroy();
    ended(s, why);
  }

  // ended records the end of a stream once, whichever of the request's and the response's
  // events reports it first: a failed connect, or a stream that closed before the run let go.
  function ended(s, reason) {
    const why = s.why ?? reason;
    if (s.state === "dialing") {
      clearTimeout(s.timer);
      s.state = "failed";
      counts.failed++;
      failures[why] = (failures[why] || 0) + 1;
      resolved();
    } else if (s.state === "open") {
      s.state = "closed";
      if (!leaving) closes[why] = (closes[why] || 0) + 1;
    }
  }

  function resolved() {
    if (--pending === 0) process.send(readyMessage());
  }

  // readyMessage tells the coordinator how many streams each channel has, for the deliveries to
  // expect, and when the last one connected.
  function readyMessage() {
    const open = sessions.filter((s) => s.state === "open");
    return {
      type: "ready",
      openChannels: Int32Array.from(open, (s) => s.channel),
      lastEstablishedUs: lastEstablished,
      ...counts,
      failures,
    };
  }

  // finish counts, for every stream still or once open, the accepted events of its channel it
  // never received, and sends the figures.
  function finish(accepted) {
    const byChannel = new Map();
    for (const i of accepted) {
      const c = lay.eventChannel(i);
      if (!byChannel.has(c)) byChannel.set(c, []);
      byChannel.get(c).push(lay.eventSeq(i));
    }
    let lost = 0;
    for (const s of sessions) {
      if (s.state !== "open" && s.state !== "closed") continue;
      for (const k of byChannel.get(s.channel) || []) if (!s.seen[k]) lost++;
    }
    const u = process.cpuUsage();
    process.send({
      type: "result",
      ...counts,
      lost,
      failures,
      closes,
      notices,
      connectMs: Float64Array.from(connectMs),
      latencyMs: Float64Array.from(latencyMs),
      lagMs: Float64Array.from(lagMs),
      cpuSeconds: (u.user + u.system) / 1e6,
    });
  }

  // close ends every stream from this side, as users leaving, and exits once the sockets are
  // closed.
  function close() {
    leaving = true;
    for (const s of sessions) s.req?.destroy();
    sessions = [];
    setImmediate(() => process.exit(0));
  }
}

// ---------------------------------------------------------------------------------------------
// Publisher process: publishes the run's events at a steady pace.

function runPublisher() {
  process.on("disconnect", () => process.exit(1));
  process.on("message", (m) => {
    if (m.type === "publish") publish(m).then((r) => process.send({ type: "published", ...r }));
  });
  process.send({ type: "up" });
}

// publish sends this publisher's share of the run's events: event i is its own when i mod
// cfg.publishers is cfg.publisher, and is due at the common start + i/rate. At most
// cfg.concurrency requests are in flight, over keep-alive connections; when every slot is busy
// the due events wait: the run then falls behind the pace, and the result says by how much.
function publish(cfg) {
  const lay = layout(cfg);
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency });
  const interval = 1e6 / cfg.rate;
  const accepted = [];
  const rttMs = [];
  const errors = {};
  const startUs = cfg.startUs;
  const eventOf = (k) => cfg.publisher + k * cfg.publishers;
  const dueOf = (k) => startUs + eventOf(k) * interval;
  let next = 0; // of this publisher's events
  let inflight = 0;
  let timer = null;
  let maxBehindUs = 0;
  let lastDoneUs = 0;

  return new Promise((resolve) => {
    const finished = () => {
      agent.destroy();
      resolve({ accepted: Int32Array.from(accepted), rttMs: Float64Array.from(rttMs), errors, attempted: next, endUs: lastDoneUs || startUs, maxBehindMs: maxBehindUs / 1000 });
    };

    const more = () => eventOf(next) < cfg.events && dueOf(next) <= cfg.deadlineUs;
    const pump = () => {
      timer = null;
      while (more() && inflight < cfg.concurrency) {
        const due = dueOf(next);
        const now = nowUs();
        if (due > now) {
          timer = setTimeout(pump, (due - now) / 1000);
          return;
        }
        maxBehindUs = Math.max(maxBehindUs, now - due);
        send(eventOf(next++));
      }
      if (inflight === 0 && !more()) finished();
    };

    const send = (i) => {
      inflight++;
      const sentUs = nowUs();
      const body = eventBody(i, sentUs, cfg.payload);
      const req = http.request({
        host: cfg.host,
        port: cfg.port,
        method: "POST",
        path: `${cfg.basePath}/v1/channels/${encodeURIComponent(lay.channelName(lay.eventChannel(i)))}/events`,
        agent,
        headers: { Authorization: `Bearer ${cfg.apiKey}`, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
      });
      let done = false;
      const complete = (why) => {
        if (done) return;
        done = true;
        clearTimeout(t);
        lastDoneUs = nowUs();
        rttMs.push((lastDoneUs - sentUs) / 1000);
        if (why === null) accepted.push(i);
        else errors[why] = (errors[why] || 0) + 1;
        inflight--;
        if (timer === null) pump();
      };
      const t = setTimeout(() => req.destroy(new Error("timeout")), PUBLISH_TIMEOUT_MS);
      req.on("error", (err) => complete(failureReason(err)));
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => complete(res.statusCode >= 200 && res.statusCode < 300 ? null : refusalReason(res.statusCode, text)));
      });
      req.end(body);
    };

    pump();
  });
}

// ---------------------------------------------------------------------------------------------
// Coordinator

// Child is a forked worker or publisher, and the messages it sent that nobody has taken yet.
class Child {
  constructor(role) {
    this.role = role;
    // The advanced serialization carries typed arrays as they are, not as JSON.
    this.proc = fork(SELF, [role], { serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.pid = this.proc.pid;
    this.queued = {}; // type -> messages not yet taken
    this.waiting = {}; // type -> { resolve, reject }
    this.progress = null; // the latest progress message
    this.exitCode = undefined;
    this.exited = new Promise((resolve) => this.proc.on("exit", resolve));
    this.proc.on("message", (m) => this.deliver(m));
    this.proc.on("exit", (code, signal) => {
      this.exitCode = signal || code;
      for (const [type, w] of Object.entries(this.waiting)) {
        w.reject(new Error(`a ${role} process (pid ${this.pid}) exited (${signal || `status ${code}`}) while the run waited for its ${type}`));
      }
      this.waiting = {};
    });
  }

  deliver(m) {
    if (m.type === "progress") {
      this.progress = m;
      return;
    }
    const w = this.waiting[m.type];
    if (w) {
      delete this.waiting[m.type];
      w.resolve(m);
    } else (this.queued[m.type] ||= []).push(m);
  }

  // next resolves with the child's next message of this type, and rejects when it exits or
  // sends none within timeoutMs.
  next(type, timeoutMs) {
    const q = this.queued[type];
    if (q && q.length > 0) return Promise.resolve(q.shift());
    if (this.exitCode !== undefined) return Promise.reject(new Error(`a ${this.role} process exited (${this.exitCode}) before its ${type}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        delete this.waiting[type];
        reject(new Error(`a ${this.role} process sent no ${type} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.waiting[type] = {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  send(m) {
    if (this.exitCode === undefined) this.proc.send(m);
  }

  kill() {
    if (this.exitCode === undefined) this.proc.kill("SIGKILL");
  }
}

// parseConfig reads the command line over the scenario's defaults.
function parseConfig(argv) {
  const raw = {};
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === "-h" || a === "--help") {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unexpected argument ${a}`);
    const value = m[2] ?? argv[++k];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    raw[m[1]] = value;
  }
  const name = raw.scenario === "Bp" ? "B'" : raw.scenario;
  const sc = SCENARIOS[name];
  if (!sc) throw new Error(`--scenario must be A, B' or C (got ${raw.scenario ?? "none"})`);
  if (!raw.url) throw new Error("--url is required");
  const url = new URL(raw.url);
  if (url.protocol !== "http:") throw new Error("--url must be an http:// base URL");

  const num = (flag, def, min, max) => {
    if (raw[flag] === undefined) return def;
    const v = Number(raw[flag]);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${flag} must be a number from ${min} to ${max}`);
    return v;
  };
  const cfg = {
    scenario: name,
    mode: sc.mode,
    url: url.href.replace(/\/$/, ""),
    host: url.hostname,
    port: Number(url.port || 80),
    basePath: url.pathname.replace(/\/$/, ""),
    apiPid: num("api-pid", 0, 0, 2 ** 31),
    redisPid: num("redis-pid", 0, 0, 2 ** 31),
    conns: Math.round(num("conns", sc.conns, 1, 1e6)),
    ramp: num("ramp", sc.ramp, 0, 1e6),
    events: Math.round(num("events", sc.events, 0, 1e7)),
    rate: num("rate", sc.rate, 0, 1e6),
    settle: num("settle", sc.settle, 0, 3600),
    afterLeave: num("after-leave", sc.afterLeave, 0, 3600),
    payload: Math.round(num("payload", 100, 0, 65536)),
    connectTimeoutS: num("connect-timeout", 15, 1, 600),
    json: raw.json || "",
  };
  if (cfg.events > 0 && cfg.rate <= 0) throw new Error("--rate must be above 0 when there are events to publish");
  cfg.publishers = cfg.events > 0 ? Math.round(num("publishers", Math.ceil(cfg.rate / RATE_PER_PUBLISHER), 1, 16)) : 0;
  cfg.concurrency = Math.round(num("concurrency", Math.max(4 * cfg.publishers, Math.ceil(cfg.rate / 40)), 1, 1024));
  if (cfg.concurrency < cfg.publishers) throw new Error("--concurrency must be at least --publishers");

  const perWorker = Math.min(PER_WORKER_MAX, openFilesLimit() - 256);
  if (perWorker < 100) throw new Error(`ulimit -n is ${openFilesLimit()}: too few descriptors for a load run`);
  cfg.procs = Math.round(num("procs", Math.max(MIN_WORKERS, Math.ceil(cfg.conns / PER_WORKER_DEFAULT)), 1, 64));
  cfg.procs = Math.min(Math.max(cfg.procs, Math.ceil(cfg.conns / perWorker)), cfg.conns);
  if (Math.ceil(cfg.conns / cfg.procs) > perWorker) throw new Error(`${cfg.conns} streams do not fit in 64 processes under ulimit -n ${openFilesLimit()}`);

  // The default deadline: every phase at its asked pace, plus room for each to run slow.
  const phases = (cfg.ramp > 0 ? cfg.conns / cfg.ramp : 0) + cfg.settle + (cfg.events > 0 ? cfg.events / cfg.rate : 0) + cfg.afterLeave;
  cfg.deadlineS = num("deadline", Math.ceil(2 * phases + 120), 10, 86400);
  return cfg;
}

// waitReady polls /readyz until it answers 200, for up to 20 s: the node was just started.
async function waitReady(url) {
  const until = Date.now() + 20000;
  for (;;) {
    let why;
    try {
      const r = await requestJSON("GET", `${url}/readyz`, { timeoutMs: 2000 });
      if (r.status === 200) return;
      why = `HTTP ${r.status}`;
    } catch (err) {
      why = err.message;
    }
    if (Date.now() > until) throw new Error(`${url}/readyz did not answer 200 within 20 s (last: ${why})`);
    await sleep(200);
  }
}

// signup signs a tenant up and returns its API key, signing key and limits. Signup is
// rate-limited per address: a 429 is retried after its Retry-After, a few times.
async function signup(cfg) {
  for (let attempt = 0; ; attempt++) {
    const r = await requestJSON("POST", `${cfg.url}/v1/tenants`, { body: { name: `xload ${cfg.scenario}` } });
    if (r.status === 201 && r.json) {
      return { id: r.json.tenant.id, limits: r.json.tenant.limits, apiKey: r.json.api_key.secret, signingKey: { id: r.json.signing_key.id, secret: r.json.signing_key.secret } };
    }
    if (r.status === 429 && attempt < 5) {
      await sleep(Math.min(Math.max(Number(r.headers["retry-after"]) || 1, 1), 10) * 1000);
      continue;
    }
    throw new Error(`signup: ${refusalReason(r.status, r.text)}`);
  }
}

// limitWarnings says which tenant limit would be measured instead of the server.
function limitWarnings(cfg, limits) {
  const w = [];
  if (limits.max_connections < cfg.conns) w.push(`the tenant allows ${limits.max_connections} connections and the run opens ${cfg.conns}: expect 403 limit_exceeded (STREAMGATE_DEFAULT_MAX_CONNECTIONS)`);
  if (cfg.events > 0 && limits.publish_per_second < cfg.rate) w.push(`the tenant allows ${limits.publish_per_second} publishes/s and the run sends ${cfg.rate}/s: expect 429 (STREAMGATE_DEFAULT_PUBLISH_PER_SECOND)`);
  return w;
}

// sample reads what the run reports of each process at one moment. The api and Redis must be
// there; a client process that already exited just drops out of its role's sum. clientPids
// maps each of the client's roles (coordinator, workers, publishers) to its pids.
function sample(cfg, clientPids) {
  const s = { us: nowUs(), machine: machineCPU(), client: {} };
  for (const [key, pid] of [["api", cfg.apiPid], ["redis", cfg.redisPid]]) {
    if (!pid) continue;
    try {
      s[key] = { cpu: procCPU(pid), rss: procRSS(pid) };
    } catch {
      throw new Error(`the ${key} process (pid ${pid}) is gone`);
    }
  }
  for (const [role, pids] of Object.entries(clientPids)) {
    s.client[role] = 0;
    for (const pid of pids) {
      try {
        s.client[role] += procCPU(pid);
      } catch {
        // exited
      }
    }
  }
  return s;
}

// window is what happened between two samples: seconds, CPU seconds of each process and of
// each of the client's roles, and the machine's busy share.
function window(a, b) {
  const w = { seconds: (b.us - a.us) / 1e6, clientCPU: 0, clientRoles: {} };
  for (const role of Object.keys(b.client)) {
    w.clientRoles[role] = b.client[role] - (a.client[role] || 0);
    w.clientCPU += w.clientRoles[role];
  }
  if (a.api && b.api) w.apiCPU = b.api.cpu - a.api.cpu;
  if (a.redis && b.redis) w.redisCPU = b.redis.cpu - a.redis.cpu;
  const total = b.machine.total - a.machine.total;
  w.machineBusy = total > 0 ? (b.machine.busy - a.machine.busy) / total : 0;
  return w;
}

// Progress is one line on stderr: rewritten in place every second on a terminal; otherwise (a
// log) written every 5 s while it changes and every 30 s while it does not.
function progressLine(state) {
  const tty = process.stderr.isTTY;
  let lastAt = 0;
  let lastLine = "";
  const timer = setInterval(() => {
    const p = { established: 0, failed: 0, delivered: 0 };
    for (const w of state.workers) for (const k of Object.keys(p)) p[k] += w.progress?.[k] || 0;
    const line = `xload ${state.cfg.scenario}: ${state.phase}; ${p.established} connected, ${p.failed} failed, ${p.delivered} delivered`;
    if (tty) {
      process.stderr.write(`\r\x1b[K${line}`);
      return;
    }
    const since = Date.now() - lastAt;
    if (since < 5000 || (line === lastLine && since < 30000)) return;
    [lastAt, lastLine] = [Date.now(), line];
    process.stderr.write(`${line}\n`);
  }, 1000);
  return () => {
    clearInterval(timer);
    if (tty) process.stderr.write("\r\x1b[K");
  };
}

// mergePublished puts the publishers' results together as one publisher's.
function mergePublished(startUs, results) {
  return {
    accepted: Int32Array.from(results.flatMap((r) => Array.from(r.accepted))),
    rttMs: concat(results.map((r) => r.rttMs)),
    errors: results.reduce((e, r) => addCounts(e, r.errors), {}),
    attempted: results.reduce((n, r) => n + r.attempted, 0),
    startUs,
    endUs: Math.max(...results.map((r) => r.endUs)),
    maxBehindMs: Math.max(...results.map((r) => r.maxBehindMs)),
  };
}

// expectedDeliveries is every accepted event times the open streams of its channel.
function expectedDeliveries(lay, accepted, readies) {
  const perChannel = new Int32Array(lay.channels);
  for (const r of readies) for (const c of r.openChannels) perChannel[c]++;
  let n = 0;
  for (const i of accepted) n += perChannel[lay.eventChannel(i)];
  return n;
}

// drain waits after the last publish until the workers have received every expected event, or
// none arrived for DRAIN_QUIET_MS.
async function drain(workers, expected) {
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const got = workers.reduce((n, w) => n + (w.progress?.delivered || 0), 0);
    if (got >= expected) return;
    if (got !== last) [last, lastChange] = [got, Date.now()];
    else if (Date.now() - lastChange >= DRAIN_QUIET_MS) return;
    await sleep(100);
  }
}

async function runCoordinator(state) {
  const cfg = state.cfg;
  const say = (phase) => (state.phase = phase);

  say("waiting for /readyz");
  await waitReady(cfg.url);
  say("signing up");
  const tenant = await signup(cfg);
  const warnings = limitWarnings(cfg, tenant.limits);
  for (const w of warnings) process.stderr.write(`xload: warning: ${w}\n`);

  say("starting client processes");
  for (let k = 0; k < cfg.procs; k++) state.workers.push(new Child("worker"));
  for (let k = 0; k < cfg.publishers; k++) state.publishers.push(new Child("publisher"));
  const children = [...state.workers, ...state.publishers];
  await Promise.all(children.map((c) => c.next("up", CHILD_REPLY_MS)));
  const clientPids = { coordinator: [process.pid], workers: state.workers.map((w) => w.pid) };
  if (cfg.publishers > 0) clientPids.publishers = state.publishers.map((p) => p.pid);

  const prefix = `xl-${crypto.randomBytes(4).toString("hex")}`;
  const lay = layout({ prefix, mode: cfg.mode, conns: cfg.conns });
  const deadlineUs = nowUs() + cfg.deadlineS * 1e6;
  // The workers dial from a common start time, once every one has its orders; "before" is taken
  // just ahead of it, so that the connect window holds the connects and little else.
  const startUs = nowUs() + 200000;
  const common = { host: cfg.host, port: cfg.port, basePath: cfg.basePath, prefix, mode: cfg.mode, conns: cfg.conns, events: cfg.events, deadlineUs };
  state.workers.forEach((w, k) =>
    w.send({ type: "start", ...common, worker: k, procs: cfg.procs, ramp: cfg.ramp, startUs, signingKey: tenant.signingKey, tokenTTL: cfg.deadlineS + 300, connectTimeoutS: cfg.connectTimeoutS }),
  );

  await sleep((startUs - nowUs()) / 1000 - 20);
  const before = sample(cfg, clientPids);
  say(`connecting ${cfg.conns} streams at ${cfg.ramp || "full speed"}/s`);
  const connectBudget = ((cfg.ramp > 0 ? cfg.conns / cfg.ramp : 0) + cfg.connectTimeoutS) * 1000 + CHILD_REPLY_MS;
  const readies = await Promise.all(state.workers.map((w) => w.next("ready", connectBudget)));
  const connected = sample(cfg, clientPids);
  const established = readies.reduce((n, r) => n + r.established, 0);
  if (established === 0) throw new Error(`no stream could connect: ${formatCounts(readies.reduce((f, r) => addCounts(f, r.failures), {}))}`);

  say(`settling for ${cfg.settle} s`);
  await sleep(cfg.settle * 1000);
  const settled = sample(cfg, clientPids);

  let pub = null;
  let pubWindow = null;
  let expected = 0;
  if (cfg.events > 0) {
    say(`publishing ${cfg.events} events at ${cfg.rate}/s`);
    for (const w of state.workers) w.send({ type: "publishing" });
    const pubStart = sample(cfg, clientPids);
    const pubBudget = (cfg.events / cfg.rate) * 1000 + PUBLISH_TIMEOUT_MS + CHILD_REPLY_MS;
    const order = { type: "publish", ...common, apiKey: tenant.apiKey, rate: cfg.rate, payload: cfg.payload, publishers: cfg.publishers, startUs: nowUs() + 50000 };
    state.publishers.forEach((p, k) => p.send({ ...order, publisher: k, concurrency: Math.floor((cfg.concurrency + k) / cfg.publishers) }));
    pub = mergePublished(order.startUs, await Promise.all(state.publishers.map((p) => p.next("published", pubBudget))));
    say("waiting for the last deliveries");
    expected = expectedDeliveries(lay, pub.accepted, readies);
    await drain(state.workers, expected);
    pubWindow = window(pubStart, sample(cfg, clientPids));
  }

  say("collecting results");
  for (const w of state.workers) w.send({ type: "finish", accepted: pub ? pub.accepted : new Int32Array(0) });
  const results = await Promise.all(state.workers.map((w) => w.next("result", CHILD_REPLY_MS)));
  const end = sample(cfg, clientPids);

  say("closing every stream");
  for (const w of state.workers) w.send({ type: "close" });
  state.publishers.forEach((p) => p.kill());
  await Promise.race([Promise.all(state.workers.map((w) => w.exited)), sleep(CHILD_REPLY_MS)]);
  state.workers.forEach((w) => w.kill());
  let left = null;
  if (cfg.afterLeave > 0 && cfg.apiPid) {
    say(`waiting ${cfg.afterLeave} s after every stream left`);
    await sleep(cfg.afterLeave * 1000);
    left = sample(cfg, {});
  }

  return buildReport({ cfg, tenant, warnings, before, connected, settled, end, left, readies, results, pub, pubWindow, expected, startUs });
}

// buildReport puts the figures together, in the units the README's Performance table uses.
function buildReport(r) {
  const { cfg } = r;
  const sum = (key) => r.results.reduce((n, x) => n + x[key], 0);
  const established = sum("established");
  const lastEstablishedUs = Math.max(...r.readies.map((x) => x.lastEstablishedUs));
  const connectWindow = window(r.before, r.connected);
  const report = {
    scenario: cfg.scenario,
    conns: cfg.conns,
    procs: cfg.procs,
    publishers: cfg.publishers,
    mode: cfg.mode,
    tokens: "per-user, in ?token=",
    connect: {
      established,
      failed: sum("failed"),
      failures: r.results.reduce((f, x) => addCounts(f, x.failures), {}),
      askedPerSecond: cfg.ramp,
      secondsToAll: (lastEstablishedUs - r.startUs) / 1e6,
      latencyMs: percentiles(concat(r.results.map((x) => x.connectMs))),
      window: connectWindow,
    },
    closedEarly: r.results.reduce((f, x) => addCounts(f, x.closes), {}),
    notices: r.results.reduce((f, x) => addCounts(f, x.notices), {}),
    clientCPUSeconds: window(r.before, r.end).clientCPU,
    warnings: r.warnings,
  };
  if (r.before.api) {
    report.api = {
      rssBeforeKiB: r.before.api.rss,
      rssSettledKiB: r.settled.api.rss,
      settleSeconds: cfg.settle,
      rssPerConnKiB: (r.settled.api.rss - r.before.api.rss) / established,
      cpuPerConnectMs: (connectWindow.apiCPU / established) * 1e3,
    };
    if (r.left) {
      report.api.rssLeftKiB = r.left.api.rss;
      report.api.afterLeaveSeconds = cfg.afterLeave;
      report.api.rssLeftShareOfBefore = r.left.api.rss / r.before.api.rss;
    }
  }
  if (r.pub) {
    const accepted = r.pub.accepted.length;
    const delivered = sum("delivered");
    const w = r.pubWindow;
    report.publish = {
      events: cfg.events,
      askedPerSecond: cfg.rate,
      attempted: r.pub.attempted,
      accepted,
      errors: r.pub.errors,
      perSecond: accepted / Math.max((r.pub.endUs - r.pub.startUs) / 1e6, 1e-9),
      maxBehindMs: r.pub.maxBehindMs,
      requestMs: percentiles(r.pub.rttMs),
      window: w,
    };
    report.delivery = {
      expected: r.expected,
      delivered,
      lost: sum("lost"),
      duplicated: sum("duplicated"),
      foreign: sum("foreign"),
      latencyMs: percentiles(concat(r.results.map((x) => x.latencyMs))),
      clientLagMs: percentiles(concat(r.results.map((x) => x.lagMs))),
    };
    if (w.apiCPU !== undefined && accepted > 0) {
      report.publish.apiCPUPerPublishMs = (w.apiCPU / accepted) * 1e3;
      if (delivered > 0) report.delivery.apiCPUPerDeliveryUs = (w.apiCPU / delivered) * 1e6;
    }
    if (w.redisCPU !== undefined && accepted > 0) report.publish.redisCPUPerPublishMs = (w.redisCPU / accepted) * 1e3;
  }
  return report;
}

// failuresOf lists why the run's figures cannot stand; lost events and a few failed connects are
// figures, not failures.
function failuresOf(rep) {
  const f = [];
  if (rep.connect.failed > FAILED_CONNECTS_TOLERATED * rep.conns) f.push(`${rep.connect.failed} of ${rep.conns} streams failed to connect (${formatCounts(rep.connect.failures)})`);
  if (rep.publish && rep.publish.accepted === 0) f.push(`no publish was accepted (${formatCounts(rep.publish.errors)})`);
  return f;
}

const fmt = (v, digits = 2) => (v === undefined || v === null || Number.isNaN(v) ? "n/a" : v.toFixed(digits));
const ms = (p) => (p ? `p50 ${fmt(p.p50, 1)}  p90 ${fmt(p.p90, 1)}  p99 ${fmt(p.p99, 1)}  max ${fmt(p.max, 1)} ms (n=${p.n})` : "none");
const mib = (kib) => fmt(kib / 1024, 1);

function formatCounts(m) {
  const e = Object.entries(m || {}).sort((a, b) => b[1] - a[1]);
  return e.length === 0 ? "none" : e.map(([k, n]) => `${n} ${k}`).join(", ");
}

// cpuLine says how much CPU the client took and how busy the machine was over a window, so
// that a reader can tell a saturated client or machine from a slow server.
function cpuLine(w) {
  const roles = Object.entries(w.clientRoles)
    .map(([role, cpu]) => `${role} ${fmt(cpu / w.seconds)}`)
    .join(", ");
  return `client ${fmt(w.clientCPU)} s over ${fmt(w.seconds)} s, in cores: ${roles}; machine ${fmt(100 * w.machineBusy, 0)}% busy`;
}

function printReport(rep) {
  const lines = [];
  const row = (k, v) => lines.push(`  ${k.padEnd(24)}${v}`);
  lines.push(`xload ${rep.scenario}: ${rep.conns} streams (${rep.mode} channels, ${rep.tokens}), ${rep.procs} worker process(es)${rep.publishers ? `, ${rep.publishers} publisher(s)` : ""}`);
  const c = rep.connect;
  row("connected", `${c.established} of ${rep.conns}, all in ${fmt(c.secondsToAll)} s (asked ${c.askedPerSecond || "unpaced"}/s), ${c.failed} failed`);
  if (c.failed > 0) row("  failures", formatCounts(c.failures));
  row("connect latency", ms(c.latencyMs));
  if (rep.api) {
    const a = rep.api;
    row("api RSS", `${mib(a.rssBeforeKiB)} → ${mib(a.rssSettledKiB)} MiB ${a.settleSeconds} s after the last connect: ${fmt(a.rssPerConnKiB, 1)} KiB per stream`);
    if (a.rssLeftKiB !== undefined) row("api RSS after leaving", `${mib(a.rssLeftKiB)} MiB ${a.afterLeaveSeconds} s after every stream left: ${fmt(100 * a.rssLeftShareOfBefore, 0)}% of before`);
    row("api CPU connecting", `${fmt(c.window.apiCPU)} s: ${fmt(a.cpuPerConnectMs, 3)} ms per connect`);
  }
  row("CPU connecting", cpuLine(c.window));
  if (rep.publish) {
    const p = rep.publish;
    const d = rep.delivery;
    row("published", `${p.accepted} accepted of ${p.events} (${fmt(p.perSecond, 1)}/s, asked ${p.askedPerSecond}/s), fell behind pace by at most ${fmt(p.maxBehindMs, 0)} ms`);
    if (Object.keys(p.errors).length > 0) row("  errors", formatCounts(p.errors));
    row("publish request", ms(p.requestMs));
    row("delivered", `${d.delivered} of ${d.expected} expected; lost ${d.lost}, duplicated ${d.duplicated}`);
    row("delivery latency", ms(d.latencyMs));
    const lag = d.clientLagMs;
    if (lag) row("  client's own delay", `p99 ${fmt(lag.p99, 1)}  max ${fmt(lag.max, 1)} ms: how late the workers' event loops ran, inside the latency above`);
    if (p.apiCPUPerPublishMs !== undefined) row("api CPU publishing", `${fmt(p.window.apiCPU)} s: ${fmt(p.apiCPUPerPublishMs, 3)} ms per publish, ${fmt(d.apiCPUPerDeliveryUs, 2)} µs per delivery`);
    if (p.redisCPUPerPublishMs !== undefined) row("redis CPU publishing", `${fmt(p.window.redisCPU)} s: ${fmt(p.redisCPUPerPublishMs, 3)} ms per publish`);
    row("CPU publishing", cpuLine(p.window));
  }
  if (Object.keys(rep.closedEarly).length > 0) row("closed early", formatCounts(rep.closedEarly));
  if (Object.keys(rep.notices).length > 0) row("notices", formatCounts(rep.notices));
  row("client CPU, whole run", `${fmt(rep.clientCPUSeconds)} s`);
  for (const w of rep.warnings) row("warning", w);
  process.stdout.write(lines.join("\n") + "\n");
}

async function coordinator() {
  const state = { cfg: null, phase: "starting", workers: [], publishers: [] };
  const killChildren = () => [...state.workers, ...state.publishers].forEach((c) => c.kill());
  const fail = (msg, code = 1) => {
    stopProgress?.();
    killChildren();
    process.stderr.write(`xload: ${msg}\n`);
    process.exit(code);
  };
  let stopProgress = null;
  try {
    state.cfg = parseConfig(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`xload: ${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  process.on("SIGINT", () => fail(`interrupted while ${state.phase}`, 130));
  process.on("SIGTERM", () => fail(`terminated while ${state.phase}`, 130));
  setTimeout(() => fail(`the run's deadline of ${state.cfg.deadlineS} s passed while ${state.phase} (--deadline)`), state.cfg.deadlineS * 1000);
  stopProgress = progressLine(state);

  let rep;
  try {
    rep = await runCoordinator(state);
  } catch (err) {
    fail(`${err.message} (while ${state.phase})`);
  }
  stopProgress();
  printReport(rep);
  if (state.cfg.json) fs.writeFileSync(state.cfg.json, JSON.stringify(rep, null, 2) + "\n");
  const failures = failuresOf(rep);
  if (failures.length > 0) fail(`scenario ${rep.scenario} failed: ${failures.join("; ")}`);
  process.exit(0);
}

switch (process.argv[2]) {
  case "worker":
    runWorker();
    break;
  case "publisher":
    runPublisher();
    break;
  default:
    await coordinator();
}
