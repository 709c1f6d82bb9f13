// Test support: a real api node in dev mode (embedded Redis), a tenant on it, and a TCP proxy in
// front of it that can drop every connection, as a network failure does.

import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function build(out) {
  return new Promise((resolve, reject) => {
    execFile("go", ["build", "-o", out, "./cmd/api"], { cwd: repoRoot, timeout: 300_000 }, (err, _stdout, stderr) =>
      err ? reject(new Error(`go build ./cmd/api: ${err.message}\n${stderr}`)) : resolve(out),
    );
  });
}

/** Starts an api node; `stop()` ends it. STREAMGATE_API_BIN names a built binary, else it is built. */
export async function startApi(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "streamgate-js-"));
  const bin = process.env.STREAMGATE_API_BIN || (await build(join(dir, "api")));
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME || dir,
      STREAMGATE_ADDR: "127.0.0.1:0",
      STREAMGATE_DEMO: "off",
      STREAMGATE_RATE_SIGNUP: "1000-M",
      STREAMGATE_SHUTDOWN_TIMEOUT: "1s",
      STREAMGATE_DRAIN_DELAY: "0s",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`api did not start within 30 s:\n${log}`)), 30_000);
    let partial = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      partial += chunk;
      let i;
      while ((i = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        try {
          const rec = JSON.parse(line);
          if (rec.msg === "listening") {
            clearTimeout(timer);
            resolve(rec.addr);
          }
        } catch {
          // not a JSON log line
        }
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`api exited (${code}) before listening:\n${log}`));
    });
  });
  const base = `http://${addr}`;
  await waitReady(base);
  return {
    base,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(base) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error("api not ready within 15 s");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An HTTP call with a deadline; answers the parsed JSON body (or null). */
export async function call(base, method, path, { key, body, want } = {}) {
  const headers = {};
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (want !== undefined && res.status !== want) {
    throw new Error(`${method} ${path}: HTTP ${res.status}, want ${want}: ${text}`);
  }
  return text ? JSON.parse(text) : null;
}

/** Signs a tenant up; answers helpers bound to its API key. */
export async function tenant(base) {
  const signup = await call(base, "POST", "/v1/tenants", { body: { name: "js-client-test" }, want: 201 });
  const key = signup.api_key.secret;
  return {
    key,
    async mint({ sub = "user-42", channels = ["chat.*", "job:*", "workflow:*"], ttl = 3600 } = {}) {
      const r = await call(base, "POST", "/v1/tokens", { key, body: { sub, channels, ttl_seconds: ttl }, want: 201 });
      return r.token;
    },
    publish(channel, data, event) {
      return call(base, "POST", `/v1/channels/${encodeURIComponent(channel)}/events`, {
        key,
        body: event ? { event, data } : { data },
        want: 202,
      });
    },
    async getJob(id) {
      const res = await fetch(`${base}/v1/jobs/${encodeURIComponent(id)}`, {
        headers: { Authorization: `Bearer ${key}` },
        signal: AbortSignal.timeout(10_000),
      });
      return res.status === 200 ? res.json() : null;
    },
    putJob(id, update) {
      return call(base, "PUT", `/v1/jobs/${encodeURIComponent(id)}`, { key, body: update, want: 202 });
    },
  };
}

/**
 * A TCP proxy to the api. cut() drops every connection; pause() also refuses new ones (closed at
 * once) until resume().
 */
export async function startProxy(target) {
  const [host, port] = new URL(target).host.split(":");
  const sockets = new Set();
  let paused = false;
  let connections = 0;
  const server = net.createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    connections++;
    const upstream = net.connect(Number(port), host);
    sockets.add(client);
    sockets.add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", done).on("close", done);
    upstream.on("error", done).on("close", done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    get connections() {
      return connections;
    },
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    pause() {
      paused = true;
      this.cut();
    },
    resume() {
      paused = false;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Resolves with the first event `name` for which pred holds, or rejects after ms. */
export function nextEvent(client, name, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no "${name}" event within ${ms} ms`));
    }, ms);
    const off = client.on(name, (d) => {
      if (!pred(d)) return;
      clearTimeout(timer);
      off();
      resolve(d);
    });
  });
}

/** Rejects after ms unless p settles first. */
export function within(p, ms, what) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}
