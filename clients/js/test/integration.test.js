// The client against a real api node (dev mode, embedded Redis), over the fetch transport and over
// the EventSource transport (with the small EventSource below, as Node has none of its own).

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../index.js";
import { createParser } from "../src/sse.js";
import { startApi, startProxy, tenant, nextEvent, within } from "../support/server.js";

// A minimal EventSource, as browsers implement it: query-string credentials only, reconnects by
// itself after a drop (sending Last-Event-ID), gives up for good on any answer but 200.
class TestEventSource extends EventTarget {
  static instances = [];

  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    this.lastEventId = "";
    this.retry = 2000;
    this.onerror = null;
    this.sentLastEventIds = [];
    TestEventSource.instances.push(this);
    this.#connect();
  }

  async #connect() {
    const controller = new AbortController();
    this.controller = controller;
    const headers = { Accept: "text/event-stream" };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    this.sentLastEventIds.push(this.lastEventId);
    let res;
    try {
      res = await fetch(this.url, { headers, signal: controller.signal });
    } catch {
      return this.#fail(true);
    }
    if (this.readyState === 2) return;
    if (res.status !== 200) {
      controller.abort();
      return this.#fail(false);
    }
    this.readyState = 1;
    const parser = createParser({
      onEvent: (e) => {
        if (this.readyState !== 1) return;
        this.lastEventId = e.lastEventId;
        this.dispatchEvent(Object.assign(new Event(e.event), { data: e.data, lastEventId: e.lastEventId }));
      },
      onRetry: (ms) => {
        this.retry = ms;
      },
    });
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) parser.push(decoder.decode(chunk, { stream: true }));
    } catch {
      // dropped
    }
    this.#fail(true);
  }

  #fail(reconnect) {
    if (this.readyState === 2) return;
    this.readyState = reconnect ? 0 : 2;
    if (this.onerror) this.onerror(new Event("error"));
    if (reconnect && this.readyState === 0) {
      this.timer = setTimeout(() => this.#connect(), Math.min(this.retry, 300));
    }
  }

  close() {
    this.readyState = 2;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }
}

let api;

before(async () => {
  // token_expiring 2 s before a token expires, so that the refresh tests are quick.
  api = await startApi({ STREAMGATE_TOKEN_WARNING: "2s" });
}, { timeout: 300_000 });

after(async () => {
  if (api) await api.stop();
}, { timeout: 30_000 });

const fast = { base: 50, cap: 500 };

function collect(client, name) {
  const seen = [];
  client.on(name, (d) => seen.push(d));
  return seen;
}

