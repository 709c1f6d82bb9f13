import { test } from "node:test";
import assert from "node:assert/strict";
import { createParser } from "../src/sse.js";

function parse(chunks) {
  const events = [];
  const retries = [];
  const comments = [];
  const p = createParser({
    onEvent: (e) => events.push(e),
    onRetry: (ms) => retries.push(ms),
    onComment: (c) => comments.push(c),
  });
  for (const c of chunks) p.push(c);
  return { events, retries, comments, parser: p };
}

const stream =
  "retry: 2000\n\n" +
  "id: ses_a:1:0-0\nevent: connected\ndata: {\"session_id\":\"ses_a\"}\n\n" +
  ": ping\n\n" +
  "event: lagging\ndata: {\"reason\":\"slow\"}\n\n" +
  "id: ses_a:1:5-1\ndata: {\"n\":1}\n\n";

test("parses the server's framing", { timeout: 5_000 }, () => {
  const { events, retries, comments } = parse([stream]);
  assert.deepEqual(retries, [2000]);
  assert.deepEqual(comments, ["ping"]);
  assert.deepEqual(events, [
    { event: "connected", data: '{"session_id":"ses_a"}', id: "ses_a:1:0-0", lastEventId: "ses_a:1:0-0" },
    { event: "lagging", data: '{"reason":"slow"}', id: undefined, lastEventId: "ses_a:1:0-0" },
    { event: "message", data: '{"n":1}', id: "ses_a:1:5-1", lastEventId: "ses_a:1:5-1" },
  ]);
});

test("gives the same events whatever the chunking", { timeout: 5_000 }, () => {
  const whole = parse([stream]).events;
  for (let size = 1; size <= 7; size++) {
    const chunks = [];
    for (let i = 0; i < stream.length; i += size) chunks.push(stream.slice(i, i + size));
    assert.deepEqual(parse(chunks).events, whole, `chunks of ${size}`);
  }
});

test("accepts CR, LF and CRLF line ends, even split across chunks", { timeout: 5_000 }, () => {
  const want = [{ event: "a", data: "1", id: undefined, lastEventId: "" }, { event: "b", data: "2", id: undefined, lastEventId: "" }];
  assert.deepEqual(parse(["event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r"]).events, want);
  assert.deepEqual(parse(["event: a\r", "\ndata: 1\r", "\n\r", "\nevent: b\ndata: 2\n\n"]).events, want);
});

test("joins data lines, strips one space, keeps colons in values", { timeout: 5_000 }, () => {
  const { events } = parse(["data:  two spaces\ndata:x:y\ndata\n\n"]);
  assert.equal(events.length, 1);
  assert.equal(events[0].data, " two spaces\nx:y\n");
});

test("ignores unknown fields, bad retries, ids with NUL and events without data", { timeout: 5_000 }, () => {
  const { events, retries } = parse(["foo: bar\nretry: 2s\nid: a\0b\nevent: x\n\ndata: 1\n\n"]);
  assert.deepEqual(retries, []);
  assert.deepEqual(events, [{ event: "message", data: "1", id: undefined, lastEventId: "" }]);
});

test("drops a BOM and an event the stream did not finish", { timeout: 5_000 }, () => {
  const { events, parser } = parse(["\ufeffdata: 1\n\ndata: 2\n"]);
  parser.end();
  parser.push("\n");
  assert.deepEqual(events.map((e) => e.data), ["1"]);
});