async function waitFor(pred, ms, what) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const transport of ["fetch", "eventsource"]) {
  const extra = transport === "eventsource" ? { EventSource: TestEventSource } : {};

  describe(`${transport} transport`, { concurrency: true }, () => {
    test("delivers messages and jobs, with typed callbacks", { timeout: 20_000 }, async () => {
      const t = await tenant(api.base);
      const connected = [];
      const client = connect({
        url: api.base,
        channels: ["chat.lobby"],
        getToken: () => t.mint(),
        transport,
        backoff: fast,
        onConnected: (d) => connected.push(d),
        ...extra,
      });
      try {
        const sid = await within(client.ready(), 10_000, "connected");
        assert.match(sid, /^ses_/);
        assert.deepEqual(connected[0].channels, ["chat.lobby"]);
        assert.equal(client.state, "open");
        const got = nextEvent(client, "message");
        await t.publish("chat.lobby", { text: "hello" }, "chat.message");
        const m = await got;
        assert.equal(m.channel, "chat.lobby");
        assert.equal(m.event, "chat.message");
        assert.deepEqual(m.data, { text: "hello" });
        assert.match(client.lastEventId, new RegExp(`^${sid}:`));
        if (transport === "eventsource") {
          const es = TestEventSource.instances.find((e) => e.url.startsWith(api.base) && e.url.includes("chat.lobby"));
          assert.ok(es && new URL(es.url).searchParams.get("token"), "the token goes in ?token=");
        }
      } finally {
        client.close();
      }
      assert.equal(client.state, "closed");
    });

    test("resumes after a network drop with the events it missed", { timeout: 30_000 }, async () => {
      const t = await tenant(api.base);
      const proxy = await startProxy(api.base);
      const client = connect({ url: proxy.base, channels: ["chat.drop"], getToken: () => t.mint(), transport, backoff: fast, ...extra });
      try {
        const sid = await within(client.ready(), 10_000, "connected");
        const messages = collect(client, "message");
        const connected = collect(client, "connected");
        await t.publish("chat.drop", 1);
        await waitFor(() => messages.length === 1, 10_000, "message 1");
        proxy.pause(); // the network is gone: every connection drops, reconnects fail
        await t.publish("chat.drop", 2);
        await t.publish("chat.drop", 3);
        await new Promise((r) => setTimeout(r, 300));
        proxy.resume();
        await waitFor(() => messages.length === 3, 15_000, "messages 2 and 3 after the drop");
        assert.deepEqual(messages.map((m) => m.data), [1, 2, 3]);
        assert.ok(connected.length >= 1);
        assert.ok(connected.every((c) => c.session_id === sid), "the same session resumed");
      } finally {
        proxy.resume();
        client.close();
        await proxy.close();
      }
    });

    test("subscribe and unsubscribe through the sessions API, kept across reconnects", { timeout: 30_000 }, async () => {
      const t = await tenant(api.base);
      const proxy = await startProxy(api.base);
      const client = connect({ url: proxy.base, channels: ["chat.a"], getToken: () => t.mint(), transport, backoff: fast, ...extra });
      try {
        await within(client.ready(), 10_000, "connected");
        const subscribed = nextEvent(client, "subscribed", (d) => d.channel === "chat.b");
        await client.subscribe("chat.b");
        await subscribed;
        assert.deepEqual(client.channels.sort(), ["chat.a", "chat.b"]);
        const gotB = nextEvent(client, "message", (d) => d.channel === "chat.b");
        await t.publish("chat.b", "to b");
        assert.equal((await gotB).data, "to b");

        const unsubscribed = nextEvent(client, "unsubscribed", (d) => d.channel === "chat.a");
        await client.unsubscribe("chat.a");
        await unsubscribed;
        assert.deepEqual(client.channels, ["chat.b"]);

        // After a drop, the session comes back with its channels as changed.
        const reconnected = nextEvent(client, "connected");
        proxy.cut();
        const c = await reconnected;
        assert.deepEqual(c.channels, ["chat.b"]);
        const messages = collect(client, "message");
        await t.publish("chat.a", "not for us");
        await t.publish("chat.b", "after");
        await waitFor(() => messages.length >= 1, 10_000, "message after reconnect");
        await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(messages.map((m) => m.data), ["after"]);
      } finally {
        client.close();
        await proxy.close();
      }
    });

    test("watchJob subscribes and resolves with the terminal state", { timeout: 20_000 }, async () => {
      const t = await tenant(api.base);
      const client = connect({ url: api.base, getToken: () => t.mint(), transport, backoff: fast, ...extra });
      try {
        await within(client.ready(), 10_000, "connected");
        await t.putJob("render-1", { status: "running", progress: 10 });
        const progress = [];
        const done = client.watchJob("render-1", { onProgress: (j) => progress.push(j.status) });
        await nextEvent(client, "job", (d) => d.channel === "job:render-1");
        await t.putJob("render-1", { status: "running", progress: 60 });
        await t.putJob("render-1", { status: "succeeded", progress: 100, output: { url: "x" } });
        const job = await within(done, 10_000, "watchJob");
        assert.equal(job.status, "succeeded");
        assert.deepEqual(job.output, { url: "x" });
        assert.equal(progress.at(-1), "succeeded");
        // It unsubscribes the channel it subscribed.
        await waitFor(() => !client.channels.includes("job:render-1"), 5_000, "unsubscribed after the end");

        // A job that already ended resolves at once, from the state sent on subscribing.
        await t.putJob("render-2", { status: "failed", error: "boom" });
        for (let i = 0; (await t.getJob("render-2"))?.status !== "failed"; i++) {
          assert.ok(i < 100, "render-2 never failed");
          await new Promise((r) => setTimeout(r, 50));
        }
        const failed = await within(client.watchJob("render-2"), 10_000, "watchJob render-2");
        assert.equal(failed.status, "failed");
        assert.equal(failed.error, "boom");
      } finally {
        client.close();
      }
      await assert.rejects(client.watchJob("render-3"), { code: "closed" });
    });

    test("refreshes the token on token_expiring without reconnecting", { timeout: 30_000 }, async () => {
      const t = await tenant(api.base);
      let calls = 0;
      const client = connect({
        url: api.base,
        channels: ["chat.refresh"],
        // The first token expires in 4 s (token_expiring after 2 s), the next one in an hour.
        getToken: () => t.mint({ ttl: calls++ === 0 ? 4 : 3600 }),
        transport,
        backoff: fast,
        ...extra,
      });
      try {
        await within(client.ready(), 10_000, "connected");
        const connected = collect(client, "connected");
        const authFailed = collect(client, "auth_failed");
        const errors = collect(client, "error");
        const expiring = await nextEvent(client, "token_expiring", () => true, 10_000);
        assert.ok(Date.parse(expiring.expires_at) > 0);
        await waitFor(() => calls === 2, 5_000, "getToken called for the refresh");
        // Past the first token's expiry (and the 5 s the server takes to notice), the stream lives on.
        await new Promise((r) => setTimeout(r, 7_000));
        const got = nextEvent(client, "message");
        await t.publish("chat.refresh", "still here");
        assert.equal((await got).data, "still here");
        assert.deepEqual(authFailed, []);
        assert.deepEqual(connected, [], "no reconnection");
        assert.deepEqual(errors, []);
      } finally {
        client.close();
      }
    });

    test("after auth_failed, resumes with a new token and the last cursor", { timeout: 30_000 }, async () => {
      const t = await tenant(api.base);
      const short = await t.mint({ ttl: 3 });
      let expired = false;
      const client = connect({
        url: api.base,
        channels: ["chat.expire"],
        onAuthFailed: () => {
          expired = true;
        },
        getToken: async () => {
          if (!expired) return short; // refreshes hand the same token back: it expires
          await t.publish("chat.expire", "while away"); // published between the close and the resume
          return t.mint();
        },
        transport,
        backoff: fast,
        ...extra,
      });
      try {
        const sid = await within(client.ready(), 10_000, "connected");
        const failed = nextEvent(client, "auth_failed", () => true, 15_000);
        const resumed = nextEvent(client, "connected", () => true, 20_000);
        const away = nextEvent(client, "message", (d) => d.data === "while away", 20_000);
        await failed;
        const c = await resumed;
        assert.equal(c.session_id, sid, "the same session resumed");
        await away;
        const got = nextEvent(client, "message", (d) => d.data === "live");
        await t.publish("chat.expire", "live");
        await got;
      } finally {
        client.close();
      }
    });
  });
}

test("disconnect with reconnect:false stops the client", { timeout: 20_000 }, async () => {
  const t = await tenant(api.base);
  // Eviction by the operator needs the admin token; a server of our own sends the same
  // disconnect(reconnect:false) and counts connections.
  const { createServer } = await import("node:http");
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    res.write('id: ses_x:1:0-0\nevent: connected\ndata: {"session_id":"ses_x","node_id":"n","channels":[]}\n\n');
    res.end('event: disconnect\ndata: {"reason":"evicted by the operator","reconnect":false}\n\n');
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const client = connect({ url: `http://127.0.0.1:${server.address().port}`, getToken: () => t.mint(), transport: "fetch", backoff: fast });
  try {
    const d = await nextEvent(client, "disconnect");
    assert.equal(d.reconnect, false);
    assert.equal(client.state, "closed");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hits, 1, "no reconnection");
    await assert.rejects(client.subscribe("chat.x"), { code: "disconnect" });
  } finally {
    client.close();
    await new Promise((r) => server.close(r));
  }
});
